"""Issue 12, findings 10 and 11: the gateway's edge against hostile and slow clients, over raw
sockets (an HTTP client library would neither send undecodable header bytes nor drip).

Each test runs a real gateway with small QCARE_BODY_TIMEOUT / QCARE_MAX_CONNECTIONS values.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator

import aiohttp

from tests.conftest import Procs
from tests.support.http import post
from tests.support.payloads import UPDATE, order
from tests.support.procs import Gateway, wait_for

KEY = "s3cr3t-kQ7-wM2x9Lp4Vn8Bz"  # 24 characters
MESSAGES = "/api/v1/qcare/messages/edge-unknown"


class Conn:
    """One raw TCP connection to the gateway."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self, timeout: float) -> tuple[int, dict[str, str], bytes]:
        """The next response: status, headers (lower-case names), body."""
        try:
            async with asyncio.timeout(timeout):
                head = await self.reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {}
                for line in filter(None, lines[1:]):
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        except TimeoutError:
            raise AssertionError(f"no response within {timeout}s") from None
        return int(lines[0].split()[1]), headers, body

    async def closed_by_server(self, timeout: float) -> bytes:
        """Everything the server still sends until it closes; fails if it is still open."""
        try:
            async with asyncio.timeout(timeout):
                return await self.reader.read()  # until EOF
        except ConnectionResetError:
            return b""
        except TimeoutError:
            raise AssertionError(f"the gateway kept the connection open for {timeout}s") from None

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


@contextlib.asynccontextmanager
async def connections() -> AsyncIterator[list[Conn]]:
    """A list to put raw connections in; all of them closed at the end."""
    opened: list[Conn] = []
    try:
        yield opened
    finally:
        for conn in opened:
            await conn.close()


async def connect(gw: Gateway) -> Conn:
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    return Conn(reader, writer)


def get_request(path: str, *extra: bytes) -> bytes:
    return b"\r\n".join([f"GET {path} HTTP/1.1".encode(), b"Host: gateway", *extra, b"", b""])


async def started(procs: Procs, **env: str) -> Gateway:
    gw = procs.gateway(**env)
    # a session of its own that keeps no connection open: the cap test counts connections
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        await gw.ready(http)
    return gw


async def test_undecodable_key_bytes_get_the_ordinary_401(procs: Procs) -> None:
    """Finding 10: bytes that are not UTF-8 in X-Api-Key or Authorization are a wrong key
    (401, Web API's body, WWW-Authenticate), never a 500."""
    gw = await started(procs, QCARE_API_KEYS=f"qcare:{KEY}")

    async def ask(*header: bytes) -> tuple[int, dict[str, str], bytes]:
        async with connections() as opened:
            opened.append(conn := await connect(gw))
            await conn.send(get_request(MESSAGES, *header, b"Connection: close"))
            return await conn.response(5)

    status, _, _ = await ask(f"X-Api-Key: {KEY}".encode())
    assert status == 404  # the key works: what follows is refused for its bytes alone
    wrong_status, wrong_headers, wrong_body = await ask(b"X-Api-Key: not-the-key")
    assert wrong_status == 401
    assert wrong_headers["www-authenticate"] == 'Bearer realm="qcare-ingest"'
    assert json.loads(wrong_body) == {"Message": "Authorization has been denied for this request."}
    for header in (
        b"X-Api-Key: \xff\xfe",
        b"Authorization: Bearer \xff\xfe",
        b"X-Api-Key: " + KEY.encode() + b"\xff",
        b"Authorization: Bearer \xc3\x28" + KEY.encode(),
    ):
        status, headers, body = await ask(header)
        assert (status, headers.get("www-authenticate"), body) == (
            401,
            wrong_headers["www-authenticate"],
            wrong_body,
        ), header


async def test_a_dripping_body_gets_408_at_the_deadline_and_the_connection_closes(
    procs: Procs, http: aiohttp.ClientSession
) -> None:
    """Finding 11: a body dripped at a byte every 0.5 s is cut off at QCARE_BODY_TIMEOUT with a
    408 and the end of the connection, while other connections are served meanwhile."""
    deadline = 2.0
    gw = await started(procs, QCARE_BODY_TIMEOUT=str(deadline))
    async with connections() as opened:
        opened.append(slow := await connect(gw))
        await slow.send(
            f"POST {UPDATE} HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000\r\n\r\n{".encode()
        )
        sent = time.monotonic()

        async def drip() -> None:
            while True:
                await asyncio.sleep(0.5)  # the slow client's own pace
                await slow.send(b" ")

        dripping = asyncio.create_task(drip())
        try:
            # others are served meanwhile, the intake included
            msg_id = f"edge-{uuid.uuid4().hex[:8]}"
            assert (await post(http, gw, order(msg_id, f"ACC-{msg_id}")))[0] == 200
            async with http.get(gw.url + "/healthz") as resp:
                assert resp.status == 200
            assert not dripping.done()
            assert time.monotonic() - sent < deadline, "the other requests took too long to tell"

            status, headers, body = await slow.response(deadline + 3)
            answered = time.monotonic() - sent
            assert status == 408
            assert json.loads(body) == {"Message": "The request body did not arrive in time."}
            assert deadline - 0.1 <= answered <= deadline + 1.5, answered
            assert headers.get("connection", "").lower() == "close"
            assert await slow.closed_by_server(2) == b""
            assert not dripping.done(), "the client could drip all along"
        finally:
            dripping.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await dripping
    assert [e["action"] for e in gw.events() if e.get("action") == "body_timeout"] == [
        "body_timeout"
    ]


async def test_a_slow_or_silent_request_head_is_closed_at_the_deadline(
    procs: Procs, http: aiohttp.ClientSession
) -> None:
    """Finding 11 (slowloris): a connection whose request head does not complete within
    QCARE_BODY_TIMEOUT of opening is closed, whether it drips header bytes or sends nothing."""
    deadline = 1.5
    gw = await started(procs, QCARE_BODY_TIMEOUT=str(deadline))
    async with connections() as opened:
        opened.append(dripper := await connect(gw))
        opened.append(silent := await connect(gw))
        opened_at = time.monotonic()
        await dripper.send(f"POST {UPDATE} HTTP/1.1\r\nHost: gateway\r\nX-Slow: ".encode())

        async def drip() -> None:
            while True:
                await asyncio.sleep(0.25)  # the slow client's own pace
                await dripper.send(b"a")

        dripping = asyncio.create_task(drip())
        try:
            async with http.get(gw.url + "/healthz") as resp:
                assert resp.status == 200  # others are served meanwhile
            for conn in (dripper, silent):
                assert await conn.closed_by_server(deadline + 3) == b""  # closed, no answer
                held = time.monotonic() - opened_at
                assert deadline - 0.1 <= held <= deadline + 1.5, held
        finally:
            dripping.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await dripping


async def test_connections_above_the_cap_are_refused_and_capacity_comes_back(
    procs: Procs,
) -> None:
    """Finding 11: at QCARE_MAX_CONNECTIONS open connections a new one is closed at once,
    unanswered; the open ones keep working; closing some makes room again."""
    cap = 6
    gw = await started(procs, QCARE_MAX_CONNECTIONS=str(cap), QCARE_BODY_TIMEOUT="30")
    healthz = get_request("/healthz")

    async def refused(conn: Conn) -> bool:
        sent = time.monotonic()
        with contextlib.suppress(ConnectionResetError):
            await conn.send(healthz)
        answer = await conn.closed_by_server(3)
        return answer == b"" and time.monotonic() - sent < 1

    async with connections() as opened:

        async def served() -> Conn | None:
            """A new connection that answers a request (keep-alive), or None if refused."""
            opened.append(conn := await connect(gw))
            try:
                await conn.send(healthz)
                status, _, _ = await conn.response(3)
            except (asyncio.IncompleteReadError, ConnectionResetError):
                return None
            assert status == 200
            return conn

        # fill up (the readiness probe's connection may take a moment to be let go)
        held = [await wait_for(served, 5, what="a connection served") for _ in range(cap)]
        for _ in range(3):
            opened.append(extra := await connect(gw))
            assert await refused(extra)
        for conn in held:  # the open ones keep working
            await conn.send(healthz)
            assert (await conn.response(3))[0] == 200

        for conn in held[:2]:
            await conn.close()
        held[:2] = [await wait_for(served, 5, what="a connection served") for _ in range(2)]
        opened.append(extra := await connect(gw))
        assert await refused(extra), "refused connections must not have used up slots"
    assert any(e.get("action") == "connections_refused" for e in gw.events())
