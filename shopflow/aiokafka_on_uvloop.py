"""aiokafka on uvloop: a write to a connection the broker closed must not kill a client.

aiokafka turns an `OSError` from a socket write into `KafkaConnectionError`, which its
callers handle. uvloop raises `RuntimeError("unable to perform operation on
<TCPTransport closed=True ...>")` instead (aio-libs/aiokafka#1038, MagicStack/uvloop#506),
which kills a client's metadata synchronizer: `make chaos` (broker-restart) found
consumers that never found their coordinator again. uvloop stays (the worker drains more
with it: docs/measurements.md#libraries), so that RuntimeError is given an OSError's
meaning here. `tests/unit/test_aiokafka_on_uvloop.py` shows uvloop still raising it;
when it fails, this module can go.
"""

from typing import Any

from aiokafka.conn import AIOKafkaConnection, CloseReason
from aiokafka.errors import KafkaConnectionError

_CLOSED_HANDLE = "the handler is closed"
_send_as_aiokafka_wrote_it = AIOKafkaConnection.send


def _send(self: AIOKafkaConnection, request: Any, expect_response: bool = True) -> Any:
    try:
        return _send_as_aiokafka_wrote_it(self, request, expect_response=expect_response)
    except RuntimeError as error:
        if _CLOSED_HANDLE not in str(error):
            raise
        self.close(reason=CloseReason.CONNECTION_BROKEN)
        raise KafkaConnectionError(
            f"Connection at {self.host}:{self.port} broken: {error}"
        ) from error


def tolerate_closed_transports() -> None:
    """Make every aiokafka connection of this process treat uvloop's closed-transport
    RuntimeError as a broken connection. Idempotent."""
    AIOKafkaConnection.send = _send
