"""What is transient (retry, wait) and what is poison: one rule for the whole service
(`consumers.failures`), checked on the errors each library really raises."""

import asyncpg
import pytest
from aiokafka import errors as kafka_errors
from asyncpg.exceptions import TargetServerAttributeNotMatched
from sqlalchemy import exc as sa_errors

from shopflow.consumers.failures import TransientError, is_transient


def _db(orig: BaseException, *, invalidated: bool = False) -> sa_errors.DBAPIError:
    """SQLAlchemy's wrapper of a driver error, as a statement raises it."""
    return sa_errors.DBAPIError("SELECT 1", None, orig, connection_invalidated=invalidated)


class _Driver(Exception):
    """A driver error with a SQLSTATE, as SQLAlchemy's asyncpg adapter wraps them."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def _chained(outer: BaseException, cause: BaseException) -> BaseException:
    outer.__cause__ = cause
    return outer


TRANSIENT = {
    "our own": TransientError("retry"),
    "a timeout": TimeoutError(),
    "a refused connection": ConnectionRefusedError(),
    "any OSError": OSError("network is unreachable"),
    "a lost connection (invalidated)": _db(Exception("closed"), invalidated=True),
    "serialization failure 40001": _db(_Driver("40001")),
    "deadlock 40P01": _db(_Driver("40P01")),
    "admin shutdown 57P01": _db(_Driver("57P01")),
    "cannot connect now 57P03": _db(_Driver("57P03")),
    "lock timeout 55P03": _db(_Driver("55P03")),
    "too many connections 53300": _db(_Driver("53300")),
    "connection failure 08006": _db(_Driver("08006")),
    "read-only transaction 25006 (a standby)": _db(_Driver("25006")),
    "asyncpg's read-only transaction": asyncpg.ReadOnlySQLTransactionError("read-only"),
    "no primary among the hosts": TargetServerAttributeNotMatched("no primary"),
    "no primary, wrapped": _chained(RuntimeError("connect"), TargetServerAttributeNotMatched("")),
    "a pooled connection dropped while idle": asyncpg.InternalClientError(
        "cannot switch to state 12; another operation (2) is in progress"
    ),
    "no pooled connection in time": sa_errors.TimeoutError(),
    "asyncpg connection closed": asyncpg.InterfaceError("connection is closed"),
    "a Kafka timeout": kafka_errors.KafkaTimeoutError(),
    "no broker": kafka_errors.NoBrokersAvailable(),
    "not the leader (retriable)": kafka_errors.NotLeaderForPartitionError(),
}

POISON = {
    "a unique violation 23505": _db(_Driver("23505")),
    "a check violation 23514": _db(_Driver("23514")),
    "a raise from a trigger P0001": _db(_Driver("P0001")),
    "a bug": ValueError("bad"),
    "a record too large for the broker": kafka_errors.MessageSizeTooLargeError(),
    "a denied topic": kafka_errors.TopicAuthorizationFailedError(),
}


@pytest.mark.parametrize("error", TRANSIENT.values(), ids=TRANSIENT.keys())
def test_the_infrastructure_failing_is_transient(error: BaseException) -> None:
    assert is_transient(error)


@pytest.mark.parametrize("error", POISON.values(), ids=POISON.keys())
def test_what_repeats_on_every_retry_is_not(error: BaseException) -> None:
    assert not is_transient(error)
