"""Confirmed, persistent publishing that fails fast while RabbitMQ is away (SPEC §2)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import struct
import time
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
)
from yarl import URL

from .amqp_io import CoalescingTransportFactory
from .amqp_publish import ConfirmedPublisher
from .amqp_urls import addresses, where
from .errors import PublishError, UnpublishableError
from .tls import amqp_context
from .topology import DELAYS_S, EXCHANGE, ROUTING_KEY, Topology, declare

log = logging.getLogger(__name__)


async def republish(
    exchange: AbstractExchange,
    routing_key: str,
    message: AbstractIncomingMessage,
    headers: dict[str, Any] | None = None,
) -> None:
    """A persistent copy of a delivered message (its own headers unless given), confirmed.
    Callers ack the original only after this returns: a crash in between duplicates."""
    await exchange.publish(
        aio_pika.Message(
            message.body,
            message_id=message.message_id,
            content_type=message.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            headers=dict(message.headers or {}) if headers is None else headers,
        ),
        routing_key,
    )


async def connect(
    url: str, timeout: float, coalesce: bool = False, ca_file: str | None = None
) -> AbstractConnection:
    """A plain (non-robust) connection: callers own reconnection, so nothing hides a failure.
    `url`: one URL or a cluster's nodes (amqp_urls.py), tried in shuffled order within
    `timeout` (each gets an equal share of what is left, the last one all of it): callers
    that lost a node come back on another one, and clients spread over the nodes.
    `coalesce`: frames written in one loop iteration go out in one send (amqp_io).
    `amqps://`: TLS 1.2+, each node's certificate and host name verified (`ca_file`)."""
    candidates = addresses(url)
    random.shuffle(candidates)
    deadline = time.monotonic() + timeout
    failures: list[str] = []
    for left, address in zip(range(len(candidates), 0, -1), candidates, strict=True):
        budget = max(0.001, (deadline - time.monotonic()) / left)
        try:
            conn = await _connect_one(address, budget, coalesce, ca_file)
        except Exception as exc:
            if left == 1:
                if failures:
                    exc.add_note("other nodes: " + "; ".join(failures))
                raise
            failures.append(f"{where(address)}: {type(exc).__name__}")
            log.info(
                "broker node unreachable, trying another",
                extra={"action": "broker_node_failed", "node": where(address),
                       "error": type(exc).__name__},
            )  # fmt: skip
            continue
        log.info(
            "broker node connected",
            extra={"action": "broker_node", "node": where(address), "nodes": len(candidates)},
        )
        return conn
    raise AssertionError("unreachable")


async def frame_publisher(conn: AbstractConnection, channel: AbstractChannel) -> ConfirmedPublisher:
    """The frame writer (amqp_publish.py) on `channel` of `conn`, a connection opened by
    `connect(..., coalesce=True)`, to the ingest exchange. The channel must publish
    through nothing else."""
    raw = await channel.get_underlay_channel()
    factory = conn.kwargs.get("transport_factory")
    assert isinstance(raw, aiormq.Channel)
    assert isinstance(factory, CoalescingTransportFactory), "connect with coalesce=True"
    assert factory.writer is not None
    return ConfirmedPublisher(raw, factory.writer, EXCHANGE, ROUTING_KEY)


async def _connect_one(
    url: str, timeout: float, coalesce: bool, ca_file: str | None
) -> AbstractConnection:
    conn = aio_pika.Connection(URL(url), ssl_context=amqp_context(url, ca_file))
    if coalesce:
        conn.kwargs["transport_factory"] = CoalescingTransportFactory()
    try:
        await asyncio.wait_for(conn.connect(timeout=timeout), timeout)
    except (Exception, asyncio.CancelledError):
        # closed, not left to aio-pika's __del__: a collection outside the event loop
        # thread cannot schedule its close (an unawaited coroutine, an open socket)
        await _close_quietly(conn)
        raise
    return conn


BLOCKED = "RabbitMQ blocks publishes: a resource alarm (memory or disk) is in effect"
BLOCKED_RECONNECT_S = 30.0  # a connection blocked this long is replaced (see publish)


class Publisher:
    """One connection and confirm channel, re-opened on demand after any failure.

    `publish()` returns only after RabbitMQ confirmed the persistent message, or
    raises PublishError within `timeout` seconds. After a failed connect it does
    not try again for `cooldown` seconds, so an outage costs each request
    microseconds, not a connect timeout.
    """

    def __init__(
        self,
        url: str,
        delivery_limit: int,
        timeout: float = 5.0,
        cooldown: float = 0.5,
        delays: tuple[int, ...] = DELAYS_S,
        ca_file: str | None = None,
    ) -> None:
        self.url = url
        self.ca_file = ca_file
        self.delays = delays
        self.delivery_limit = delivery_limit
        self.timeout = timeout
        self.cooldown = cooldown
        self._conn: AbstractConnection | None = None
        self._topology: Topology | None = None
        self._sender: ConfirmedPublisher | None = None  # on the topology's channel
        self._lock = asyncio.Lock()
        self._down_until = 0.0
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing: set[asyncio.Task[None]] = set()
        self._blocked_since: float | None = None  # blocked, as a publish last saw it

    @property
    def connected(self) -> bool:
        return (
            self._conn is not None
            and not self._conn.is_closed
            and self._topology is not None
            and not self._topology.channel.is_closed
        )

    async def _ensure(self) -> Topology:
        if self.connected:
            assert self._topology is not None
            return self._topology
        async with self._lock:
            if self.connected:
                assert self._topology is not None
                return self._topology
            if time.monotonic() < self._down_until:
                raise PublishError("RabbitMQ is unreachable (retrying shortly)")
            await self._drop()
            try:
                self._conn = await connect(
                    self.url, self.timeout, coalesce=True, ca_file=self.ca_file
                )
                self._topology = await declare(self._conn, self.delivery_limit, self.delays)
                self._sender = await frame_publisher(self._conn, self._topology.channel)
            except Exception as exc:
                self._down_until = time.monotonic() + self.cooldown
                await self._drop()
                log.warning(
                    "broker connect failed",
                    extra={"action": "broker_connect_failed", "error": type(exc).__name__},
                )
                raise PublishError(f"RabbitMQ is unreachable: {type(exc).__name__}") from exc
            log.info("broker connected", extra={"action": "broker_connected"})
            return self._topology

    def _forget(self) -> AbstractConnection | None:
        """Drop the connection and what hangs off it; the caller closes what is returned."""
        conn, self._conn, self._topology, self._sender = self._conn, None, None, None
        self._blocked_since = None  # a new connection is not blocked until it publishes
        return conn

    async def _drop(self) -> None:
        conn = self._forget()
        if conn is not None:
            await _close_quietly(conn)

    async def publish(self, body: bytes, message_id: str, headers: dict[str, Any]) -> None:
        self._inflight += 1
        self._idle.clear()
        deadline = time.monotonic() + self.timeout
        try:
            if not self.connected:
                async with asyncio.timeout(self.timeout):
                    await self._ensure()
            sender = self._sender
            assert sender is not None
            self._refuse_if_blocked(sender)
            while (earlier := sender.pending(message_id)) is not None:
                # the same msg_id not yet confirmed (a client's retry): its outcome first,
                # as RabbitMQ names a returned message by its id alone
                await asyncio.wait([earlier], timeout=max(0.001, deadline - time.monotonic()))
                if time.monotonic() >= deadline:
                    raise TimeoutError
                self._refuse_if_blocked(sender)  # (Blocked may have come meanwhile)
            try:
                # frames written straight to the connection (amqp_publish.py): this runs
                # for every request. A return (unroutable) or nack fails the confirmation.
                confirmation = sender.send(body, message_id, headers, "application/json")
            except (TypeError, ValueError, struct.error) as exc:
                # Raised while the frames were built, before a delivery tag was taken or a
                # byte written: the message's fault, not the channel's, so the shared
                # connection stays (a header that could not be encoded once cost it, and
                # every request in flight on it got a 503).
                raise UnpublishableError(f"message cannot be framed: {type(exc).__name__}") from exc
            async with asyncio.timeout(max(0.001, deadline - time.monotonic())):
                await confirmation
        except (PublishError, UnpublishableError):
            raise
        except (Exception, TimeoutError) as exc:
            if isinstance(exc, TimeoutError) and self.blocked:
                # written before RabbitMQ's Connection.Blocked arrived: it stays unread in
                # the buffers until the alarm clears (then confirmed, or redone by the
                # client's retry; the msg_id dedupes). The connection is fine: keep it
                raise PublishError(f"{BLOCKED}; not confirmed in time") from exc
            # The channel state is unknown now: start over on the next publish. (A return or
            # a nack too: reconnecting declares the topology again, which binds a queue an
            # operator or a failed upgrade left unbound, and moves to a node that works.)
            self._drop_later()
            raise PublishError(f"publish not confirmed: {type(exc).__name__}") from exc
        finally:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()

    def _refuse_if_blocked(self, sender: ConfirmedPublisher) -> None:
        """PublishError, nothing written, while RabbitMQ blocks the connection (an alarm):
        written, the message would stay unread until the alarm clears, and the client would
        wait out the timeout for a 503 anyway. Logs the changes it sees."""
        since = self._blocked_since
        if not sender.blocked:
            if since is not None:
                self._blocked_since = None
                log.info(
                    "RabbitMQ accepts publishes again",
                    extra={"action": "broker_unblocked",
                           "blocked_s": round(time.monotonic() - since, 1)},
                )  # fmt: skip
            return
        if since is None:
            since = self._blocked_since = time.monotonic()
            log.warning(BLOCKED, extra={"action": "broker_blocked"})
        if time.monotonic() - since > BLOCKED_RECONNECT_S:
            # RabbitMQ stops reading a blocked connection and watching its heartbeats: one
            # that died meanwhile would look blocked for minutes. A new one (on any node)
            # is not blocked until it publishes, so the next request finds out again.
            self._drop_later()
        raise PublishError(BLOCKED)

    def _drop_later(self) -> None:
        """Forget the connection now, close it in the background."""
        self._down_until = 0.0
        conn = self._forget()
        if conn is not None:
            task = asyncio.get_running_loop().create_task(_close_quietly(conn))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    @property
    def blocked(self) -> bool:
        """RabbitMQ blocks this connection's publishes (a memory or disk alarm)."""
        return self._sender is not None and self._sender.blocked

    async def ping(self) -> bool:
        """Connected (connecting if need be) and not blocked by an alarm."""
        try:
            async with asyncio.timeout(self.timeout):
                await self._ensure()
        except (PublishError, TimeoutError):
            return False
        return not self.blocked

    async def close(self, grace: float = 10.0) -> None:
        """Wait for in-flight publishes (up to `grace` s), then close."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace)
        await self._drop()


async def _close_quietly(conn: AbstractConnection) -> None:
    if conn.is_closed:
        return
    with contextlib.suppress(Exception):
        await asyncio.wait_for(conn.close(), 2)
