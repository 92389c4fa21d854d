"""Worker: competing consumer with manual acks and bounded prefetch (SPEC §3, §4).

run() -> connect, declare, consume until stop() or the connection drops;
reconnect with backoff after a drop. stop() is safe to call twice. Shutdown:
stop consuming, wait for in-flight messages up to the grace period, cancel the
rest (their deliveries go back to the queue when the channel closes).

Everything a session starts (connection, lanes and their batcher tasks) is undone
by the session's exit stack, whatever fails and wherever: a failed set-up leaves
nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aio_pika.abc import AbstractConnection, AbstractIncomingMessage, AbstractQueue

from qcare_ingest import heap
from qcare_ingest.broker import connect
from qcare_ingest.config import Settings
from qcare_ingest.db import create_pool
from qcare_ingest.decision import Kind, backoff, classify, describe
from qcare_ingest.probes import serve_probes
from qcare_ingest.processor import Counters, Processor, worker_id
from qcare_ingest.retry import RetryPolicy
from qcare_ingest.settlement import Settlement
from qcare_ingest.store import SESSION_SETTINGS, init_connection
from qcare_ingest.topology import Topology, attach, declare

log = logging.getLogger(__name__)

# How long a batch that is not full waits for company. 15 ms rather than 5: at 415 msg/s
# (two workers) the workers' and PostgreSQL's CPU per message fell 13-23 % (fewer, fuller
# transactions) for 5-11 ms more lag p50 (p99 45-65 ms). A full batch never waits.
LINGER_S = 0.015
MAX_LANES = 8


@dataclass
class Lane:
    """One channel with its own prefetch, its acks and one batcher task."""

    queue: AbstractQueue
    tag: str
    arrived: asyncio.Queue[AbstractIncomingMessage | None]
    batcher: asyncio.Task[None]

    async def stop_consuming(self) -> None:
        with contextlib.suppress(Exception):
            await self.queue.cancel(self.tag)
        self.arrived.put_nowait(None)  # finish what has arrived, then stop


async def _cancel(lanes: list[Lane]) -> None:
    """Cancel every lane's batcher (those that finished are left as they are) and wait."""
    for lane in lanes:
        lane.batcher.cancel()
    await asyncio.gather(*(lane.batcher for lane in lanes), return_exceptions=True)


async def _close_quietly(conn: AbstractConnection) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(conn.close(), 5)


class Worker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.id = worker_id()
        self.counters = Counters()
        self.policy = RetryPolicy.from_settings(settings)
        self._stop = asyncio.Event()
        self._consuming = False
        self.http_port = 0
        self.batch = min(settings.worker_batch, settings.worker_concurrency)
        # lanes (channel + batcher + transaction), each with a prefetch of two batches: while
        # a lane's transaction runs, its next batch arrives (with a prefetch of one batch
        # the batches of a drain averaged half of it, and twice the transactions)
        self.lanes = max(1, min(MAX_LANES, settings.worker_concurrency // (2 * self.batch)))
        # at most two batches each: past MAX_LANES lanes, a bigger prefetch would only queue
        # messages behind lane 0's serial transactions (so concurrency is an upper bound)
        self.prefetch = max(1, min(settings.worker_concurrency // self.lanes, 2 * self.batch))

    def stop(self) -> None:
        if not self._stop.is_set():
            log.info("stop requested", extra={"action": "stop_requested", "worker": self.id})
            self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def run(self) -> None:
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(self._log_stopped)
            pool = await create_pool(
                self.settings.worker_dsn,
                size=self.lanes + 1,
                init=init_connection,
                server_settings=SESSION_SETTINGS,
            )
            stack.push_async_callback(pool.close)

            async def ready() -> dict[str, Any]:
                database = True
                try:
                    async with asyncio.timeout(3), pool.acquire() as conn:
                        await conn.fetchval("SELECT 1")
                except Exception:
                    database = False
                return {"broker": self._consuming, "database": database}

            runner, self.http_port = await serve_probes(
                self.settings.worker_http_host, self.settings.worker_http_port, ready
            )
            stack.push_async_callback(runner.cleanup)
            url = f"http://{self.settings.worker_http_host}:{self.http_port}"
            log.info("probes listening", extra={"action": "probes", "url": url, "worker": self.id})
            heap.settle()
            await self._sessions(pool)

    def _log_stopped(self) -> None:
        log.info(
            "worker stopped",
            extra={"action": "worker_stopped", "worker": self.id, **self.counters.as_dict()},
        )

    async def _sessions(self, pool: Any) -> None:
        """Broker sessions until stopped: after a failure, reconnect with backoff."""
        failures = 0
        while not self.stopping:
            try:
                await self._session(pool)
                failures = 0
            except Exception as exc:
                delay = backoff(
                    self.settings.reconnect_wait, self.settings.reconnect_wait_max, failures
                )
                failures += 1
                log.warning(
                    "broker session ended, reconnecting",
                    extra={
                        "action": "broker_reconnect",
                        "error": describe(exc),
                        "retry_in_s": round(delay, 2),
                    },
                    exc_info=exc if classify(exc) is Kind.BUG else None,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)

    async def _session(self, pool: Any) -> None:
        async with contextlib.AsyncExitStack() as stack:
            conn: AbstractConnection = await connect(
                self.settings.amqp_url, timeout=10, ca_file=self.settings.amqp_ca_file
            )
            stack.push_async_callback(_close_quietly, conn)
            lost = asyncio.Event()
            conn.close_callbacks.add(lambda *_: lost.set())
            topology = await declare(conn, self.settings.delivery_limit, self.settings.retry_delays)
            lanes: list[Lane] = []
            stack.push_async_callback(_cancel, lanes)  # before the connection closes
            for i in range(self.lanes):
                lane_topology = topology if i == 0 else await attach(conn)
                lanes.append(await self._lane(pool, lane_topology, lost.set, number=i))
            self._consuming = True
            try:
                log.info(
                    "consuming",
                    extra={"action": "consuming", "worker": self.id,
                           "prefetch": self.prefetch * len(lanes),
                           "lane_prefetch": self.prefetch,
                           "batch": self.batch, "lanes": len(lanes)},
                )  # fmt: skip
                await self._until_stopped_or(lost)
            finally:
                self._consuming = False
            if lost.is_set() and not self.stopping:
                raise ConnectionError("broker connection lost")
            # the last lane first: cancelling lane 0 first would make the next lane the
            # first in line for a moment, and it would take a prefetch to drain
            for lane in reversed(lanes):
                await lane.stop_consuming()
            await self._drain(lanes)

    async def _until_stopped_or(self, lost: asyncio.Event) -> None:
        waits = {asyncio.ensure_future(self._stop.wait()), asyncio.ensure_future(lost.wait())}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    async def _lane(
        self, pool: Any, topology: Topology, lost: Callable[[], None], number: int
    ) -> Lane:
        """One channel, its own prefetch, one batcher: its batches are consecutive
        deliveries of that channel, so each batch is acked with one `multiple` ack.
        The batcher starts only once the consumer is in place: nothing to undo before.

        Lane `number` consumes with priority `MAX_LANES - number` (RabbitMQ's consumer
        priorities; the same rank for lane i on every worker, whatever its lane count): a
        lane gets deliveries only while every lane before it (on any worker) has its
        prefetch full. At a moderate rate everything goes to lane 0, whose batches then
        hold what arrived during the previous transaction; with a backlog the other lanes
        fill up and run their transactions beside it. Round-robin over equal lanes split
        a moderate stream into batches of one or two: at 646 msg/s, 150 ms lag p50 and
        PostgreSQL CPU +8 % per message against 40 ms with priorities (README)."""
        channel = topology.channel
        channel.close_callbacks.add(lambda *_: lost())
        # RabbitMQ cancels a consumer whose queue is deleted (migrate rebuilds it, an operator
        # deletes it): start the session over, or the worker would sit idle "consuming"
        underlay = await channel.get_underlay_channel()
        underlay.on_consumer_cancel_callbacks.add(lambda _frame: lost())
        await channel.set_qos(prefetch_count=self.prefetch)
        settlement = Settlement(topology.dlx, channel.default_exchange)
        processor = Processor(
            pool,
            settlement,
            self.policy,
            stopping=lambda: self.stopping,
            counters=self.counters,
            lane=number,
        )
        # Deliveries wait in a local queue; the batcher takes what has arrived (up to the
        # batch size) and applies it in one transaction, so batches grow with load and a
        # lone message is not kept waiting for company.
        arrived: asyncio.Queue[AbstractIncomingMessage | None] = asyncio.Queue()

        async def on_message(message: AbstractIncomingMessage) -> None:
            settlement.received(message)
            arrived.put_nowait(message)

        tag = await topology.queue.consume(on_message, arguments={"x-priority": MAX_LANES - number})
        batcher = asyncio.create_task(self._batcher(arrived, processor, lost))
        return Lane(topology.queue, tag, arrived, batcher)

    async def _batcher(
        self,
        arrived: asyncio.Queue[AbstractIncomingMessage | None],
        processor: Processor,
        lost: Callable[[], None],
    ) -> None:
        def take(batch: list[AbstractIncomingMessage]) -> bool:
            """Add what has arrived; False once the stop mark is reached."""
            while len(batch) < self.batch and not arrived.empty():
                nxt = arrived.get_nowait()
                if nxt is None:
                    arrived.put_nowait(None)  # leave the stop mark for later
                    return False
                batch.append(nxt)
            return True

        while (first := await arrived.get()) is not None:
            batch = [first]
            if take(batch) and len(batch) < self.batch and LINGER_S > 0:
                # a few ms for company: fewer, fuller transactions cost far less CPU
                # (PostgreSQL's and ours) than one transaction per message
                await asyncio.sleep(LINGER_S)
                take(batch)
            try:
                await processor.handle_batch(batch)
            except Exception as exc:
                # e.g. the dead-letter publish failed: never let a lane die quietly.
                # Start the session over; the unacked batch is delivered again.
                log.error(
                    "batch handling failed",
                    extra={"action": "lane_failed", "error": describe(exc)},
                    exc_info=exc if classify(exc) is Kind.BUG else None,
                )
                lost()
                return

    async def _drain(self, lanes: list[Lane]) -> None:
        grace = self.settings.shutdown_grace
        log.info(
            "finishing in-flight messages",
            extra={"action": "draining", "lanes": len(lanes), "grace_s": grace},
        )
        _, pending = await asyncio.wait({lane.batcher for lane in lanes}, timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
            log.warning(
                "in-flight messages handed back",
                extra={"action": "handed_back", "count": len(pending)},
            )
