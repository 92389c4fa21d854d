"""The console's live dashboard (issue 15) against a live gateway and workers: the numbers
move while updates are posted; the page draws them with text alternatives."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from qcare_ingest.topology import DLQ, QUEUE
from tests.conftest import Procs
from tests.integration.test_console_pages import KEYS, POSTER_SECRET, Console, jar
from tests.support.payloads import UPDATE, order
from tests.support.procs import Gateway, wait_for


@pytest.fixture
async def console(procs: Procs, http: aiohttp.ClientSession) -> AsyncIterator[Console]:
    gw = procs.gateway(QCARE_API_KEYS=KEYS)
    await gw.ready(http)
    async with aiohttp.ClientSession(cookie_jar=jar()) as session:
        console = Console(gw, session)
        status, _, _ = await console.sign_in()
        assert status == 302
        yield console


async def snapshot(console: Console) -> dict[str, Any]:
    async with console.http.get(console.gw.url + "/console/dashboard.json") as resp:
        assert resp.status == 200, await resp.text()
        assert resp.content_type == "application/json"
        data: dict[str, Any] = await resp.json()
        return data


async def post_many(http: aiohttp.ClientSession, gw: Gateway, tag: str, n: int) -> None:
    async def one(i: int) -> None:
        async with http.post(
            gw.url + UPDATE,
            data=order(f"{tag}-{i}", f"ACC-{tag}-{i}"),
            headers={"Content-Type": "application/json", "X-Api-Key": POSTER_SECRET},
        ) as resp:
            assert resp.status == 200

    await asyncio.gather(*(one(i) for i in range(n)))


async def test_the_counters_move_while_updates_are_posted(
    console: Console, procs: Procs, http: aiohttp.ClientSession
) -> None:
    await procs.worker().consuming()

    async def consumed() -> dict[str, Any] | None:
        data = await snapshot(console)
        main = [q for q in data["queues"] if q["queue"] == QUEUE]
        return data if main and (main[0]["consumers"] or 0) >= 1 else None

    # the worker started after the gateway: a later sample sees its consumers
    first = await wait_for(consumed, 20, interval=0.2, what="a sample with the consumers")
    assert first["broker"] is True
    assert first["database"] is True
    assert {QUEUE, DLQ} <= {q["queue"] for q in first["queues"]}
    assert {q["role"] for q in first["queues"]} == {"main", "delay", "dead-letter"}
    tag = f"dash-{uuid.uuid4().hex[:8]}"
    stop = asyncio.Event()

    async def keep_posting() -> None:
        i = 0
        while not stop.is_set():
            await post_many(http, console.gw, f"{tag}-{i}", 20)
            i += 1
            await asyncio.sleep(0.1)  # a steady trickle, not a flood

    poster = asyncio.create_task(keep_posting())
    try:

        async def moved() -> dict[str, Any] | None:
            data = await snapshot(console)
            ok = (data["accepted_per_s"] or 0) > 0 and (data["applied_per_s"] or 0) > 0
            return data if ok and data["lag_p99_s"] is not None else None

        data = await wait_for(moved, 30, interval=0.5, what="accepted and applied per second")
    finally:
        stop.set()
        await poster
    assert data["lag_p50_s"] <= data["lag_p99_s"]
    assert len(data["series"]["t"]) > len(first["series"]["t"])
    assert max(v for v in data["series"]["accepted"] if v is not None) > 0
    print(f"\nsampler CPU per sample: {data['sampler_cpu_ms']} ms (an upper bound)")

    status, page, _ = await console.get("/console")
    assert status == 200
    assert "<h1>Dashboard</h1>" in page
    assert page.count('role="img"') == 3
    assert '<desc id="chart-rate-desc">Throughput over the last hour (per second). ' in page
    assert 'src="/console/static/dashboard.js"' in page
    async with console.http.get(console.gw.url + "/console/static/dashboard.js") as resp:
        assert resp.status == 200


async def test_the_dashboard_needs_a_session(console: Console, http: aiohttp.ClientSession) -> None:
    async with http.get(console.gw.url + "/console/dashboard.json", allow_redirects=False) as resp:
        assert resp.status == 302
        assert resp.headers["Location"].startswith("/console/sign-in")


async def test_the_sampler_survives_the_broker_being_away(
    procs: Procs, http: aiohttp.ClientSession
) -> None:
    """A gateway whose RabbitMQ URL leads nowhere: the dashboard says so, the gateway
    keeps serving."""
    gw = procs.gateway(QCARE_API_KEYS=KEYS, QCARE_AMQP_URL="amqp://guest:guest@127.0.0.1:1/")
    await gw.ready(http)
    async with aiohttp.ClientSession(cookie_jar=jar()) as session:
        console = Console(gw, session)
        assert (await console.sign_in())[0] == 302

        async def two_samples() -> dict[str, Any] | None:
            data = await snapshot(console)
            return data if len(data["series"]["t"]) >= 2 else None

        data = await wait_for(two_samples, 20, interval=0.2, what="two samples")
        assert data["broker"] is False
        assert data["database"] is True
        assert all(q["messages"] is None for q in data["queues"])
        status, page, _ = await console.get("/console")
        assert status == 200
        assert "unavailable" in page
        status, page, _ = await console.get("/console/dlq")
        assert status == 503
        assert "RabbitMQ is unreachable" in page
    async with http.get(gw.url + "/healthz") as resp:
        assert resp.status == 200
    # the sampler is cancelled at shutdown: a clean exit, nothing left running
    assert gw.terminate(30) == 0
    assert "Traceback" not in gw.text()
    assert "Task was destroyed" not in gw.text()
