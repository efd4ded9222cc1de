"""Commands as the pipeline hands them to the applier: the record ShopflowClient would
send (on partition 0 of the command's topic, keyed by its entity, its JSON without
nulls), through `decode_record`."""

from shopflow.consumers.decoding import DecodedCommand, RawRecord, decode_record
from shopflow.contracts.commands import Command
from shopflow.contracts.topics import ROUTES_BY_TYPE


def decoded_command(command: Command, offset: int = 0) -> DecodedCommand:
    route = ROUTES_BY_TYPE[type(command)]
    key = str(route.entity_id(command)).encode()
    value = command.model_dump_json(exclude_none=True).encode()
    decoded = decode_record(route, RawRecord(route.topic, 0, offset, key, value))
    assert isinstance(decoded, DecodedCommand), decoded
    return decoded
