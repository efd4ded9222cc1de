"""What the contract says about one command topic: `CommandRoute`. The routes are
declared in the topic registry (`contracts.topics.COMMAND_ROUTES`); the consumer side
binds each to its handler (`consumers.handlers.BINDINGS`), since this package imports
pydantic only and cannot name handlers.
"""

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from shopflow.contracts.common import WireModel
from shopflow.contracts.events import RejectionReason, ResultEvent


@dataclass(frozen=True)
class CommandRoute:
    """One command topic: its payload type, the field its Kafka key must equal, where
    (and as what) its result goes, and who may send it (CONTRACT.md, Access): `writer`,
    the upstream principal that writes the topic, and `over_http`, whether the HTTP entry
    (`shopflow-gateway`) writes it too."""

    topic: str
    command_type: type[WireModel]
    key_field: str
    result_topic: str
    accepted_type: type[ResultEvent]
    rejected_type: type[ResultEvent]
    writer: str
    over_http: bool = False

    def __post_init__(self) -> None:
        # Checked when the route is declared, so a route that could never key or answer a
        # command fails at import rather than on its first message.
        key = self.command_type.model_fields.get(self.key_field)
        if key is None or key.annotation is not int:
            raise TypeError(f"{self.type_name}.{self.key_field} is not an integer field")
        if "reason" not in self.rejected_type.model_fields:
            raise TypeError(f"{self.rejected_type.__name__} has no `reason`")
        for event in (self.accepted_type, self.rejected_type):
            if self.key_field not in event.model_fields:
                raise TypeError(f"{event.__name__} does not carry `{self.key_field}`")

    @property
    def type_name(self) -> str:
        return self.command_type.__name__

    def fingerprint(self, command: WireModel) -> bytes:
        """SHA-256 of the command type and its canonical JSON: equal for the same command
        however its sender spaced or ordered the fields, different for any other payload
        (what the ledger compares to tell a repeat from an idempotency conflict)."""
        canonical = json.dumps(
            command.model_dump(mode="json"), sort_keys=True, separators=(",", ":")
        )
        return hashlib.sha256(f"{self.type_name}\n{canonical}".encode()).digest()

    def entity_id(self, command: WireModel) -> int:
        value = getattr(command, self.key_field)
        assert isinstance(value, int)
        return value

    def rejection(
        self,
        command: WireModel,
        reason: RejectionReason,
        *,
        product_id: int | None = None,
        **envelope: Any,
    ) -> ResultEvent:
        """The rejection event for `command`; `envelope` is event_id, command_id,
        occurred_at. It carries the command's fields that the event declares (its key,
        the product of a cart change, the order of a cancel or ship), and `product_id`,
        when given, names the product the rejection is about."""
        fields: dict[str, Any] = {"reason": reason} | {
            name: getattr(command, name)
            for name in self.rejected_type.model_fields.keys() & type(command).model_fields.keys()
            if name != "command_id" and getattr(command, name) is not None
        }
        named = "product_id" in self.rejected_type.model_fields and self.key_field != "product_id"
        if product_id is not None and named:
            fields["product_id"] = product_id
        return self.rejected_type(**envelope, **fields)
