"""The coalescing AMQP writer, over a real loopback socket."""

from __future__ import annotations

import asyncio

import pytest
from aiormq.exceptions import AMQPConnectionError
from yarl import URL

from qcare_ingest.amqp_io import CoalescingTransportFactory, CoalescingWriter


async def _server() -> tuple[asyncio.Server, asyncio.Queue[bytes], int]:
    received: asyncio.Queue[bytes] = asyncio.Queue()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            received.put_nowait(data)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, received, server.sockets[0].getsockname()[1]


async def _read(received: asyncio.Queue[bytes], size: int) -> bytes:
    data = b""
    async with asyncio.timeout(5):
        while len(data) < size:
            data += await received.get()
    return data


async def test_frames_of_one_iteration_leave_in_one_send_in_order() -> None:
    server, received, port = await _server()
    try:
        _, writer = await CoalescingTransportFactory().create(URL(f"amqp://127.0.0.1:{port}/"))
        assert isinstance(writer, CoalescingWriter)
        sends: list[bytes] = []
        real_write = writer.transport.write
        writer.transport.write = lambda data: (sends.append(bytes(data)), real_write(data))[1]  # type: ignore[method-assign]
        for chunk in (b"one,", b"two,", b"three"):
            writer.write(chunk)
        assert sends == []  # nothing sent within the iteration
        await asyncio.sleep(0)
        assert sends == [b"one,two,three"]
        assert await _read(received, 13) == b"one,two,three"

        writer.write(b"before-drain")
        await writer.drain()  # drain sends what is pending first
        assert sends[-1] == b"before-drain"
        writer.write(b"|last")
        writer.close()  # and so does close
        await writer.wait_closed()
        assert await _read(received, 17) == b"before-drain|last"
    finally:
        server.close()
        await server.wait_closed()


async def test_refused_connection_is_an_amqp_connection_error() -> None:
    server, _, port = await _server()
    server.close()
    await server.wait_closed()
    with pytest.raises(AMQPConnectionError):
        await CoalescingTransportFactory().create(URL(f"amqp://127.0.0.1:{port}/"))
