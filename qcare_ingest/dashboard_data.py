"""The console's live dashboard (issue 15): a sample every few seconds, an hour of them.

A sample holds each queue's depth and consumers (passive declares on one channel the
sampler keeps), the updates this gateway accepted per second (its own Prometheus
counter: confirmed publishes), and from the inbox the updates applied per second and the
end-to-end lag (processed_at - received_at) p50/p99 over the last minute.

The inbox query reads at most LATEST rows, the last received (a backward scan of the
inbox(received_at) index, bounded to the last RECEIVED_WINDOW_S too), so its cost is
the same whatever the table's size or the traffic: a bound on minutes alone read 124,000
rows (94 ms) per sample at 500 updates/s. Of those rows, the ones processed in the last
RATE_WINDOW_S give the lag percentiles and the rate; when all LATEST were processed within
the minute (more than LATEST/60 per second), the rate is counted over the span they cover.
An update received more than RECEIVED_WINDOW_S ago and processed now (a backlog older than
that) is not counted; the queue depths show such a backlog.

The sampler never fails the gateway: a part that cannot be read (RabbitMQ or PostgreSQL
away, a timeout) is None in that sample, which the page shows as "unavailable".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aio_pika.abc import AbstractChannel

from . import metrics
from .console_dlq import BrokerLink
from .topology import DLQ, QUEUE, delay_queue

log = logging.getLogger(__name__)

SAMPLE_S = 5.0
HOUR = 3600.0
RING = int(HOUR / SAMPLE_S)  # one hour of samples
RATE_WINDOW_S = 60  # applied per second and lag: over the last minute
RECEIVED_WINDOW_S = 3600  # ... among rows received in the last hour
LATEST = 5000  # ... and the last LATEST of them at most
PART_TIMEOUT_S = 2.0  # each part of a sample (broker, database)

INBOX_RATES = """
WITH latest AS (
    SELECT received_at, processed_at, status FROM inbox
     WHERE received_at > now() - make_interval(secs => $1)
     ORDER BY received_at DESC LIMIT $3
), recent AS (
    SELECT extract(epoch FROM processed_at - received_at) AS lag, processed_at FROM latest
     WHERE processed_at > now() - make_interval(secs => $2) AND status IN ('applied', 'stale')
)
SELECT (SELECT count(*) FROM latest) AS examined, count(*) AS n,
       extract(epoch FROM now() - min(processed_at)) AS span,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY lag) AS p50,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY lag) AS p99
  FROM recent
"""


@dataclass(frozen=True)
class QueueDepth:
    queue: str
    role: str  # main | delay | dead-letter
    messages: int | None  # None: could not be read
    consumers: int | None


@dataclass(frozen=True)
class Sample:
    t: float  # seconds since the epoch
    queues: tuple[QueueDepth, ...]
    broker: bool
    database: bool
    accepted_per_s: float | None
    applied_per_s: float | None
    lag_p50_s: float | None
    lag_p99_s: float | None

    def depth(self, role: str) -> int | None:
        """Messages in the queues of one role (the delay queues summed); None if any is
        unknown."""
        values = [q.messages for q in self.queues if q.role == role]
        if not values or any(v is None for v in values):
            return None
        return sum(v for v in values if v is not None)


def queue_names(delays: tuple[int, ...]) -> list[tuple[str, str]]:
    return [(QUEUE, "main"), *((delay_queue(s), "delay") for s in delays), (DLQ, "dead-letter")]


async def queue_depths(channel: AbstractChannel, delays: tuple[int, ...]) -> list[QueueDepth]:
    """Depth and consumers of every queue, by passive declares (nothing is created)."""
    out = []
    for name, role in queue_names(delays):
        queue = await channel.declare_queue(name, passive=True)
        result = queue.declaration_result
        out.append(QueueDepth(name, role, result.message_count, result.consumer_count))
    return out


async def inbox_rates(
    conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy[Any],
) -> tuple[float, float | None, float | None]:
    """(applied per second, lag p50 s, lag p99 s) over the last RATE_WINDOW_S."""
    row = await conn.fetchrow(
        INBOX_RATES,
        float(RECEIVED_WINDOW_S),
        float(RATE_WINDOW_S),
        LATEST,
        timeout=PART_TIMEOUT_S,
    )
    assert row is not None
    span = float(RATE_WINDOW_S)
    if row["examined"] >= LATEST and row["span"] is not None:
        span = min(max(float(row["span"]), 1.0), span)  # saturated: the span they cover
    p50, p99 = row["p50"], row["p99"]
    return (
        row["n"] / span,
        float(p50) if p50 is not None else None,
        float(p99) if p99 is not None else None,
    )


def accepted_total() -> float:
    """Updates this gateway has accepted since it started: its confirmed publishes."""
    for metric in metrics.PUBLISH_LATENCY.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count"):
                return float(sample.value)
    return 0.0


class Rate:
    """Per second from a monotonic total, between two readings."""

    def __init__(self, total: Callable[[], float]) -> None:
        self.total = total
        self._last: tuple[float, float] | None = None

    def __call__(self, now: float) -> float | None:
        value = self.total()
        last, self._last = self._last, (now, value)
        if last is None or now <= last[0]:
            return None
        return max(value - last[1], 0.0) / (now - last[0])


class Sampler:
    """Samples every `interval` seconds into a ring of one hour. `run()` is the task."""

    def __init__(
        self,
        link: BrokerLink,
        pool: Callable[[], asyncpg.Pool | None],
        delays: tuple[int, ...],
        accepted: Callable[[], float] = accepted_total,
        interval: float = SAMPLE_S,
        size: int = RING,
    ) -> None:
        self.link = link
        self.pool = pool
        self.delays = delays
        self.interval = interval
        self.ring: deque[Sample] = deque(maxlen=size)
        self.accepted = Rate(accepted)
        self.cpu_s = 0.0  # CPU time of the sampler's own code, all samples together
        self.samples = 0
        self._channel: AbstractChannel | None = None
        self._json: tuple[int, bytes] | None = None

    async def _channel_open(self) -> AbstractChannel:
        if self._channel is None or self._channel.is_closed or self.link.usable() is None:
            self._channel = await self.link.open(confirms=False)
        return self._channel

    async def _broker(self) -> list[QueueDepth] | None:
        try:
            async with asyncio.timeout(PART_TIMEOUT_S):
                return await queue_depths(await self._channel_open(), self.delays)
        except Exception as exc:  # away, slow, or a queue missing: closed channel
            log.debug("dashboard: queues unreadable", extra={"error": type(exc).__name__})
            channel, self._channel = self._channel, None
            if channel is None or channel.is_closed or self.link.usable() is None:
                await self.link.forget()  # a new connection next time: the broker's may be gone
            return None

    async def _database(self) -> tuple[float, float | None, float | None] | None:
        pool = self.pool()
        if pool is None:
            return None
        try:
            async with asyncio.timeout(PART_TIMEOUT_S):
                async with pool.acquire() as conn:
                    return await inbox_rates(conn)
        except Exception as exc:
            log.debug("dashboard: inbox unreadable", extra={"error": type(exc).__name__})
            return None

    async def sample(self) -> Sample:
        """One sample, appended to the ring."""
        cpu = time.thread_time()
        now = time.time()
        accepted = self.accepted(now)
        queues, rates = await asyncio.gather(self._broker(), self._database())
        names = queue_names(self.delays)
        sample = Sample(
            t=now,
            queues=tuple(queues or (QueueDepth(n, r, None, None) for n, r in names)),
            broker=queues is not None,
            database=rates is not None,
            accepted_per_s=accepted,
            applied_per_s=rates[0] if rates else None,
            lag_p50_s=rates[1] if rates else None,
            lag_p99_s=rates[2] if rates else None,
        )
        self.ring.append(sample)
        # thread_time counts what else ran on the loop's thread meanwhile too: an upper bound
        self.cpu_s += time.thread_time() - cpu
        self.samples += 1
        return sample

    async def run(self) -> None:
        next_at = time.monotonic()
        while True:
            try:
                await self.sample()
            except Exception:  # never: every part is guarded; still, the task must go on
                log.exception("dashboard sample failed", extra={"action": "dashboard_sample"})
            next_at += self.interval
            delay = next_at - time.monotonic()
            if delay < 0:  # fell behind (a suspended process): start again from now
                next_at, delay = time.monotonic(), 0.0
            await asyncio.sleep(delay)

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            with contextlib.suppress(Exception):
                await channel.close()

    def snapshot(self) -> dict[str, Any]:
        data = snapshot(list(self.ring), self.interval)
        data["sampler_cpu_ms"] = round(self.cpu_s / self.samples * 1e3, 3) if self.samples else None
        return data

    def snapshot_json(self) -> bytes:
        """The snapshot as JSON, made once per sample however many pages poll it."""
        key = self.samples
        if self._json is None or self._json[0] != key:
            self._json = (key, json.dumps(self.snapshot(), separators=(",", ":")).encode())
        return self._json[1]


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


SERIES: dict[str, Callable[[Sample], float | None]] = {
    "main": lambda s: s.depth("main"),
    "delay": lambda s: s.depth("delay"),
    "dead": lambda s: s.depth("dead-letter"),
    "accepted": lambda s: _round(s.accepted_per_s),
    "applied": lambda s: _round(s.applied_per_s),
    "lag_p50": lambda s: _round(s.lag_p50_s),
    "lag_p99": lambda s: _round(s.lag_p99_s),
}


def snapshot(samples: list[Sample], interval: float = SAMPLE_S) -> dict[str, Any]:
    """The dashboard's data: the latest sample's numbers and the hour's series."""
    last = samples[-1] if samples else None
    return {
        "at": datetime.fromtimestamp(last.t, UTC).isoformat(timespec="seconds") if last else None,
        "interval_s": interval,
        "window_s": RATE_WINDOW_S,
        "latest_rows": LATEST,
        "broker": None if last is None else last.broker,
        "database": None if last is None else last.database,
        "queues": [q.__dict__ for q in last.queues] if last else [],
        "accepted_per_s": _round(last.accepted_per_s) if last else None,
        "applied_per_s": _round(last.applied_per_s) if last else None,
        "lag_p50_s": _round(last.lag_p50_s) if last else None,
        "lag_p99_s": _round(last.lag_p99_s) if last else None,
        "series": {
            "t": [round(s.t, 1) for s in samples],
            **{name: [get(s) for s in samples] for name, get in SERIES.items()},
        },
    }


# --- charts: the geometry the page draws (dashboard.js does the same in the browser) ---


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^n at or above `value` (at least 1)."""
    if value <= 1:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return float(step * power)
    return float(10 * power)


def chart_path(
    times: list[float],
    values: list[float | None],
    end: float,
    top: float,
    width: float,
    height: float,
    span: float = HOUR,
) -> str:
    """An SVG path `d` for one series: x is time over the `span` ending at `end`, y the
    value over [0, top]; an unknown value breaks the line."""
    parts: list[str] = []
    pen_down = False
    for t, v in zip(times, values, strict=True):
        if v is None or t < end - span:
            pen_down = False
            continue
        x = width * (1 - (end - t) / span)
        y = height * (1 - min(v, top) / top)
        parts.append(f"{'L' if pen_down else 'M'}{x:.1f} {y:.1f}")
        pen_down = True
    return " ".join(parts)


def series_summary(values: list[float | None]) -> tuple[float | None, float | None]:
    """(latest, highest) of the known values."""
    known = [v for v in values if v is not None]
    if not known:
        return None, None
    return known[-1], max(known)
