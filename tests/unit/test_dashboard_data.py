"""The dashboard's sampler and chart geometry, without RabbitMQ or PostgreSQL (issue 15)."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from qcare_ingest.console_dlq import BrokerLink
from qcare_ingest.dashboard_data import (
    RING,
    Rate,
    Sample,
    Sampler,
    chart_path,
    nice_ceiling,
    queue_names,
    series_summary,
    snapshot,
)
from qcare_ingest.topology import DLQ, QUEUE
from tests.support.procs import free_port

DELAYS = (10, 60)


def _closed_port_link() -> BrokerLink:
    """A link to a port nobody listens on: every connect is refused at once."""
    return BrokerLink(f"amqp://guest:guest@127.0.0.1:{free_port()}/", None, timeout=1)


def test_one_hour_of_samples_is_all_the_ring_keeps() -> None:
    assert RING == 720
    sampler = Sampler(_closed_port_link(), lambda: None, DELAYS, size=3)
    for i in range(5):
        sampler.ring.append(Sample(float(i), (), False, False, None, None, None, None))
    assert [s.t for s in sampler.ring] == [2.0, 3.0, 4.0]


def test_rate_is_the_difference_per_second_between_readings() -> None:
    totals = iter([10.0, 10.0, 25.0, 5.0])
    rate = Rate(lambda: next(totals))
    assert rate(100.0) is None  # nothing to compare with yet
    assert rate(105.0) == 0.0
    assert rate(110.0) == 3.0
    assert rate(115.0) == 0.0  # a total that went down (a restart) is no negative rate


async def test_a_sample_with_broker_and_database_away_says_unavailable() -> None:
    pool = await asyncpg.create_pool(
        f"postgresql://postgres@127.0.0.1:{free_port()}/none", min_size=0, max_size=1
    )
    assert pool is not None
    try:
        sampler = Sampler(_closed_port_link(), lambda: pool, DELAYS, accepted=lambda: 7.0)
        started = time.monotonic()
        sample = await sampler.sample()
        assert time.monotonic() - started < 5
        assert sample.broker is False
        assert sample.database is False
        assert [q.queue for q in sample.queues] == [n for n, _ in queue_names(DELAYS)]
        assert all(q.messages is None and q.consumers is None for q in sample.queues)
        assert sample.applied_per_s is None
        assert sample.lag_p99_s is None
        data = snapshot(list(sampler.ring))
        assert data["broker"] is False
        assert data["database"] is False
        assert data["series"]["main"] == [None]
    finally:
        await pool.close()


async def test_the_sampler_task_goes_on_through_failures_and_stops_when_cancelled() -> None:
    sampler = Sampler(_closed_port_link(), lambda: None, DELAYS, interval=0.05)
    task = asyncio.create_task(sampler.run())
    deadline = time.monotonic() + 10
    while sampler.samples < 3:
        assert not task.done(), task
        assert time.monotonic() < deadline, "the sampler stopped sampling"
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await sampler.close()


def test_snapshot_numbers_and_series() -> None:
    from qcare_ingest.dashboard_data import QueueDepth

    queues = (
        QueueDepth(QUEUE, "main", 12, 2),
        QueueDepth("d10", "delay", 3, 0),
        QueueDepth("d60", "delay", 4, 0),
        QueueDepth(DLQ, "dead-letter", 1, 0),
    )
    samples = [
        Sample(1000.0, queues, True, True, 5.0, 4.5, 0.01, 0.2),
        Sample(1005.0, (*queues[:1], QueueDepth("d10", "delay", None, None), *queues[2:]),
               True, False, 6.123456, None, None, None),
    ]  # fmt: skip
    data = snapshot(samples)
    assert data["accepted_per_s"] == 6.123
    assert data["database"] is False
    assert data["applied_per_s"] is None
    assert data["series"]["t"] == [1000.0, 1005.0]
    assert data["series"]["main"] == [12, 12]
    assert data["series"]["delay"] == [7, None]  # one delay queue unknown: the sum is unknown
    assert data["series"]["dead"] == [1, 1]
    assert data["series"]["lag_p99"] == [0.2, None]
    assert data["queues"][0] == {"queue": QUEUE, "role": "main", "messages": 12, "consumers": 2}


def test_an_empty_snapshot_is_all_unknown() -> None:
    data = snapshot([])
    assert data["at"] is None
    assert data["queues"] == []
    assert data["series"]["t"] == []


def test_nice_ceilings() -> None:
    assert [nice_ceiling(v) for v in (0, 0.3, 1, 1.5, 3, 7, 10, 11, 240, 260, 999)] == [
        1, 1, 1, 2, 5, 10, 10, 20, 250, 500, 1000
    ]  # fmt: skip


def test_chart_path_breaks_at_unknown_values_and_drops_older_than_the_span() -> None:
    times = [0.0, 100.0, 3600.0, 3650.0, 3700.0]
    values: list[float | None] = [5.0, 1.0, None, 10.0, 20.0]
    d = chart_path(times, values, end=3700.0, top=10.0, width=720, height=100)
    # t=0 is older than an hour before 3700: left out; t=100 is at x=0
    assert d == "M0.0 90.0 M710.0 0.0 L720.0 0.0"  # 20 is clipped to the top


def test_series_summary() -> None:
    assert series_summary([None, 3.0, 9.0, 4.0, None]) == (4.0, 9.0)
    assert series_summary([None]) == (None, None)
