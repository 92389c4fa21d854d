"""RabbitMQ topology: names, arguments and one idempotent `declare()` (SPEC §4).

gateway ──▶ exchange qcare.ingest ──(update)──▶ quorum queue qcare.ingest
                                                    │ x-delivery-limit, DLX
worker retry ──▶ qcare.ingest.delay.<n>s (TTL) ─────┘ dead-letters back to qcare.ingest
worker/limit ──▶ exchange qcare.ingest.dlx ──(dead)──▶ quorum queue qcare.ingest.dlq

Every queue that dead-letters (the main queue: delivery limit; the delay queues: TTL)
does so at least once: `x-dead-letter-strategy: at-least-once`, which RabbitMQ (3.10
and later) honours only together with `x-overflow: reject-publish`. A message being
dead-lettered then stays in its source queue until the target queue has confirmed it,
so a target that is missing or unbound at that moment delays the message (RabbitMQ
retries every `dead_letter_worker_publisher_confirm_timeout`, 3 minutes by default,
and at once on a policy change) instead of dropping it.

RabbitMQ cannot change the arguments of an existing queue: redeclaring it with others
fails with PRECONDITION_FAILED (3.10 compares, among others, x-dead-letter-strategy,
x-overflow and x-delivery-limit). Queues declared by an older version are therefore
used as they are, with a warning, by `declare()`, and rebuilt with today's arguments by
`qcare-ingest migrate` (topology_upgrade.py).

Every quorum queue asks for GROUP_SIZE members (issue 17: a three-node cluster survives
one node's loss). RabbitMQ caps it at the cluster's size, so a single node declares the
same queues with one member. 3.10 compares this argument on a redeclaration too, but it
only matters when a queue is created (membership later is rabbitmq-queues' business):
a queue that exists without it (declared before issue 17) is current all the same.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue, ExchangeType

log = logging.getLogger(__name__)

# What each RabbitMQ user needs (issue 14), as rabbitmqctl set_permissions' configure,
# write and read regular expressions; scripts/broker-users.sh and the README say the same.
# Only `migrate` declares (and upgrades) the topology: the others attach to it.
# Publishing to the default exchange (the delay queues) is a write on `amq.default`.
PERMISSIONS: dict[str, tuple[str, str, str]] = {
    # the gateway reads the dead-letter queue for the console's dead-letter pages (issue 15)
    "gateway": ("^$", r"^qcare\.ingest$", r"^qcare\.ingest\.dlq$"),
    "worker": ("^$", r"^(amq\.default|qcare\.ingest\.dlx)$", r"^qcare\.ingest$"),
    "cli": ("^$", r"^qcare\.ingest$", r"^qcare\.ingest(\.dlq)?$"),
    "migrate": (".*", ".*", ".*"),
}

EXCHANGE = "qcare.ingest"
QUEUE = "qcare.ingest"
ROUTING_KEY = "update"
DLX = "qcare.ingest.dlx"
DLQ = "qcare.ingest.dlq"
DEAD_KEY = "dead"
# delay steps for transient failures whose in-process retries ran out
DELAYS_S: tuple[int, ...] = (10, 60, 600)
# quorum queue members at creation: tolerates one node's loss (capped at the cluster's size)
GROUP_SIZE = 3
GROUP_SIZE_ARG = "x-quorum-initial-group-size"
# arguments that only count when a queue is created: an existing queue may differ in them
CREATION_ONLY = (GROUP_SIZE_ARG,)

# at-least-once dead-lettering (RabbitMQ >= 3.10; the strategy needs reject-publish)
AT_LEAST_ONCE: dict[str, Any] = {
    "x-dead-letter-strategy": "at-least-once",
    "x-overflow": "reject-publish",
}


def delay_queue(seconds: int) -> str:
    return f"{QUEUE}.delay.{seconds}s"


def creation_only(arguments: dict[str, Any]) -> dict[str, Any]:
    """`arguments` without those that only count when a queue is created: what an existing
    queue must match."""
    return {k: v for k, v in arguments.items() if k not in CREATION_ONLY}


def main_queue_arguments(delivery_limit: int) -> dict[str, Any]:
    return {
        "x-queue-type": "quorum",
        GROUP_SIZE_ARG: GROUP_SIZE,
        "x-delivery-limit": delivery_limit,
        "x-dead-letter-exchange": DLX,
        "x-dead-letter-routing-key": DEAD_KEY,
        **AT_LEAST_ONCE,
    }


def delay_queue_arguments(seconds: int) -> dict[str, Any]:
    return {
        "x-queue-type": "quorum",
        GROUP_SIZE_ARG: GROUP_SIZE,
        "x-message-ttl": seconds * 1000,
        "x-dead-letter-exchange": EXCHANGE,
        "x-dead-letter-routing-key": ROUTING_KEY,
        **AT_LEAST_ONCE,
    }


# RabbitMQ 4.0 gives a quorum queue declared without x-delivery-limit a limit of 20, and the
# DLQ has no dead-letter exchange: a dead letter returned to it 20 times (`dlq list` and
# `dlq show` read without acking) would be dropped. Its own limit, far out of reach, keeps
# 4.x from choosing one; 3.10 had no default and behaves the same with it.
DLQ_DELIVERY_LIMIT = 1_000_000
DLQ_ARGUMENTS: dict[str, Any] = {
    "x-queue-type": "quorum",
    GROUP_SIZE_ARG: GROUP_SIZE,
    "x-delivery-limit": DLQ_DELIVERY_LIMIT,
}


def queue_arguments(delivery_limit: int, delays: tuple[int, ...]) -> dict[str, dict[str, Any]]:
    """Every queue's name and arguments, in declaration order (the DLQ first: the
    main queue dead-letters into it)."""
    queues = {DLQ: DLQ_ARGUMENTS, QUEUE: main_queue_arguments(delivery_limit)}
    queues.update({delay_queue(s): delay_queue_arguments(s) for s in delays})
    return queues


class Topology:
    """The declared objects, for publishing and consuming.

    `outdated`: queues that exist with other arguments than today's (declared by an
    older version); they are used as they are until `qcare-ingest migrate` rebuilds them.
    """

    def __init__(
        self,
        channel: AbstractChannel,
        exchange: AbstractExchange,
        dlx: AbstractExchange,
        queue: AbstractQueue,
        outdated: tuple[str, ...] = (),
    ) -> None:
        self.channel = channel
        self.exchange = exchange
        self.dlx = dlx
        self.queue = queue
        self.outdated = outdated


CHANNEL_CLOSED = (aiormq.exceptions.ChannelClosed, aio_pika.exceptions.ChannelClosed)


def precondition_failed(exc: BaseException) -> bool:
    return isinstance(exc, aiormq.exceptions.ChannelPreconditionFailed) or (
        "PRECONDITION_FAILED" in str(exc)
    )


async def open_channel(connection: aio_pika.abc.AbstractConnection) -> AbstractChannel:
    return await connection.channel(publisher_confirms=True, on_return_raises=True)


async def _declare_once(
    connection: aio_pika.abc.AbstractConnection,
    delivery_limit: int,
    delays: tuple[int, ...],
) -> Topology:
    """One attempt. Every channel but the last one is closed by the broker's error."""
    channel = await open_channel(connection)
    await channel.declare_exchange(EXCHANGE, ExchangeType.DIRECT, durable=True)
    await channel.declare_exchange(DLX, ExchangeType.DIRECT, durable=True)
    outdated: list[str] = []
    for name, arguments in queue_arguments(delivery_limit, delays).items():
        try:
            await channel.declare_queue(name, durable=True, arguments=arguments)
        except CHANNEL_CLOSED as exc:
            if not precondition_failed(exc):
                raise
            # The failure closed the channel. Declared before GROUP_SIZE_ARG was: current
            # all the same. Else declared by an older version: use it as it is.
            # NOT_FOUND here (deleted meanwhile by a migration) is retried.
            channel = await open_channel(connection)
            if not await matches_but_creation_only(channel, name, arguments):
                outdated.append(name)
                if channel.is_closed:
                    channel = await open_channel(connection)
                await channel.declare_queue(name, passive=True)
    exchange = await channel.get_exchange(EXCHANGE, ensure=False)
    dlx = await channel.get_exchange(DLX, ensure=False)
    queue = await channel.get_queue(QUEUE, ensure=False)
    dlq = await channel.get_queue(DLQ, ensure=False)
    await dlq.bind(dlx, DEAD_KEY)
    if QUEUE not in outdated:
        # An outdated main queue is bound already, unless a migration has unbound it
        # on purpose while it moves the queue's messages out: leave it so.
        await queue.bind(exchange, ROUTING_KEY)
    if outdated:
        log.warning(
            "queues exist with other arguments than this version declares (an older "
            "version's, or another QCARE_DELIVERY_LIMIT): using them as they are; run "
            "`qcare-ingest migrate` to rebuild them (at-least-once dead-lettering)",
            extra={"action": "topology_outdated", "queues": outdated},
        )
    return Topology(channel, exchange, dlx, queue, tuple(outdated))


async def matches_but_creation_only(
    channel: AbstractChannel, name: str, arguments: dict[str, Any]
) -> bool:
    """Whether queue `name` exists with `arguments` but for the creation-only ones: False if
    there is nothing to ignore, or if it differs in others (the failure closed `channel`).
    Should the queue have vanished meanwhile, it is created without them: RabbitMQ's own
    default group size (`quorum_cluster_size`) is 3 as well."""
    current = creation_only(arguments)
    if current == arguments:
        return False
    try:
        await channel.declare_queue(name, durable=True, arguments=current)
    except CHANNEL_CLOSED as exc:
        if not precondition_failed(exc):
            raise
        return False
    return True


async def attach(connection: aio_pika.abc.AbstractConnection) -> Topology:
    """The declared topology on a new confirm channel of `connection` (nothing declared)."""
    channel = await open_channel(connection)
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

    A queue that exists with other arguments (an older version's) does not fail the
    declaration: it is used as it is and named in `Topology.outdated`, with a warning.
    A failed declaration closes the channel, so each attempt opens fresh ones.
    Returns the topology bound to the last (open) channel.
    """
    delay = 0.1
    for attempt in range(1, attempts + 1):
        try:
            return await _declare_once(connection, delivery_limit, delays)
        except aiormq.exceptions.ChannelAccessRefused:
            # A least-privilege user (issue 14: no configure permission) uses the topology
            # `migrate` declared as it is; a missing object fails here (NOT_FOUND).
            log.info(
                "not allowed to declare the topology: using the one migrate declared",
                extra={"action": "topology_attach"},
            )
            return await attach(connection)
        except CHANNEL_CLOSED as exc:
            if attempt == attempts or precondition_failed(exc):
                raise
            log.warning(
                "topology declaration failed, retrying",
                extra={"action": "declare_retry", "attempt": attempt, "error": str(exc)[:200]},
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
    raise AssertionError("unreachable")
