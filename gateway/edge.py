"""Defences at the gateway's edge against slow or hostile clients (issue 12).

- **Body deadline** (`read_body`): the whole body within QCARE_BODY_TIMEOUT, else 408 and the
  connection ends.
- **Head deadline**: aiohttp's own keep-alive timer closes a connection whose handler is waiting
  for a request head (idle, or a head still arriving) once `keepalive_timeout` has passed since
  the connection opened or its last response ended; `serve` sets it to QCARE_BODY_TIMEOUT, so a
  slowloris head is cut at the same deadline as a slow body. Its cost is aiohttp's per-request
  bookkeeping, already paid.
- **Connection cap** (`ConnectionLimit`): at most QCARE_MAX_CONNECTIONS open connections; one
  more is closed as soon as it is accepted. Counted in `connection_made`/`connection_lost`:
  per connection, nothing per request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

BODY_TIMEOUT = web.AppKey("body_timeout", float)
MAX_BODY = 4 * 1024 * 1024  # the old maxRequestLength
READ_CHUNK = 64 * 1024
REFUSALS_LOGGED_EVERY_S = 10.0


class BodyTimeout(web.HTTPRequestTimeout):
    """408, and the end of the connection. The answer carries `Connection: close`, and once it
    is out our side is shut for writing, so the client sees the end of the stream at once.
    aiohttp then reads and discards what the client still sends for at most its lingering time
    (10 s) before closing: closing a socket with unread input resets it, and a reset can destroy
    the 408 before the client reads it."""

    def __init__(self, transport: asyncio.BaseTransport | None) -> None:
        super().__init__(
            text='{"Message": "The request body did not arrive in time."}',
            content_type="application/json",
        )
        self.force_close()
        self._closing_transport = transport

    async def write_eof(self, data: bytes = b"") -> None:
        await super().write_eof(data)
        transport = self._closing_transport
        self._closing_transport = None
        if (
            isinstance(transport, asyncio.WriteTransport)
            and not transport.is_closing()
            and transport.can_write_eof()  # not over TLS: there aiohttp's close follows
        ):
            transport.write_eof()


class BodyTooLarge(web.HTTPRequestEntityTooLarge):
    """413 without reading more than the limit: a declared length over it is refused before
    a byte is read, and a body that runs past it is dropped the moment it does."""

    def __init__(self) -> None:
        super().__init__(
            max_size=MAX_BODY,
            actual_size=MAX_BODY + 1,
            text='{"Message": "The request body is larger than 4 MiB."}',
            content_type="application/json",
        )
        self.force_close()


async def read_body(request: web.Request) -> bytes:
    """The whole body within the configured deadline (408 when it passes), at most MAX_BODY
    bytes (413). aiohttp's own read() keeps a 4 MiB buffer alive in the exception it raises
    past client_max_size, until a garbage collection: a run of such bodies grew the
    gateway by 4 MB each."""
    declared = request.content_length
    if declared is not None and declared > MAX_BODY:
        raise BodyTooLarge
    if declared == 0 or not request.can_read_body:
        return b""
    try:
        async with asyncio.timeout(request.app[BODY_TIMEOUT]):
            if declared is not None:
                return await request.content.readexactly(declared)
            body = bytearray()
            async for chunk in request.content.iter_chunked(READ_CHUNK):
                if len(body) + len(chunk) > MAX_BODY:
                    del body
                    raise BodyTooLarge
                body += chunk
            return bytes(body)
    except TimeoutError:
        log.warning(
            "request body not received in time",
            extra={
                "action": "body_timeout",
                "remote": request.remote,
                "deadline_s": request.app[BODY_TIMEOUT],
            },
        )
        raise BodyTimeout(request.transport) from None
    except asyncio.IncompleteReadError:
        raise web.HTTPBadRequest(
            text='{"Message": "The request body ended before its Content-Length."}',
            content_type="application/json",
        ) from None


class ConnectionLimit:
    """The gateway's protocol factory (for `loop.create_server`): aiohttp's request handlers
    for the application's `web.Server`, at most `limit` of them connected at once.

    Above the limit a new connection is closed as soon as it is accepted, unanswered: a refusal
    costs no buffer, no timer and no parsing, and holds no file descriptor, which is what
    matters when the connections come from a flood. (A 503 written before the request is read
    is no more reliable: the client's request then arrives at a closed socket, the reset it
    causes can destroy the 503 before it is read, and the client sees the same failed
    connection.) Connections already open are untouched; a slot is free again the moment a
    connection is lost. The decision is taken in `connection_made`, one event at a time, so
    it is exact, and over TLS it counts connections whose handshake is complete (asyncio
    bounds a handshake by its own timeout)."""

    def __init__(self, server: web.Server, limit: int, **handler_kwargs: Any) -> None:
        self.server = server
        self.limit = limit
        self.open = 0
        self.refused = 0
        self._handler_kwargs = handler_kwargs
        self._loop = asyncio.get_running_loop()
        self._unlogged = 0
        self._logged_at = -REFUSALS_LOGGED_EVERY_S

    def __call__(self) -> web.RequestHandler:
        return _LimitedHandler(self, self.server, loop=self._loop, **self._handler_kwargs)

    def admit(self) -> bool:
        if self.open >= self.limit:
            return False
        self.open += 1
        return True

    def release(self) -> None:
        self.open -= 1

    def refuse(self, transport: asyncio.BaseTransport) -> None:
        transport.close()
        self.refused += 1
        self._unlogged += 1
        now = time.monotonic()
        if now - self._logged_at >= REFUSALS_LOGGED_EVERY_S:  # a flood writes one line per 10 s
            log.warning(
                "connection limit reached: new connections refused",
                extra={
                    "action": "connections_refused",
                    "refused": self._unlogged,
                    "limit": self.limit,
                },
            )
            self._logged_at = now
            self._unlogged = 0


class _LimitedHandler(web.RequestHandler):
    """aiohttp's request handler, admitted or refused by a ConnectionLimit when connected.
    Only the two per-connection callbacks are overridden; the per-request path is aiohttp's."""

    __slots__ = ("_admitted", "_limit")

    def __init__(self, limit: ConnectionLimit, manager: web.Server, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._limit = limit
        self._admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._limit.admit():
            self._limit.refuse(transport)  # never started: aiohttp does not know it
            return
        self._admitted = True
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._admitted:
            self._admitted = False
            self._limit.release()
            super().connection_lost(exc)
