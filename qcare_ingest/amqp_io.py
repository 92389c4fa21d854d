"""An AMQP transport that writes each loop iteration's frames in one system call.

aiormq writes every frame with its own `write()`, and asyncio sends at once when
the socket buffer is empty: one `send()` per publish. Under load the gateway
publishes many messages per event-loop iteration; here they are joined and sent
together on the next iteration. `drain()`, `write_eof()` and `close()` send what
is pending first, so aiormq's ordering and flow control are unchanged.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiormq.connection import TransportFactory
from aiormq.exceptions import AMQPConnectionError
from yarl import URL


class CoalescingWriter(asyncio.StreamWriter):
    def __init__(
        self,
        transport: asyncio.WriteTransport,
        protocol: asyncio.StreamReaderProtocol,
        reader: asyncio.StreamReader,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        super().__init__(transport, protocol, reader, loop)
        self._pending: list[bytes] = []
        self._event_loop = loop

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._pending:
            self._event_loop.call_soon(self.flush)
        self._pending.append(bytes(data))

    def writelines(self, data: Any) -> None:
        for chunk in data:
            self.write(chunk)

    def flush(self) -> None:
        """Send what is pending (a no-op when nothing is)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        if not self.transport.is_closing():
            self.transport.write(b"".join(pending))

    async def drain(self) -> None:
        self.flush()
        await super().drain()

    def write_eof(self) -> None:
        self.flush()
        super().write_eof()

    def close(self) -> None:
        self.flush()
        super().close()


class CoalescingTransportFactory(TransportFactory):
    """One per connection: `writer` is the connection's, once it is open."""

    writer: CoalescingWriter | None = None

    async def create(
        self, url: URL, **kwargs: Any
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        provider = kwargs.pop("ssl_context_provider", None)
        ssl = await provider.get_context() if url.scheme == "amqps" and provider else None
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        try:
            transport, _ = await loop.create_connection(
                lambda: protocol,
                host=url.host or "localhost",
                port=url.port or 5672,
                ssl=ssl,
                **kwargs,
            )
        except OSError as exc:
            raise AMQPConnectionError(*exc.args) from exc
        self.writer = CoalescingWriter(transport, protocol, reader, loop)
        return reader, self.writer
