"""Which failures are transient (retry, and wait if need be) and which are poison (the
same input fails the same way every time: isolate it, dead-letter it, move on).

One classification for the whole service: the applier's retries, the pipeline's
isolation of a failing record and the subscriber's redelivery all ask `is_transient`.
Transient means the infrastructure, not the input: a lost connection, a server shutting
down, a timeout, a serialization failure or deadlock, a broker saying "retry", a database
failing over (no writable primary among the hosts yet, or a transaction on a node that
became a standby: read-only). Anything
else (a constraint or data error, an error raised at COMMIT by a trigger, a message the
broker refuses for its size, a bug in our code) repeats on every retry, so it is not.
"""

from typing import Final

from aiokafka import errors as kafka_errors
from asyncpg.exceptions import InternalClientError, TargetServerAttributeNotMatched
from sqlalchemy import exc as sa_errors


class TransientError(Exception):
    """Raised by our own code for a condition that a retry can clear."""


# SQLSTATE classes: 08 connection exception, 40 transaction rollback (serialization
# failure, deadlock), 53 insufficient resources, 57 operator intervention (admin
# shutdown, cannot connect now, query canceled), 58 system error.
_TRANSIENT_SQLSTATE_CLASSES: Final = frozenset({"08", "40", "53", "57", "58"})
# 55P03 lock not available (lock_timeout), 55006 object in use, 25006 read-only SQL
# transaction (the node is, or has just become, a standby).
_TRANSIENT_SQLSTATES: Final = frozenset({"55P03", "55006", "25006"})
# aiokafka marks most retriable errors `retriable`; these are transient too.
_TRANSIENT_KAFKA: Final = (
    kafka_errors.KafkaTimeoutError,
    kafka_errors.KafkaConnectionError,
    kafka_errors.NodeNotReadyError,
    kafka_errors.ProducerClosed,
    kafka_errors.NoBrokersAvailable,
)


def _is_transient_one(exc: BaseException) -> bool | None:
    """True or False when this exception alone decides; None to look at its cause."""
    if isinstance(exc, TransientError | TimeoutError | ConnectionError):
        return True
    if isinstance(exc, TargetServerAttributeNotMatched):
        return True  # no host is the primary (`target_session_attrs`): a failover
    if isinstance(exc, InternalClientError):
        # asyncpg's connection in a state it cannot run a query in: "another operation
        # is in progress" from a pooled connection the server dropped while it was idle
        # (a shutdown's FATAL read, the close not yet). A new connection clears it.
        return True
    if isinstance(exc, kafka_errors.KafkaError):
        return bool(exc.retriable) or isinstance(exc, _TRANSIENT_KAFKA)
    if isinstance(exc, sa_errors.DBAPIError):
        if exc.connection_invalidated:
            return True
        sqlstate = getattr(exc.orig, "sqlstate", None)
        if isinstance(sqlstate, str):
            return sqlstate in _TRANSIENT_SQLSTATES or sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES
        if isinstance(exc, sa_errors.InterfaceError):
            return True  # the driver lost its connection
        return None
    if isinstance(exc, sa_errors.TimeoutError | sa_errors.DisconnectionError):
        return True  # no pooled connection in time / a dropped connection
    sqlstate = getattr(exc, "sqlstate", None)  # asyncpg's own exceptions
    if isinstance(sqlstate, str):
        return sqlstate in _TRANSIENT_SQLSTATES or sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES
    if type(exc).__module__.startswith("asyncpg") and "InterfaceError" in {
        t.__name__ for t in type(exc).__mro__
    }:
        return True  # asyncpg: connection closed or not established
    if isinstance(exc, OSError):
        return True
    return None


def is_transient(exc: BaseException) -> bool:
    """Whether a retry (later, if need be) can succeed where `exc` failed."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        decided = _is_transient_one(current)
        if decided is not None:
            return decided
        current = current.__cause__ or current.__context__
    return False


def describe(exc: BaseException) -> str:
    """'<class>: <message>' of the error, as a processing_failed dead letter states it."""
    return f"{type(exc).__name__}: {exc}"
