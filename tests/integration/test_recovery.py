"""Issue 5: every fault, with nothing lost. Faults are real: SIGKILL, SIGTERM, and TCP proxies
in the test that cut PostgreSQL or RabbitMQ (never the machine's shared servers)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import AsyncIterator

import aio_pika
import aiohttp
import asyncpg

from qcare_ingest.topology import EXCHANGE, QUEUE, ROUTING_KEY
from tests.conftest import Procs, RunEnv
from tests.support.http import get, post, wait_processed
from tests.support.payloads import order
from tests.support.procs import Gateway, Worker, wait_for
from tests.support.proxy import TcpProxy, via
from tests.support.queues import cli, dead_letters


async def applied_count(db: asyncpg.Pool, prefix: str) -> int:
    n = await db.fetchval(
        "SELECT count(*) FROM inbox WHERE msg_id LIKE $1 || '%' AND status = 'applied'", prefix
    )
    return int(n)


async def post_many(
    http: aiohttp.ClientSession, gw: Gateway, prefix: str, n: int, concurrency: int = 32
) -> list[int]:
    limit = asyncio.Semaphore(concurrency)

    async def one(i: int) -> int:
        async with limit:
            try:
                return (await post(http, gw, order(f"{prefix}{i}", f"ACC-{prefix}{i}")))[0]
            except aiohttp.ClientError:
                return 0

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def wait_applied(
    db: asyncpg.Pool, prefix: str, at_least: int, timeout: float = 30, what: str = "load under way"
) -> None:
    async def reached() -> bool:
        return await applied_count(db, prefix) >= at_least

    await wait_for(reached, timeout, interval=0.01, what=what)


async def wait_accepted_applied(db: asyncpg.Pool, prefix: str, statuses: list[int]) -> list[int]:
    """Wait until every message that got a 200 is in the inbox; the indices of those."""
    ok = [i for i, s in enumerate(statuses) if s == 200]

    async def all_in() -> bool:
        rows = await db.fetch(
            "SELECT msg_id FROM inbox WHERE msg_id = ANY($1::text[])", [f"{prefix}{i}" for i in ok]
        )
        return len(rows) == len(ok)

    await wait_for(all_in, 60, interval=0.2, what="every accepted message applied")
    return ok


async def wait_all_applied(db: asyncpg.Pool, prefix: str, n: int, timeout: float = 120) -> float:
    started = time.monotonic()

    async def done() -> bool:
        return await applied_count(db, prefix) == n

    await wait_for(done, timeout, interval=0.1, what=f"{n} messages {prefix}* applied")
    return time.monotonic() - started


def applied_once(workers: list[Worker], prefix: str) -> None:
    """No msg_id was applied by two deliveries (logs of every worker process, killed or not)."""
    applied = [
        m for w in workers for m, o in w.outcomes() if o == "applied" and m.startswith(prefix)
    ]
    assert len(applied) == len(set(applied))


async def test_postgres_unreachable_for_20s_loses_nothing(
    procs: Procs,
    test_env: RunEnv,
    http: aiohttp.ClientSession,
    db: asyncpg.Pool,
    amqp: aio_pika.abc.AbstractConnection,
) -> None:
    proxy = TcpProxy("127.0.0.1", 5432)
    await proxy.start()
    try:
        gw = procs.gateway()
        worker = procs.worker(QCARE_DATABASE_URL=via(test_env.database_url, proxy.port))
        await asyncio.gather(gw.ready(http), worker.consuming())
        prefix = f"pgdown-{uuid.uuid4().hex[:6]}-"
        await proxy.cut()
        statuses = await post_many(http, gw, prefix, 500)
        assert statuses == [200] * 500
        await asyncio.sleep(20)  # the outage itself, not a settling wait
        assert await applied_count(db, prefix) == 0
        await proxy.start()
        recovery = await wait_all_applied(db, prefix, 500)
        print(f"\nPostgreSQL back: 500 applied {recovery:.1f}s later")
        assert not [m for m in await dead_letters(amqp) if m.startswith(prefix)]
        assert any(e.get("action") == "db_wait" for e in worker.events())
        applied_once([worker], prefix)
    finally:
        await proxy.stop()


async def test_broker_cut_under_load(
    procs: Procs, test_env: RunEnv, http: aiohttp.ClientSession, db: asyncpg.Pool
) -> None:
    proxy = TcpProxy(*test_env.amqp_host_port)
    await proxy.start()
    try:
        amqp_url = via(test_env.amqp_url, proxy.port)
        gw = procs.gateway(QCARE_AMQP_URL=amqp_url, QCARE_PUBLISH_TIMEOUT="2")
        worker = procs.worker(QCARE_AMQP_URL=amqp_url)
        await asyncio.gather(gw.ready(http), worker.consuming())
        prefix = f"amqpcut-{uuid.uuid4().hex[:6]}-"
        load = asyncio.ensure_future(post_many(http, gw, prefix, 1500, concurrency=8))

        await wait_applied(db, prefix, 200)
        await proxy.cut()
        cut_at = time.monotonic()
        await asyncio.sleep(2)  # the outage
        await proxy.start()
        statuses = await load
        assert statuses.count(503) > 0, "the cut did not hit the load"
        assert set(statuses) <= {200, 503}

        ok = await wait_accepted_applied(db, prefix, statuses)
        print(
            f"\nbroker cut 2 s: {len(ok)} accepted and applied, {statuses.count(503)} got 503, "
            f"recovered {time.monotonic() - cut_at - 2:.1f}s after restore"
        )
        applied_once([worker], prefix)
        assert any(e.get("action") == "broker_reconnect" for e in worker.events())
    finally:
        await proxy.stop()


async def test_sigkill_three_times_in_2000(
    procs: Procs, http: aiohttp.ClientSession, db: asyncpg.Pool
) -> None:
    gw = procs.gateway()
    await gw.ready(http)
    prefix = f"kill3-{uuid.uuid4().hex[:6]}-"
    assert await post_many(http, gw, prefix, 2000, concurrency=64) == [200] * 2000
    rnd = random.Random()
    workers = [procs.worker(concurrency=32)]
    for _ in range(3):
        target = await applied_count(db, prefix) + rnd.randint(50, 400)
        await wait_applied(db, prefix, target, 60, what="kill point")
        workers[-1].kill()
        workers.append(procs.worker(concurrency=32))
    await wait_all_applied(db, prefix, 2000)
    applied_once(workers, prefix)


async def test_poison_and_conflict_are_dead_lettered_workers_go_on(
    stack: tuple[Gateway, list[Worker]],
    http: aiohttp.ClientSession,
    amqp: aio_pika.abc.AbstractConnection,
) -> None:
    gw, _ = stack
    tag = uuid.uuid4().hex[:6]
    channel = await amqp.channel()
    exchange = await channel.get_exchange(EXCHANGE)
    await exchange.publish(
        aio_pika.Message(b"\x00not json{", message_id=f"poison-{tag}"), ROUTING_KEY
    )
    await channel.close()
    await post(http, gw, order(f"conf-{tag}", f"ACC-conf-{tag}"))
    await wait_processed(http, gw, f"conf-{tag}")
    await post(http, gw, order(f"conf-{tag}", f"ACC-conf-{tag}", location="elsewhere"))

    async def both_parked() -> dict[str, dict[str, object]] | None:
        dead = await dead_letters(amqp)
        return dead if {f"poison-{tag}", f"conf-{tag}"} <= set(dead) else None

    dead = await wait_for(both_parked, 30, what="poison and conflict dead-lettered")
    assert dead[f"poison-{tag}"]["x-qcare-dead-reason"] == "undecodable"
    assert dead[f"conf-{tag}"]["x-qcare-dead-reason"] == "conflict"
    for headers in (dead[f"poison-{tag}"], dead[f"conf-{tag}"]):
        for key in (
            "x-qcare-error-class",
            "x-qcare-attempts",
            "x-qcare-first-failure",
            "x-qcare-last-failure",
            "x-qcare-worker",
        ):
            assert key in headers
    assert (await post(http, gw, order(f"after-{tag}", f"ACC-after-{tag}")))[0] == 200
    await wait_processed(http, gw, f"after-{tag}")


async def test_delivery_limit_parks_a_message_that_kills_its_consumer(
    test_env: RunEnv, amqp: aio_pika.abc.AbstractConnection
) -> None:
    tag = f"crash-{uuid.uuid4().hex[:6]}"
    channel = await amqp.channel()
    exchange = await channel.get_exchange(EXCHANGE)
    await exchange.publish(aio_pika.Message(b"{}", message_id=tag), ROUTING_KEY)
    await channel.close()
    limit = test_env.settings().delivery_limit
    deaths = 0
    deadline = time.monotonic() + 60
    while tag not in await dead_letters(amqp):
        assert time.monotonic() < deadline, "never dead-lettered"
        assert deaths <= limit + 1, "delivery limit not enforced"
        conn = await aio_pika.connect(test_env.amqp_url)
        ch = await conn.channel()
        await ch.set_qos(prefetch_count=1000)
        queue = await ch.declare_queue(QUEUE, passive=True)
        got_it = asyncio.Event()

        async def on_message(
            message: aio_pika.abc.AbstractIncomingMessage, got_it: asyncio.Event = got_it
        ) -> None:
            if message.message_id == tag:
                got_it.set()  # and never ack: this consumer is about to "crash"

        await queue.consume(on_message)
        try:
            await asyncio.wait_for(got_it.wait(), 10)
            deaths += 1
        except TimeoutError:
            pass
        await conn.close()  # the worker dies holding it
    assert deaths == limit + 1 or deaths == limit  # RabbitMQ counts returns, not deliveries


@contextlib.asynccontextmanager
async def failing_orders(
    db: asyncpg.Pool, prefix: str, sqlstate: str = "P0001", times: int | None = None
) -> AsyncIterator[None]:
    """Writes of this prefix's orders fail with `sqlstate` (`times` times in all, or always)
    while the block runs: the database refusing data, or a transient error."""
    name = f"fail_{prefix}"
    limit = "" if times is None else f"AND nextval('{name}') <= {times}"
    await db.execute(f"""
        CREATE SEQUENCE {name};
        CREATE FUNCTION {name}() RETURNS trigger AS $$
        BEGIN
            IF NEW.accession_no LIKE 'ACC-{prefix}%' {limit} THEN
                RAISE EXCEPTION 'refused by test trigger' USING ERRCODE = '{sqlstate}';
            END IF;
            RETURN NEW;
        END $$ LANGUAGE plpgsql;
        CREATE TRIGGER {name} BEFORE INSERT OR UPDATE ON orders
            FOR EACH ROW EXECUTE FUNCTION {name}();""")
    try:
        yield
    finally:
        await db.execute(
            f"DROP TRIGGER {name} ON orders; DROP FUNCTION {name}(); DROP SEQUENCE {name};"
        )


async def test_fix_the_cause_then_replay(
    stack: tuple[Gateway, list[Worker]],
    test_env: RunEnv,
    http: aiohttp.ClientSession,
    db: asyncpg.Pool,
) -> None:
    gw, _ = stack
    prefix = f"fix{uuid.uuid4().hex[:6]}"
    msg_id = f"{prefix}-1"
    async with failing_orders(db, prefix):
        assert (await post(http, gw, order(msg_id, f"ACC-{prefix}-1")))[0] == 200
        view = await wait_processed(http, gw, msg_id, statuses=("rejected",))
        assert "data_refused" in view["error"]
        listing = cli(test_env.env(), "dlq", "list")
        assert listing.returncode == 0
        assert msg_id in listing.stdout
        assert "data_refused" in listing.stdout
        shown = cli(test_env.env(), "dlq", "show", msg_id)
        assert shown.returncode == 0
        assert "A12****(3)" in shown.stdout
        assert "A123456" not in shown.stdout
        assert "CHAN TAI MAN" not in shown.stdout
    replayed = cli(test_env.env(), "dlq", "replay", msg_id)
    assert replayed.returncode == 0, replayed.stderr
    view = await wait_processed(http, gw, msg_id)
    assert view["status"] == "applied"
    status, order_view = await get(http, gw, f"/orders/ACC-{prefix}-1")
    assert status == 200
    assert order_view["msg_id"] == msg_id


async def test_replay_1000_with_a_worker_killed_halfway(
    procs: Procs,
    test_env: RunEnv,
    http: aiohttp.ClientSession,
    db: asyncpg.Pool,
    amqp: aio_pika.abc.AbstractConnection,
) -> None:
    prefix = f"rep{uuid.uuid4().hex[:6]}"
    gw = procs.gateway()
    first = procs.worker(concurrency=32)
    await asyncio.gather(gw.ready(http), first.consuming())
    async with failing_orders(db, prefix):
        assert await post_many(http, gw, f"{prefix}-", 1000) == [200] * 1000

        async def all_parked() -> bool:
            dead = await dead_letters(amqp)
            return sum(m.startswith(prefix) for m in dead) == 1000

        await wait_for(all_parked, 60, interval=0.2, what="1000 dead-lettered")
    dry = cli(test_env.env(), "dlq", "replay", "--all", "--reason", "data_refused", "--dry-run")
    assert dry.returncode == 0
    assert await applied_count(db, f"{prefix}-") == 0
    started = time.monotonic()
    replay = await asyncio.to_thread(
        cli, test_env.env(), "dlq", "replay", "--all", "--reason", "data_refused"
    )
    assert replay.returncode == 0, replay.stderr
    assert "replayed" in replay.stderr

    await wait_applied(db, f"{prefix}-", 500, 60, what="half replayed")
    first.kill()
    second = procs.worker(concurrency=32)
    await wait_all_applied(db, f"{prefix}-", 1000)
    print(f"\nreplayed 1000 (worker killed halfway): all applied {time.monotonic() - started:.1f}s")
    applied_once([first, second], f"{prefix}-")
    assert not [m for m in await dead_letters(amqp) if m.startswith(prefix)]


async def test_sigterm_during_load(
    procs: Procs, http: aiohttp.ClientSession, db: asyncpg.Pool
) -> None:
    gw = procs.gateway(QCARE_SHUTDOWN_GRACE="10")
    worker = procs.worker(concurrency=32, QCARE_SHUTDOWN_GRACE="10")
    await asyncio.gather(gw.ready(http), worker.consuming())
    prefix = f"term-{uuid.uuid4().hex[:6]}-"
    load = asyncio.ensure_future(post_many(http, gw, prefix, 1000, concurrency=16))

    await wait_applied(db, prefix, 200)
    started = time.monotonic()
    code = await asyncio.to_thread(worker.terminate, 15)
    assert code == 0
    assert time.monotonic() - started < 12
    assert any(e.get("action") == "worker_stopped" for e in worker.events())
    # the gateway too: stop accepting, finish what it holds, exit 0
    code = await asyncio.to_thread(gw.terminate, 15)
    assert code == 0
    statuses = await load
    second = procs.worker()
    await second.consuming()

    ok = await wait_accepted_applied(db, prefix, statuses)
    assert len(ok) >= 200
    applied_once([worker, second], prefix)


async def test_transient_errors_retry_in_process_then_via_delay_queue(
    procs: Procs, http: aiohttp.ClientSession, db: asyncpg.Pool
) -> None:
    prefix = f"flaky{uuid.uuid4().hex[:6]}"
    # 4 in-process tries, then 2 more after one delay-queue round
    async with failing_orders(db, prefix, "40001", times=6):
        gw = procs.gateway()
        worker = procs.worker(QCARE_RETRY_DELAYS="1,1")
        await asyncio.gather(gw.ready(http), worker.consuming())
        assert (await post(http, gw, order(f"{prefix}-1", f"ACC-{prefix}-1")))[0] == 200
        view = await wait_processed(http, gw, f"{prefix}-1")
        assert view["status"] == "applied"
        delayed = [e for e in worker.events() if e.get("action") == "delayed"]
        assert [e["msg_id"] for e in delayed] == [f"{prefix}-1"]


async def test_transient_errors_that_never_stop_end_in_the_dlq(
    procs: Procs,
    http: aiohttp.ClientSession,
    db: asyncpg.Pool,
    amqp: aio_pika.abc.AbstractConnection,
) -> None:
    prefix = f"stuck{uuid.uuid4().hex[:6]}"
    async with failing_orders(db, prefix, "40001"):
        gw = procs.gateway()
        worker = procs.worker(QCARE_RETRY_DELAYS="1,1")
        await asyncio.gather(gw.ready(http), worker.consuming())
        assert (await post(http, gw, order(f"{prefix}-1", f"ACC-{prefix}-1")))[0] == 200
        view = await wait_processed(http, gw, f"{prefix}-1", statuses=("dead_lettered",))
        assert "retries_exhausted" in view["error"]
        headers = (await dead_letters(amqp))[f"{prefix}-1"]
        assert headers["x-qcare-dead-reason"] == "retries_exhausted"
        assert headers["x-qcare-attempts"] == 3
        assert len([e for e in worker.events() if e.get("action") == "delayed"]) == 2
