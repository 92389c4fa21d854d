"""Issue 2 fault tests: SIGKILL a worker holding messages; broker gone behind a proxy."""

from __future__ import annotations

import time
import uuid

import aio_pika
import aiohttp
import asyncpg

from tests.conftest import Procs, RunEnv
from tests.support.payloads import UPDATE, order
from tests.support.procs import Gateway, wait_for
from tests.support.proxy import TcpProxy, via
from tests.support.queues import queue_depth


async def post_order(
    http: aiohttp.ClientSession, gw: Gateway, msg_id: str, accession: str
) -> tuple[int, dict[str, str]]:
    """Status and headers; the client gives up after 30 s, so a hung gateway fails the test."""
    async with http.post(
        gw.url + UPDATE,
        data=order(msg_id, accession),
        headers={"Content-Type": "application/json"},
        timeout=aiohttp.ClientTimeout(total=30),
    ) as resp:
        return resp.status, dict(resp.headers)


async def test_sigkilled_worker_loses_nothing(
    procs: Procs,
    http: aiohttp.ClientSession,
    db: asyncpg.Pool,
    amqp: aio_pika.abc.AbstractConnection,
) -> None:
    run = uuid.uuid4().hex[:8]
    n = 200
    gw = procs.gateway()
    await gw.ready(http)
    for i in range(n):
        async with http.post(
            gw.url + UPDATE,
            data=order(f"kill-{run}-{i}", f"K-{run}-{i}"),
            headers={"Content-Type": "application/json"},
        ) as resp:
            assert resp.status == 200
    base = await queue_depth(amqp)
    assert base >= n

    # Hold the orders table so the first worker takes deliveries but cannot commit any.
    blocker = await db.acquire()
    tx = blocker.transaction()
    await tx.start()
    await blocker.execute("LOCK TABLE orders IN EXCLUSIVE MODE")
    try:
        victim = procs.worker(concurrency=50)
        await victim.consuming()

        async def holding() -> bool:
            return await queue_depth(amqp) <= base - 50

        await wait_for(holding, 20, what="worker holding 50 unacked messages")
        victim.kill()
        assert victim.popen.returncode == -9
    finally:
        await tx.rollback()
        await db.release(blocker)
    assert victim.outcomes() == []  # it never got to commit anything

    survivor = procs.worker(concurrency=16)

    async def all_applied() -> bool:
        count = await db.fetchval(
            "SELECT count(*) FROM inbox WHERE msg_id LIKE $1 AND status = 'applied'",
            f"kill-{run}-%",
        )
        return bool(count == n)

    await wait_for(all_applied, 60, interval=0.2, what=f"{n} messages applied after the kill")
    applied = sorted(m for m, o in survivor.outcomes() if m.startswith(f"kill-{run}-"))
    assert applied == sorted(f"kill-{run}-{i}" for i in range(n))


async def test_broker_down_gives_503_quickly_then_recovers(
    procs: Procs, test_env: RunEnv, http: aiohttp.ClientSession, db: asyncpg.Pool
) -> None:
    proxy = TcpProxy(*test_env.amqp_host_port)
    await proxy.start()
    try:
        gw = procs.gateway(QCARE_AMQP_URL=via(test_env.amqp_url, proxy.port))
        procs.worker()
        await gw.ready(http)
        run = uuid.uuid4().hex[:8]

        async def post(i: int) -> tuple[int, dict[str, str]]:
            return await post_order(http, gw, f"down-{run}-{i}", f"D-{run}-{i}")

        assert (await post(0))[0] == 200
        await proxy.cut()
        for i in range(1, 4):
            started = time.monotonic()
            status, headers = await post(i)
            elapsed = time.monotonic() - started
            assert status == 503
            assert "Retry-After" in headers
            assert elapsed < 6, f"503 took {elapsed:.1f}s"

        await proxy.start()  # same port: the broker is back

        async def accepted() -> bool:
            return (await post(4))[0] == 200

        await wait_for(accepted, 20, interval=0.2, what="gateway publishing again")

        async def applied() -> bool:
            rows = await db.fetch(
                "SELECT msg_id FROM inbox WHERE msg_id = ANY($1::text[])",
                [f"down-{run}-0", f"down-{run}-4"],
            )
            return len(rows) == 2

        await wait_for(applied, 30, what="messages before and after the outage applied")
        refused = await db.fetchval(
            "SELECT count(*) FROM inbox WHERE msg_id = ANY($1::text[])",
            [f"down-{run}-{i}" for i in (1, 2, 3)],
        )
        assert refused == 0  # the broker was cut: those 503s accepted nothing
    finally:
        await proxy.stop()


async def test_broker_that_stops_confirming_gives_503_within_the_timeout(
    procs: Procs, test_env: RunEnv, http: aiohttp.ClientSession
) -> None:
    """RabbitMQ reachable but silent: the publish's deadline covers the confirm too."""
    proxy = TcpProxy(*test_env.amqp_host_port)
    await proxy.start()
    try:
        gw = procs.gateway(
            QCARE_AMQP_URL=via(test_env.amqp_url, proxy.port), QCARE_PUBLISH_TIMEOUT="1"
        )
        await gw.ready(http)
        run = uuid.uuid4().hex[:8]

        async def post(i: int) -> tuple[int, dict[str, str]]:
            return await post_order(http, gw, f"stall-{run}-{i}", f"S-{run}-{i}")

        assert (await post(0))[0] == 200
        proxy.stall()
        for i in range(1, 3):
            started = time.monotonic()
            status, headers = await post(i)
            elapsed = time.monotonic() - started
            assert status == 503
            assert headers.get("Retry-After") == "5"
            assert elapsed < 5, f"503 took {elapsed:.1f}s with a 1 s publish timeout"
        assert any(e.get("action") == "publish_failed" for e in gw.events())

        proxy.resume()

        async def accepted() -> bool:
            return (await post(3))[0] == 200

        await wait_for(accepted, 20, interval=0.2, what="gateway publishing again")
    finally:
        await proxy.stop()
