"""A Kafka connection whose socket uvloop already closed: a broken connection, not a
RuntimeError that kills whichever aiokafka task wrote to it (shopflow.aiokafka_on_uvloop)."""

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop
from aiokafka.conn import AIOKafkaConnection, CloseReason
from aiokafka.errors import KafkaConnectionError
from aiokafka.protocol.metadata import MetadataRequest

from shopflow import aiokafka_on_uvloop


def _on_uvloop(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    uvloop.run(test())


async def _connection_with_a_closed_socket(
    closed: list[CloseReason],
) -> tuple[AIOKafkaConnection, asyncio.Server]:
    """An aiokafka connection over a real socket, as `connect` leaves it, whose
    transport has since been closed (as when the broker went away)."""
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    connection = AIOKafkaConnection(
        "127.0.0.1", port, on_close=lambda _, reason: closed.append(reason)
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    connection._reader, connection._writer = reader, writer
    connection._versions = {MetadataRequest.API_KEY: (0, 0)}  # as if asked on connect
    connection._read_task = asyncio.create_task(asyncio.sleep(60))
    connection._closed_fut = asyncio.get_running_loop().create_future()
    writer.transport.close()
    await asyncio.sleep(0.05)  # uvloop closes the handle on the next iteration
    return connection, server


def test_uvloop_still_raises_runtime_error_on_a_write_to_a_closed_socket() -> None:
    """The reason for the module: if this fails, uvloop changed and the module can go."""

    async def test() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        _, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        writer.transport.close()
        await asyncio.sleep(0.05)
        with pytest.raises(RuntimeError, match="the handler is closed"):
            writer.write(b"x")
        server.close()

    _on_uvloop(test)


def test_a_send_on_a_closed_socket_is_a_broken_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(AIOKafkaConnection, "send", AIOKafkaConnection.send)
    aiokafka_on_uvloop.tolerate_closed_transports()
    aiokafka_on_uvloop.tolerate_closed_transports()  # idempotent

    async def test() -> None:
        closed: list[CloseReason] = []
        connection, server = await _connection_with_a_closed_socket(closed)
        with pytest.raises(KafkaConnectionError, match="broken"):
            connection.send(MetadataRequest([]))
        assert closed == [CloseReason.CONNECTION_BROKEN]
        assert not connection.connected()
        server.close()

    _on_uvloop(test)


def test_without_it_the_runtime_error_escapes(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the metadata synchronizer died of."""
    monkeypatch.setattr(AIOKafkaConnection, "send", aiokafka_on_uvloop._send_as_aiokafka_wrote_it)

    async def test() -> None:
        connection, server = await _connection_with_a_closed_socket([])
        with pytest.raises(RuntimeError, match="the handler is closed"):
            connection.send(MetadataRequest([]))
        connection._read_task.cancel()
        server.close()

    _on_uvloop(test)


async def test_other_runtime_errors_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    def fails(*args: object, **kwargs: object) -> None:
        raise RuntimeError("something else")

    monkeypatch.setattr(aiokafka_on_uvloop, "_send_as_aiokafka_wrote_it", fails)
    connection = AIOKafkaConnection("127.0.0.1", 1)
    with pytest.raises(RuntimeError, match="something else"):
        aiokafka_on_uvloop._send(connection, MetadataRequest([]))
