"""Worker: competing consumer with manual acks and bounded prefetch (SPEC §3, §4).

run() -> connect, declare, consume until stop() or the connection drops;
reconnect with backoff after a drop. stop() is safe to call twice. Shutdown:
stop consuming, wait for in-flight messages up to the grace period, cancel the
rest (their deliveries go back to the queue when the channel closes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from aio_pika.abc import AbstractConnection, AbstractIncomingMessage

from qcare_ingest import heap
from qcare_ingest.broker import connect
from qcare_ingest.config import Settings
from qcare_ingest.db import create_pool
from qcare_ingest.probes import serve_probes
from qcare_ingest.processor import Counters, Processor, worker_id
from qcare_ingest.retry import Backoff
from qcare_ingest.store import init_connection
from qcare_ingest.topology import Topology, attach, declare

log = logging.getLogger(__name__)

LINGER_S = 0.005


@dataclass
class Lane:
    topology: Topology
    tag: str
    arrived: asyncio.Queue[AbstractIncomingMessage | None]
    batcher: asyncio.Task[None]

    async def stop_consuming(self) -> None:
        with contextlib.suppress(Exception):
            await self.topology.queue.cancel(self.tag)
        self.arrived.put_nowait(None)  # finish what has arrived, then stop


class Worker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.id = worker_id()
        self.counters = Counters()
        self._stop = asyncio.Event()
        self._inflight: set[asyncio.Task[Any]] = set()
        self._backoff = Backoff(initial=0.5, maximum=10.0)
        self._consuming = False
        self.http_port = 0
        self.batch = min(settings.worker_batch, settings.worker_concurrency)
        # lanes (channel + batcher + transaction): enough to hold `concurrency` in full batches
        self.transactions = max(1, min(8, -(-settings.worker_concurrency // self.batch)))

    def stop(self) -> None:
        if not self._stop.is_set():
            log.info("stop requested", extra={"action": "stop_requested", "worker": self.id})
            self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def run(self) -> None:
        concurrency = self.settings.worker_concurrency
        pool = await create_pool(
            self.settings.database_url, size=self.transactions + 1, init=init_connection
        )

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
        url = f"http://{self.settings.worker_http_host}:{self.http_port}"
        log.info("probes listening", extra={"action": "probes", "url": url, "worker": self.id})
        heap.settle()
        try:
            failures = 0
            while not self.stopping:
                try:
                    await self._session(pool, concurrency)
                    failures = 0
                except Exception as exc:
                    delay = self._backoff.delay(failures)
                    failures += 1
                    log.warning(
                        "broker session ended, reconnecting",
                        extra={
                            "action": "broker_reconnect",
                            "error": type(exc).__name__,
                            "retry_in_s": round(delay, 2),
                        },
                    )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), delay)
        finally:
            await runner.cleanup()
            await pool.close()
            log.info(
                "worker stopped",
                extra={"action": "worker_stopped", "worker": self.id, **self.counters.as_dict()},
            )

    async def _session(self, pool: Any, concurrency: int) -> None:
        conn: AbstractConnection = await connect(self.settings.amqp_url, timeout=10)
        try:
            lost = asyncio.Event()
            conn.close_callbacks.add(lambda *_: lost.set())
            topology = await declare(conn, self.settings.delivery_limit, self.settings.retry_delays)
            lanes = [
                await self._lane(pool, topology if i == 0 else await attach(conn), lost)
                for i in range(self.transactions)
            ]
            try:
                self._consuming = True
                log.info(
                    "consuming",
                    extra={"action": "consuming", "worker": self.id, "prefetch": concurrency,
                           "batch": self.batch, "lanes": len(lanes)},
                )  # fmt: skip
                stop_wait = asyncio.ensure_future(self._stop.wait())
                lost_wait = asyncio.ensure_future(lost.wait())
                await asyncio.wait({stop_wait, lost_wait}, return_when=asyncio.FIRST_COMPLETED)
                stop_wait.cancel()
                lost_wait.cancel()
                self._consuming = False
                if lost.is_set() and not self.stopping:
                    raise ConnectionError("broker connection lost")
                for lane in lanes:
                    await lane.stop_consuming()
                await self._drain()
            finally:
                for lane in lanes:
                    lane.batcher.cancel()
                await asyncio.gather(*(lane.batcher for lane in lanes), return_exceptions=True)
                self._inflight.difference_update(lane.batcher for lane in lanes)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 5)

    async def _lane(self, pool: Any, topology: Topology, lost: asyncio.Event) -> Lane:
        """One channel, its own prefetch, one batcher: its batches are consecutive
        deliveries of that channel, so each batch is acked with one `multiple` ack."""
        channel = topology.channel
        channel.close_callbacks.add(lambda *_: lost.set())
        await channel.set_qos(
            prefetch_count=max(1, self.settings.worker_concurrency // self.transactions)
        )
        processor = Processor(
            pool,
            topology.dlx,
            channel.default_exchange,
            stopping=lambda: self.stopping,
            counters=self.counters,
            delays=self.settings.retry_delays,
        )
        # Deliveries wait in a local queue; the batcher takes what has arrived (up to the
        # batch size) and applies it in one transaction, so batches grow with load and a
        # lone message is not kept waiting for company.
        arrived: asyncio.Queue[AbstractIncomingMessage | None] = asyncio.Queue()

        async def on_message(message: AbstractIncomingMessage) -> None:
            arrived.put_nowait(message)

        def take(batch: list[AbstractIncomingMessage]) -> bool:
            """Add what has arrived; False once the stop mark is reached."""
            while len(batch) < self.batch and not arrived.empty():
                nxt = arrived.get_nowait()
                if nxt is None:
                    arrived.put_nowait(None)  # leave the stop mark for later
                    return False
                batch.append(nxt)
            return True

        async def batcher() -> None:
            while (first := await arrived.get()) is not None:
                batch = [first]
                if take(batch) and len(batch) < self.batch and LINGER_S > 0:
                    # a few ms for company: fewer, fuller transactions cost far less CPU
                    # (PostgreSQL's and ours) than one transaction per message
                    await asyncio.sleep(LINGER_S)
                    take(batch)
                try:
                    await processor.handle_batch(batch)
                except Exception:
                    # e.g. the dead-letter publish failed: never let a lane die quietly.
                    # Start the session over; the unacked batch is delivered again.
                    log.exception("batch handling failed", extra={"action": "lane_failed"})
                    lost.set()
                    return

        task = asyncio.create_task(batcher())
        self._inflight.add(task)
        tag = await topology.queue.consume(on_message)
        return Lane(topology, tag, arrived, task)

    async def _drain(self) -> None:
        if not self._inflight:
            return
        grace = self.settings.shutdown_grace
        log.info(
            "finishing in-flight messages",
            extra={"action": "draining", "lanes": len(self._inflight), "grace_s": grace},
        )
        _, pending = await asyncio.wait(set(self._inflight), timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
            log.warning(
                "in-flight messages handed back",
                extra={"action": "handed_back", "count": len(pending)},
            )
