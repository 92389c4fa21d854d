"""`qcare-ingest migrate`, broker half: rebuild queues whose arguments are not today's.

Queues declared by an older version lack at-least-once dead-lettering (topology.py).
RabbitMQ cannot change a queue's arguments (redeclaring fails with PRECONDITION_FAILED)
and 3.10 refuses `queue.delete` with if-empty or if-unused on quorum queues, so such a
queue is rebuilt, through AMQP alone (no management plugin, no rabbitmqctl):

  hold      declare `<queue>.migrating` (quorum; no TTL, no dead-lettering); for a
            bound queue, bind the holding queue first and then unbind the queue, so
            every publish stays routable (the gateway publishes with mandatory=True);
  drain     move the queue's messages to the holding queue (publish, confirm, then
            ack: a crash in between leaves a duplicate, which the workers' inbox
            absorbs, never a loss);
  rebuild   delete the queue (the main queue: then wait until RabbitMQ has cancelled
            its consumers, see _delete_consumed) and declare it with today's
            arguments (and bind it);
  restore   unbind the holding queue, move its messages back, delete it.

Whenever anything is rebuilt, the main queue is held first and drained until it has
stayed empty for `quiet` seconds: workers then receive nothing, finish what they hold
and publish no retries into the delay queues, which are rebuilt meanwhile; the main
queue is rebuilt last, after a second drain, and restored. Processing pauses for the
length of the upgrade (seconds); intake does not. Workers lose their consumer when the
main queue is deleted and must consume it again (reconnect, or be restarted).

Every step is reported through `say`. Re-running after a crash at any step resumes:
an outdated queue starts again at "hold" (each step is idempotent), a holding queue
left next to a current queue is restored. Until then nothing is lost: new updates wait
in `qcare.ingest.migrating`. An exclusive lock queue keeps two upgrades apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel

from .topology import (
    CHANNEL_CLOSED,
    DEAD_KEY,
    DLQ,
    DLQ_ARGUMENTS,
    DLX,
    EXCHANGE,
    QUEUE,
    ROUTING_KEY,
    declare,
    delay_queue,
    delay_queue_arguments,
    main_queue_arguments,
    matches_but_creation_only,
    open_channel,
    precondition_failed,
)

log = logging.getLogger(__name__)

LOCK = "qcare.ingest.migrate.lock"
HOLDING_SUFFIX = ".migrating"
HOLDING_ARGUMENTS: dict[str, Any] = {"x-queue-type": "quorum"}
# How long the held main queue must stay empty before anything is deleted: long enough
# for workers to commit and ack the batches they hold (milliseconds when PostgreSQL is
# up, and migrate has just reached it).
QUIET_S = 2.0
DRAIN_DEADLINE_S = 120.0
BATCH = 256
OP_TIMEOUT_S = 30.0
RELEASE_TIMEOUT_S = 300.0
REBUILD_ATTEMPTS = 3
# After deleting the main queue: how long to wait for RabbitMQ to cancel its consumers,
# and how much longer before declaring it again (see _delete_consumed)
CANCEL_TIMEOUT_S = 10.0
CANCEL_MARGIN_S = 1.0


def holding_queue(name: str) -> str:
    return name + HOLDING_SUFFIX


class UpgradeError(Exception):
    """The upgrade stopped; nothing is lost. Fix the cause and run migrate again."""


@dataclass(frozen=True)
class _Queue:
    name: str
    arguments: dict[str, Any]
    binding: tuple[str, str] | None  # (exchange, routing key)
    consumed: bool = False  # workers consume it

    @property
    def holding(self) -> str:
        return holding_queue(self.name)


def _say(line: str) -> None:
    log.info(line, extra={"action": "topology_upgrade"})


async def upgrade(
    connection: aio_pika.abc.AbstractConnection,
    delivery_limit: int,
    delays: tuple[int, ...],
    say: Callable[[str], None] = _say,
    quiet: float = QUIET_S,
) -> list[str]:
    """Bring every queue to today's arguments; the names of the queues rebuilt."""
    return await _Upgrade(connection, say, quiet).run(delivery_limit, delays)


async def _close(channel: AbstractChannel) -> None:
    if not channel.is_closed:
        with contextlib.suppress(Exception):
            await channel.close()


class _Upgrade:
    def __init__(
        self, connection: aio_pika.abc.AbstractConnection, say: Callable[[str], None], quiet: float
    ) -> None:
        self.connection = connection
        self.say = say
        self.quiet = quiet

    async def run(self, delivery_limit: int, delays: tuple[int, ...]) -> list[str]:
        lock = await self._lock()
        try:
            return await self._run(delivery_limit, delays)
        finally:
            with contextlib.suppress(Exception):
                await lock.queue_delete(LOCK)
            await _close(lock)

    async def _run(self, delivery_limit: int, delays: tuple[int, ...]) -> list[str]:
        main = _Queue(QUEUE, main_queue_arguments(delivery_limit), (EXCHANGE, ROUTING_KEY), True)
        others = [_Queue(delay_queue(s), delay_queue_arguments(s), None) for s in delays]
        others.append(_Queue(DLQ, DLQ_ARGUMENTS, (DLX, DEAD_KEY)))
        # declare() creates what is missing with today's arguments and names the rest
        topology = await declare(self.connection, delivery_limit, delays)
        await _close(topology.channel)
        outdated = [q for q in [*others, main] if q.name in topology.outdated]
        leftover = [q for q in [*others, main] if await self._exists(q.holding)]
        if not outdated and not leftover:
            self.say("topology declared, every queue current: nothing to upgrade")
            return []
        for q in outdated:
            self.say(f"{q.name}: declared with other arguments than today's: rebuilding it")
        for q in leftover:
            self.say(f"{q.holding}: left by an earlier run: resuming")
        held = False
        try:
            if outdated:
                held = True  # from its first step: a failure half-way is undone too
                await self._hold(main, self.quiet)
            for q in others:
                if q in outdated:
                    await self._hold(q, 0.0)  # nothing feeds it while the main queue is held
                    await self._rebuild(q, 0.0)
                await self._restore(q)
            if main in outdated:
                await self._hold(main, self.quiet)  # again: a worker may have handed some back
                await self._rebuild(main, self.quiet)
        except BaseException:
            if held:
                await self._release(main)
            raise
        await self._restore(main)
        final = await declare(self.connection, delivery_limit, delays)
        await _close(final.channel)
        if final.outdated:
            raise UpgradeError(
                f"still outdated after the upgrade: {', '.join(final.outdated)} "
                "(re-created meanwhile by a process of an older version?)"
            )
        self.say("topology declared: every dead-lettering queue is at-least-once")
        return [q.name for q in outdated]

    async def _release(self, main: _Queue) -> None:
        """After a failure: the main queue back in service if it still exists (else the
        holding queue stays bound, so publishes keep a route, until migrate runs again)."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(RELEASE_TIMEOUT_S):
                if not await self._exists(main.name):
                    return
                self.say(f"upgrade failed: putting {main.name} back in service")
                await self._restore(main)

    # -- steps ------------------------------------------------------------------------

    async def _hold(self, q: _Queue, quiet: float) -> None:
        channel = await self._channel()
        try:
            await channel.declare_queue(q.holding, durable=True, arguments=HOLDING_ARGUMENTS)
            if q.binding is not None:
                exchange, key = q.binding
                raw = await channel.get_underlay_channel()
                await raw.queue_bind(q.holding, exchange, key, timeout=OP_TIMEOUT_S)
                await raw.queue_unbind(q.name, exchange, key, timeout=OP_TIMEOUT_S)
                self.say(f"{q.name}: held: exchange {exchange} ({key}) routes to {q.holding}")
            else:
                self.say(f"{q.name}: declared {q.holding}")
        finally:
            await _close(channel)
        await self._drain(q, quiet)

    async def _drain(self, q: _Queue, quiet: float) -> None:
        """Move `q`'s messages to its holding queue until it has stayed empty `quiet` s."""
        total = 0
        start = quiet_since = time.monotonic()
        while True:
            moved = await self._move(q.name, q.holding)
            total += moved
            now = time.monotonic()
            if moved:
                quiet_since = now
            elif now - quiet_since >= quiet:
                break
            if now - start > DRAIN_DEADLINE_S:
                raise UpgradeError(
                    f"{q.name} kept receiving messages for {DRAIN_DEADLINE_S:g} s while held "
                    "(a process of an older version binding it again?)"
                )
            await asyncio.sleep(min(0.2, quiet))
        suffix = f", then stayed empty {quiet:g} s" if quiet else ""
        self.say(f"{q.name}: moved {total} message(s) to {q.holding}{suffix}")

    async def _rebuild(self, q: _Queue, quiet: float) -> None:
        for _ in range(REBUILD_ATTEMPTS):
            if q.consumed:
                await self._delete_consumed(q)
            else:
                channel = await self._channel()
                try:
                    await channel.queue_delete(q.name, timeout=OP_TIMEOUT_S)
                finally:
                    await _close(channel)
                self.say(f"{q.name}: deleted")
            if await self._declare_current(q):
                break
            # someone declared it again in between, with its own (old) arguments
            self.say(f"{q.name}: re-created meanwhile with other arguments: again")
            await self._hold(q, quiet)
        else:
            raise UpgradeError(
                f"{q.name} is re-created with other arguments as soon as it is deleted: "
                "stop the processes of older versions (or with another "
                "QCARE_DELIVERY_LIMIT) and run migrate again"
            )
        args = ", ".join(f"{k}={v}" for k, v in q.arguments.items())
        self.say(f"{q.name}: declared with {args}")

    async def _delete_consumed(self, q: _Queue) -> None:
        """Delete a queue that workers consume, and return once RabbitMQ has cancelled its
        consumers. RabbitMQ 3.10 re-attaches a consumer whose channel has not yet seen
        the deletion to a new queue of the same name, and that channel then drops the new
        queue's deliveries (their ids restart from 0): a worker stalled without a sign.
        So this consumes the queue itself (anything a worker hands back meanwhile goes
        to the holding queue), deletes it, waits for its own consumer's cancellation
        (the other channels see the deletion at the same time), and a margin more."""
        channel = await self._channel()
        raw = await channel.get_underlay_channel()
        cancelled = asyncio.Event()
        moving: set[asyncio.Task[None]] = set()
        moved = 0

        async def hand_over(message: aiormq.abc.DeliveredMessage) -> None:
            nonlocal moved
            await raw.basic_publish(
                message.body,
                exchange="",
                routing_key=q.holding,
                properties=message.header.properties,
                mandatory=True,
                timeout=OP_TIMEOUT_S,
            )
            assert isinstance(message.delivery, aiormq.spec.Basic.Deliver)
            await raw.basic_ack(message.delivery.delivery_tag or 0)
            moved += 1

        async def on_message(message: aiormq.abc.DeliveredMessage) -> None:
            task = asyncio.ensure_future(hand_over(message))
            moving.add(task)
            task.add_done_callback(moving.discard)

        try:
            raw.on_consumer_cancel_callbacks.add(lambda _frame: cancelled.set())
            await raw.basic_qos(prefetch_count=BATCH, timeout=OP_TIMEOUT_S)
            await raw.basic_consume(q.name, on_message, timeout=OP_TIMEOUT_S)
            deleting = await self._channel()
            try:
                await deleting.queue_delete(q.name, timeout=OP_TIMEOUT_S)
            finally:
                await _close(deleting)
            try:
                await asyncio.wait_for(cancelled.wait(), CANCEL_TIMEOUT_S)
                seen = "its consumers were cancelled"
            except TimeoutError:
                seen = f"no consumer cancellation seen within {CANCEL_TIMEOUT_S:g} s"
            await asyncio.sleep(CANCEL_MARGIN_S)
            if moving:
                await asyncio.gather(*moving)  # raises if a hand-over failed: nothing acked
        finally:
            await _close(channel)
        late = f"; {moved} message(s) handed back meanwhile moved to {q.holding}" if moved else ""
        self.say(f"{q.name}: deleted, {seen}{late}")

    async def _restore(self, q: _Queue) -> None:
        if not await self._exists(q.holding):
            return
        channel = await self._channel()
        try:
            if q.binding is not None:
                exchange, key = q.binding
                raw = await channel.get_underlay_channel()
                await raw.queue_bind(q.name, exchange, key, timeout=OP_TIMEOUT_S)
                await raw.queue_unbind(q.holding, exchange, key, timeout=OP_TIMEOUT_S)
                self.say(f"{q.name}: exchange {exchange} ({key}) routes to it again")
        finally:
            await _close(channel)
        moved = await self._move(q.holding, q.name)
        # Nothing can reach the holding queue any more (unbound; nobody publishes to it by
        # name), so empty now means empty for good.
        channel = await self._channel()
        try:
            await channel.queue_delete(q.holding, timeout=OP_TIMEOUT_S)
        finally:
            await _close(channel)
        self.say(f"{q.name}: moved {moved} message(s) back from {q.holding}, deleted it")

    # -- AMQP helpers -------------------------------------------------------------------

    async def _channel(self) -> AbstractChannel:
        return await open_channel(self.connection)

    async def _lock(self) -> AbstractChannel:
        channel = await self._channel()
        try:
            # exclusive: owned by this connection, gone when it closes (even on a crash)
            await channel.declare_queue(LOCK, exclusive=True, timeout=OP_TIMEOUT_S)
        except aiormq.exceptions.ChannelLockedResource as exc:
            raise UpgradeError(
                "another `qcare-ingest migrate` is upgrading this broker's topology"
            ) from exc
        return channel

    async def _exists(self, name: str) -> bool:
        channel = await self._channel()
        try:
            await channel.declare_queue(name, passive=True, timeout=OP_TIMEOUT_S)
            return True
        except aiormq.exceptions.ChannelNotFoundEntity:
            return False
        finally:
            await _close(channel)

    async def _declare_current(self, q: _Queue, attempts: int = 8) -> bool:
        """Declare `q` with today's arguments: False if it exists with others. Retries
        RabbitMQ 3.10's INTERNAL_ERROR/noproc race (workers may declare it too)."""
        delay = 0.1
        for attempt in range(1, attempts + 1):
            channel = await self._channel()
            try:
                await channel.declare_queue(
                    q.name, durable=True, arguments=q.arguments, timeout=OP_TIMEOUT_S
                )
                if q.binding is not None:
                    raw = await channel.get_underlay_channel()
                    await raw.queue_bind(q.name, *q.binding, timeout=OP_TIMEOUT_S)
                return True
            except CHANNEL_CLOSED as exc:
                if precondition_failed(exc):
                    # declared meanwhile by a version without the creation-only arguments?
                    await _close(channel)
                    channel = await self._channel()
                    if not await matches_but_creation_only(channel, q.name, q.arguments):
                        return False
                    if q.binding is not None:
                        raw = await channel.get_underlay_channel()
                        await raw.queue_bind(q.name, *q.binding, timeout=OP_TIMEOUT_S)
                    return True
                if attempt == attempts:
                    raise
            finally:
                await _close(channel)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")

    async def _move(self, src: str, dst: str) -> int:
        """Every message of `src` into `dst` (by name, properties as they are): published,
        confirmed, then acked, a batch at a time. Consumes rather than polls: a
        basic.get on a quorum queue is a consensus round trip (about 500 a second).
        Returns once `src` has no ready message left; a failure leaves the unacked
        rest in `src`."""
        channel = await self._channel()
        raw = await channel.get_underlay_channel()
        arrived: asyncio.Queue[aiormq.abc.DeliveredMessage] = asyncio.Queue()

        async def on_message(message: aiormq.abc.DeliveredMessage) -> None:
            arrived.put_nowait(message)

        moved = 0
        try:
            await raw.basic_qos(prefetch_count=BATCH, timeout=OP_TIMEOUT_S)
            consuming = await raw.basic_consume(src, on_message, timeout=OP_TIMEOUT_S)
            while True:
                batch = await _take(arrived, wait=0.2)
                if batch:
                    moved += await _forward(raw, dst, batch)
                elif not await self._ready(src):
                    break
            await raw.basic_cancel(consuming.consumer_tag or "", timeout=OP_TIMEOUT_S)
            await asyncio.sleep(0)  # deliveries sent before the cancel-ok: dispatched now
            while batch := await _take(arrived, wait=0):
                moved += await _forward(raw, dst, batch)
        finally:
            await _close(channel)
        return moved

    async def _ready(self, name: str) -> int:
        channel = await self._channel()
        try:
            declared = await channel.declare_queue(name, passive=True, timeout=OP_TIMEOUT_S)
            return int(declared.declaration_result.message_count or 0)
        finally:
            await _close(channel)


async def _take(
    arrived: asyncio.Queue[aiormq.abc.DeliveredMessage], wait: float
) -> list[aiormq.abc.DeliveredMessage]:
    """What has arrived, up to BATCH; waits up to `wait` s for the first one."""
    batch: list[aiormq.abc.DeliveredMessage] = []
    if arrived.empty() and wait:
        with contextlib.suppress(TimeoutError):
            batch.append(await asyncio.wait_for(arrived.get(), wait))
    while len(batch) < BATCH and not arrived.empty():
        batch.append(arrived.get_nowait())
    return batch


async def _forward(
    raw: aiormq.abc.AbstractChannel, dst: str, batch: list[aiormq.abc.DeliveredMessage]
) -> int:
    """Publish `batch` to `dst`, wait for every confirm, then ack it with one multiple
    ack (the batch is consecutive deliveries of this channel)."""
    for wave in _waves(batch):
        await asyncio.gather(
            *(
                raw.basic_publish(
                    m.body,
                    exchange="",
                    routing_key=dst,
                    properties=m.header.properties,
                    mandatory=True,  # a missing `dst` raises: nothing acked
                    timeout=OP_TIMEOUT_S,
                )
                for m in wave
            )
        )
    last = batch[-1].delivery
    assert isinstance(last, aiormq.spec.Basic.Deliver)
    await raw.basic_ack(last.delivery_tag or 0, multiple=True)
    return len(batch)


def _waves(batch: list[aiormq.abc.DeliveredMessage]) -> list[list[aiormq.abc.DeliveredMessage]]:
    """Consecutive runs of the batch in which no two messages share a message_id:
    aiormq matches a basic.return to its publish by message_id, and a queue may well
    hold two deliveries of one update."""
    waves: list[list[aiormq.abc.DeliveredMessage]] = [[]]
    ids: set[str | None] = set()
    for message in batch:
        key = message.header.properties.message_id
        if key in ids:
            waves.append([])
            ids = set()
        waves[-1].append(message)
        ids.add(key)
    return waves
