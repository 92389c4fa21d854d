"""RabbitMQ topology: names and one idempotent `declare()` (SPEC §4).

gateway ──▶ exchange qcare.ingest ──(update)──▶ quorum queue qcare.ingest
                                                    │ x-delivery-limit, DLX
worker retry ──▶ qcare.ingest.delay.<n>s (TTL) ─────┘ dead-letters back to qcare.ingest
worker/limit ──▶ exchange qcare.ingest.dlx ──(dead)──▶ quorum queue qcare.ingest.dlq
"""

from __future__ import annotations

import asyncio
import logging

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue, ExchangeType

log = logging.getLogger(__name__)

EXCHANGE = "qcare.ingest"
QUEUE = "qcare.ingest"
ROUTING_KEY = "update"
DLX = "qcare.ingest.dlx"
DLQ = "qcare.ingest.dlq"
DEAD_KEY = "dead"
# delay steps for transient failures whose in-process retries ran out
DELAYS_S: tuple[int, ...] = (10, 60, 600)


def delay_queue(seconds: int) -> str:
    return f"{QUEUE}.delay.{seconds}s"


class Topology:
    """The declared objects, for publishing and consuming."""

    def __init__(
        self,
        channel: AbstractChannel,
        exchange: AbstractExchange,
        dlx: AbstractExchange,
        queue: AbstractQueue,
    ) -> None:
        self.channel = channel
        self.exchange = exchange
        self.dlx = dlx
        self.queue = queue


async def _declare_once(
    channel: AbstractChannel, delivery_limit: int, delays: tuple[int, ...]
) -> Topology:
    exchange = await channel.declare_exchange(EXCHANGE, ExchangeType.DIRECT, durable=True)
    dlx = await channel.declare_exchange(DLX, ExchangeType.DIRECT, durable=True)
    dlq = await channel.declare_queue(DLQ, durable=True, arguments={"x-queue-type": "quorum"})
    await dlq.bind(dlx, DEAD_KEY)
    queue = await channel.declare_queue(
        QUEUE,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": delivery_limit,
            "x-dead-letter-exchange": DLX,
            "x-dead-letter-routing-key": DEAD_KEY,
        },
    )
    await queue.bind(exchange, ROUTING_KEY)
    for seconds in delays:
        await channel.declare_queue(
            delay_queue(seconds),
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-message-ttl": seconds * 1000,
                "x-dead-letter-exchange": EXCHANGE,
                "x-dead-letter-routing-key": ROUTING_KEY,
            },
        )
    return Topology(channel, exchange, dlx, queue)


async def attach(connection: aio_pika.abc.AbstractConnection) -> Topology:
    """The declared topology on a new confirm channel of `connection` (nothing declared)."""
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    exchange = await channel.get_exchange(EXCHANGE)
    dlx = await channel.get_exchange(DLX)
    queue = await channel.get_queue(QUEUE)
    return Topology(channel, exchange, dlx, queue)


async def declare(
    connection: aio_pika.abc.AbstractConnection,
    delivery_limit: int,
    delays: tuple[int, ...] = DELAYS_S,
    attempts: int = 8,
) -> Topology:
    """Declare everything; retry RabbitMQ 3.10's INTERNAL_ERROR/noproc race on new quorum queues.

    A failed declaration closes the channel, so each attempt opens a fresh one.
    Returns the topology bound to the last (open) channel.
    """
    delay = 0.1
    for attempt in range(1, attempts + 1):
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        try:
            return await _declare_once(channel, delivery_limit, delays)
        except (aiormq.exceptions.ChannelClosed, aio_pika.exceptions.ChannelClosed) as exc:
            if attempt == attempts or "PRECONDITION_FAILED" in str(exc):
                raise
            log.warning(
                "topology declaration failed, retrying",
                extra={"action": "declare_retry", "attempt": attempt, "error": str(exc)[:200]},
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
    raise AssertionError("unreachable")
