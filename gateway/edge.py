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
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from http import HTTPStatus
from typing import Any

from aiohttp import HttpVersion11, web

from qcare_ingest.textsafe import safe_text

log = logging.getLogger(__name__)

BODY_TIMEOUT = web.AppKey("body_timeout", float)
MAX_BODY = 4 * 1024 * 1024  # the old maxRequestLength
SMALL_BODY = 64 * 1024  # announced bodies up to this are read (and bound) at once
READ_CHUNK = 64 * 1024
BUDGET_BYTES = 16 * 1024 * 1024  # large bodies held at once (four 4 MiB ones), ~4x more while bound
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
        # by what the transport can do, not its class: a loop's transports need not derive
        # from asyncio.WriteTransport (uvloop's do not: there every 408 lingered 10 s)
        write_eof = getattr(transport, "write_eof", None)
        can_write_eof = getattr(transport, "can_write_eof", None)
        if (
            transport is not None
            and write_eof is not None
            and can_write_eof is not None
            and not transport.is_closing()
            and can_write_eof()  # not over TLS: there aiohttp's close follows
        ):
            write_eof()


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


def _refuse_encoding(request: web.Request) -> None:
    """415 for a compressed body. The old server (IIS and Web API) never decoded request
    bodies; aiohttp would, after the Content-Length check (a gzip bomb passed it)."""
    coding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if coding not in ("", "identity"):
        shown = safe_text(coding, 40).encode("ascii", "backslashreplace").decode()
        raise web.HTTPUnsupportedMediaType(
            text=json.dumps({"Message": f"Content-Encoding '{shown}' is not supported: "
                             "send the body uncompressed."}),
            content_type="application/json",
        )  # fmt: skip


async def read_body(request: web.Request) -> bytes:
    """A small body (Content-Length up to SMALL_BODY) within the configured deadline: 408
    when it passes. Larger or unannounced bodies: `big_body`."""
    _refuse_encoding(request)
    declared = request.content_length
    if declared is None or declared > SMALL_BODY:
        raise AssertionError("read_body takes small announced bodies; see big_body")
    if declared == 0 or not request.can_read_body:
        return b""
    with _reading(request):
        if request.content.is_eof():  # it has all arrived (the usual case): no deadline to
            return await request.content.readexactly(declared)  # arm, nothing to wait for
        async with asyncio.timeout(request.app[BODY_TIMEOUT]):
            return await request.content.readexactly(declared)


@contextlib.asynccontextmanager
async def big_body(request: web.Request) -> AsyncIterator[bytes]:
    """A body over SMALL_BODY or without a Content-Length, at most MAX_BODY (413), within
    the deadline (408). What it holds counts against the application's BodyBudget while
    the `async with` lasts, taken as the bytes arrive: a slow client holds only what it
    has sent, and past the budget new bytes wait (503 if the deadline passes waiting)."""
    _refuse_encoding(request)
    declared = request.content_length
    if declared is not None and declared > MAX_BODY:
        raise BodyTooLarge  # before a byte is read: aiohttp's read() kept a 4 MiB buffer
        # alive in its 413 exception until a garbage collection (4 MB more per such body)
    budget = request.app[BODY_BUDGET]
    taken = 0
    held_up = False  # waiting for the budget when the deadline passed: 503, not 408
    try:
        with _reading(request, lambda: held_up):
            async with asyncio.timeout(request.app[BODY_TIMEOUT]):
                body = bytearray()
                async for chunk in request.content.iter_chunked(READ_CHUNK):
                    if len(body) + len(chunk) > MAX_BODY:
                        del body
                        raise BodyTooLarge
                    held_up = True
                    await budget.take(len(chunk))
                    held_up = False
                    taken += len(chunk)
                    body += chunk
        if declared is not None and len(body) != declared:
            raise _incomplete()
        yield bytes(body)
    finally:
        budget.give(taken)


class BodyBudget:
    """Bytes of large request bodies the gateway holds at once, across requests."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.free = limit
        self._freed = asyncio.Event()

    async def take(self, n: int) -> None:
        while self.free < n:  # every waiter looks again whenever bytes are given back
            self._freed.clear()
            await self._freed.wait()
        self.free -= n

    def give(self, n: int) -> None:
        self.free += n
        self._freed.set()


BODY_BUDGET = web.AppKey("body_budget", BodyBudget)


def _incomplete() -> web.HTTPBadRequest:
    return web.HTTPBadRequest(
        text='{"Message": "The request body ended before its Content-Length."}',
        content_type="application/json",
    )


@contextlib.contextmanager
def _reading(request: web.Request, held_up: Callable[[], bool] = lambda: False) -> Iterator[None]:
    """The read's failures as answers: 408 past the deadline (503 if the gateway, not the
    client, held it up), 400 for a body cut short (a client that went away is not a server
    error: it was counted as a 500 before)."""
    try:
        yield
    except TimeoutError:
        if held_up():
            raise web.HTTPServiceUnavailable(
                text='{"Message": "The gateway is busy with other large requests; retry later."}',
                content_type="application/json",
                headers={"Retry-After": "5"},
            ) from None
        log.warning(
            "request body not received in time",
            extra={
                "action": "body_timeout",
                "remote": request.remote,
                "deadline_s": request.app[BODY_TIMEOUT],
            },
        )
        raise BodyTimeout(request.transport) from None
    except (asyncio.IncompleteReadError, ConnectionError):
        log.info("client went away mid-body", extra={"action": "client_gone"})
        raise _incomplete() from None


async def expect_continue(request: web.Request) -> None:
    """`Expect: 100-continue`: 413 at once for a declared length over 4 MiB, instead of
    inviting the upload; otherwise aiohttp's answer (100 Continue on HTTP/1.1)."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise BodyTooLarge
    if request.version >= HttpVersion11 and (
        request.headers.get("Expect", "").lower() == "100-continue"
    ):
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")


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

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's answer to a request it could not parse quoted the bytes it choked on
        (a body after `Connection: close` came back whole, HKID and name included): answer
        with the status alone. The log line keeps the exception, its message withheld by
        the log formatter (logs.py)."""
        if status != 500:
            message = f"{status} {HTTPStatus(status).phrase}: the request is not valid HTTP/1.1."
        return super().handle_error(request, status, exc, message)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._admitted:
            self._admitted = False
            self._limit.release()
            super().connection_lost(exc)
