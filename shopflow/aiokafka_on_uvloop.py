"""aiokafka on uvloop: a write to a connection the broker closed must not kill a client.

aiokafka's `AIOKafkaConnection.send` turns an `OSError` from its socket write into
`KafkaConnectionError`, which every caller handles (the connection is dropped and opened
again). asyncio's own transports say nothing at all in that case. uvloop's raise
`RuntimeError("unable to perform operation on <TCPTransport closed=True ...>; the handler
is closed")` instead (aio-libs/aiokafka#1038, open; MagicStack/uvloop#506), which nothing
in aiokafka expects. When it reaches a client's metadata synchronizer, that task dies,
and from then on every metadata refresh of the client waits forever.

`make chaos` found it (the broker-restart fault): after the broker was SIGKILLed and
started again, now and then one or more consumers of a worker never found their group
coordinator again. Their heartbeats stopped while they went on fetching, every offset
commit timed out, and the worker's graceful stop hung in aiokafka's
`ensure_coordinator_known`, waiting on that refresh. The slow-stop report
(`shopflow.slow_stop`) showed the dead synchronizers with this RuntimeError.

uvloop stays, because the worker drains more with it (docs/measurements.md#libraries).
So the write's RuntimeError is given the meaning aiokafka gives an OSError there: the connection is
closed as broken and `KafkaConnectionError` raised. `tests/unit/test_aiokafka_on_uvloop.py`
shows uvloop still raising it; when that test fails, uvloop has changed, and this module
can go.
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
