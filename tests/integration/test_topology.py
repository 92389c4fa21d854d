"""Issue 12, finding 8: dead-lettering is at least once, and an existing deployment upgrades.

Every test runs in a vhost of its own (created and deleted with rabbitmqctl), so it can
declare the topology as an older version did, unbind queues and set policies without
touching the run's shared vhost. `migrate` runs as a subprocess against it, with the
run's database (already migrated: its half of `migrate` is a no-op here).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aio_pika
import asyncpg
import pytest
from aio_pika.abc import AbstractConnection, ExchangeType

from qcare_ingest.broker import Publisher
from qcare_ingest.topology import declare, delay_queue_arguments, queue_arguments
from tests.conftest import AMQP_BASE, Procs, RunEnv
from tests.support.http import publish_as_gateway
from tests.support.isolation import rabbitmqctl
from tests.support.procs import ROOT, wait_for
from tests.support.queues import cli

# The names are fixed (SPEC, runbooks): spelled out here, not imported.
EXCHANGE = "qcare.ingest"
QUEUE = "qcare.ingest"
DLX = "qcare.ingest.dlx"
DLQ = "qcare.ingest.dlq"
DELAYS = (10, 60, 600)
DELAY_600 = "qcare.ingest.delay.600s"
AT_LEAST_ONCE = {"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}
GROUP = {"x-quorum-initial-group-size": 3}  # issue 17: three members (one on a single node)


async def declare_old_topology(conn: AbstractConnection, delivery_limit: int = 5) -> None:
    """Exactly what topology.py declared before at-least-once dead-lettering (7bb861c)."""
    channel = await conn.channel()
    exchange = await channel.declare_exchange(EXCHANGE, ExchangeType.DIRECT, durable=True)
    dlx = await channel.declare_exchange(DLX, ExchangeType.DIRECT, durable=True)
    dlq = await channel.declare_queue(DLQ, durable=True, arguments={"x-queue-type": "quorum"})
    await dlq.bind(dlx, "dead")
    queue = await channel.declare_queue(
        QUEUE,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": delivery_limit,
            "x-dead-letter-exchange": DLX,
            "x-dead-letter-routing-key": "dead",
        },
    )
    await queue.bind(exchange, "update")
    for seconds in DELAYS:
        await channel.declare_queue(
            f"qcare.ingest.delay.{seconds}s",
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-message-ttl": seconds * 1000,
                "x-dead-letter-exchange": EXCHANGE,
                "x-dead-letter-routing-key": "update",
            },
        )
    await channel.close()


@dataclass(frozen=True)
class Vhost:
    name: str
    amqp_url: str
    env: dict[str, str]

    def ctl(self, *args: str) -> str:
        out = subprocess.run(
            ["rabbitmqctl", "-q", *args, "-p", self.name],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return out.stdout

    def arguments(self) -> dict[str, dict[str, Any]]:
        """Every queue of the vhost: name -> its arguments, as RabbitMQ holds them."""
        rows = json.loads(self.ctl("list_queues", "name", "arguments", "--formatter", "json"))
        return {row["name"]: {k: v for k, _type, v in row["arguments"]} for row in rows}

    def bindings(self) -> set[tuple[str, str, str]]:
        """(exchange, queue, routing key) of every binding but the default exchange's."""
        rows = json.loads(
            self.ctl(
                "list_bindings",
                "source_name",
                "destination_name",
                "routing_key",
                "--formatter",
                "json",
            )
        )
        return {
            (r["source_name"], r["destination_name"], r["routing_key"])
            for r in rows
            if r["source_name"]
        }

    def nudge(self, pattern: str) -> None:
        """Change the policy of the queues matching `pattern` (a no-op in effect: a byte
        limit nobody reaches). RabbitMQ retries an at-least-once dead-letter whose target
        was missing every 3 minutes (dead_letter_worker_publisher_confirm_timeout), and at
        once when the source queue's policy changes; this saves the tests the wait."""
        self.ctl(
            "set_policy",
            "--apply-to",
            "queues",
            f"nudge-{uuid.uuid4().hex[:6]}",
            pattern,
            '{"max-length-bytes": 1000000000000}',
        )


@pytest.fixture
async def vhost(test_env: RunEnv) -> AsyncIterator[Vhost]:
    name = f"qcare_topo_{uuid.uuid4().hex[:10]}"
    rabbitmqctl("add_vhost", name)
    try:
        rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        url = AMQP_BASE.rstrip("/") + "/" + quote(name, safe="")
        yield Vhost(name, url, test_env.env(QCARE_AMQP_URL=url))
    finally:
        rabbitmqctl("delete_vhost", name)


@pytest.fixture
async def conn(vhost: Vhost) -> AsyncIterator[AbstractConnection]:
    connection = await aio_pika.connect(vhost.amqp_url)
    yield connection
    await connection.close()


def message(msg_id: str, **headers: Any) -> aio_pika.Message:
    return aio_pika.Message(
        json.dumps({"msg_id": msg_id}).encode(),
        message_id=msg_id,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        headers={"x-qcare-received-at": 1_700_000_000_000_000, "x-test": msg_id, **headers},
    )


async def publish(
    conn: AbstractConnection, msg_ids: list[str], exchange: str = "", routing_key: str = QUEUE
) -> None:
    """Confirmed, mandatory (a message with no queue to go to fails the test)."""
    channel = await conn.channel(publisher_confirms=True, on_return_raises=True)
    target = channel.default_exchange if not exchange else await channel.get_exchange(exchange)
    for msg_id in msg_ids:
        await target.publish(message(msg_id), routing_key, mandatory=True)
    await channel.close()


async def depth(conn: AbstractConnection, queue: str) -> int:
    channel = await conn.channel()
    try:
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)
    finally:
        await channel.close()


async def peek(conn: AbstractConnection, queue: str) -> dict[str, dict[str, Any]]:
    """msg_id -> headers of every ready message in `queue`, handed back unacked (each
    look counts as one delivery toward the queue's delivery limit: look rarely)."""
    channel = await conn.channel()
    found: dict[str, dict[str, Any]] = {}
    try:
        q = await channel.declare_queue(queue, passive=True)
        while (m := await q.get(no_ack=False, fail=False)) is not None:
            found[m.message_id or ""] = dict(m.headers or {})
    finally:
        await channel.close()
    return found


async def received(conn: AbstractConnection, queue: str, expected: set[str]) -> bool:
    """Consume (and ack) `queue` until every expected msg_id has come; duplicates are
    fine (the inbox absorbs them). False if some never come."""
    seen: set[str] = set()
    channel = await conn.channel()
    await channel.set_qos(prefetch_count=500)
    q = await channel.get_queue(queue)

    async def on_message(m: aio_pika.abc.AbstractIncomingMessage) -> None:
        seen.add(m.message_id or "")
        await m.ack()

    await q.consume(on_message)

    async def all_seen() -> bool:
        return expected <= seen

    try:
        await wait_for(all_seen, 60, what=f"{len(expected)} messages from {queue}")
    except AssertionError:
        return False
    finally:
        await channel.close()
    return seen == expected


def ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i}" for i in range(n)]


def assert_current(vhost: Vhost, delays: tuple[int, ...] = DELAYS, limit: int = 5) -> None:
    queues = vhost.arguments()
    assert queues[QUEUE] == {
        "x-queue-type": "quorum",
        **GROUP,
        "x-delivery-limit": limit,
        "x-dead-letter-exchange": DLX,
        "x-dead-letter-routing-key": "dead",
        **AT_LEAST_ONCE,
    }
    for seconds in delays:
        assert queues[f"qcare.ingest.delay.{seconds}s"] == {
            "x-queue-type": "quorum",
            **GROUP,
            "x-message-ttl": seconds * 1000,
            "x-dead-letter-exchange": EXCHANGE,
            "x-dead-letter-routing-key": "update",
            **AT_LEAST_ONCE,
        }
    assert queues[DLQ] == {"x-queue-type": "quorum", **GROUP, "x-delivery-limit": 1_000_000}
    leftovers = [name for name in queues if name.endswith(".migrating") or "lock" in name]
    assert not leftovers
    bindings = vhost.bindings()
    assert (EXCHANGE, QUEUE, "update") in bindings
    assert (DLX, DLQ, "dead") in bindings
    assert {b for b in bindings if b[1].endswith(".migrating")} == set()


# -- (a) the upgrade of today's topology ------------------------------------------------


async def test_migrate_upgrades_todays_topology_keeping_every_message(
    vhost: Vhost, conn: AbstractConnection
) -> None:
    await declare_old_topology(conn)
    main = [*ids("main", 300), "dup-1"]
    delayed = ids("delayed", 3)
    dead = ids("dead", 3)
    await publish(conn, main, EXCHANGE, "update")
    await publish(conn, ["dup-1"], EXCHANGE, "update")  # two deliveries of one update
    await publish(conn, delayed, routing_key=DELAY_600)
    await publish(conn, dead, DLX, "dead")
    before = vhost.arguments()
    assert "x-dead-letter-strategy" not in before[QUEUE]  # today's topology, as declared

    run = cli(vhost.env, "migrate")
    assert run.returncode == 0, run.stderr
    for name in (QUEUE, DELAY_600, "qcare.ingest.delay.10s", "qcare.ingest.delay.60s"):
        assert f"broker: {name}: deleted" in run.stderr, run.stderr
    assert f"broker: {DLQ}: deleted" in run.stderr  # rebuilt: it now has a delivery limit
    assert_current(vhost)

    assert await depth(conn, QUEUE) == len(main) + 1
    in_main = await peek(conn, QUEUE)
    assert set(in_main) == set(main)
    assert in_main["main-7"]["x-test"] == "main-7"  # properties travel with the message
    assert set(await peek(conn, DELAY_600)) == set(delayed)
    assert set(await peek(conn, DLQ)) == set(dead)

    # the exchange routes to the rebuilt queue (publish() is mandatory: a return fails)
    await publish(conn, ["after-1"], EXCHANGE, "update")
    assert await depth(conn, QUEUE) == len(main) + 2

    again = cli(vhost.env, "migrate")
    assert again.returncode == 0, again.stderr
    assert "nothing to upgrade" in again.stderr
    assert "deleted" not in again.stderr
    assert_current(vhost)
    assert await depth(conn, QUEUE) == len(main) + 2
    assert await depth(conn, DELAY_600) == len(delayed)
    assert await depth(conn, DLQ) == len(dead)


async def test_publishes_stay_confirmed_while_migrate_rebuilds_the_main_queue(
    vhost: Vhost, conn: AbstractConnection
) -> None:
    """The gateway's publisher (mandatory, confirmed) keeps working through the upgrade:
    the holding queue is bound before the main queue is unbound or deleted."""
    await declare_old_topology(conn)
    await publish(conn, ids("queued", 200), EXCHANGE, "update")
    publisher = Publisher(vhost.amqp_url, delivery_limit=5, timeout=5)
    sent: list[str] = []
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "qcare_ingest.cli",
        "migrate",
        env={**os.environ, **vhost.env},
        cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    migrating = asyncio.create_task(proc.communicate())
    try:
        while not migrating.done():  # publish one after another for as long as it runs
            msg_id = f"live-{len(sent)}"
            await publisher.publish(b"{}", msg_id, {"x-qcare-received-at": 1})  # raises if not
            sent.append(msg_id)
            await asyncio.sleep(0.002)  # pace: a few hundred a second, like a busy day
        _, err = await migrating
    finally:
        if proc.returncode is None:
            proc.kill()
        await asyncio.wait_for(migrating, 30)
        await publisher.close()
    assert proc.returncode == 0, err.decode()
    assert len(sent) > 50  # published throughout, not just before or after
    assert_current(vhost)
    assert await received(conn, QUEUE, {*ids("queued", 200), *sent})


async def test_the_upgrade_cancels_consumers_of_the_main_queue_instead_of_stalling_them(
    vhost: Vhost, conn: AbstractConnection
) -> None:
    """RabbitMQ 3.10 re-attaches a consumer whose channel has not yet noticed the deletion
    to the new queue of the same name, and that channel then drops every delivery: a
    worker stalled without a sign. migrate waits for the cancellation before declaring
    the queue again, so a consumer is told (and a worker can consume again)."""
    await declare_old_topology(conn)
    channel = await conn.channel()
    await channel.set_qos(prefetch_count=16)
    raw = await channel.get_underlay_channel()
    cancelled = asyncio.Event()
    raw.on_consumer_cancel_callbacks.add(lambda _frame: cancelled.set())
    got: list[str] = []

    async def on_message(m: aio_pika.abc.AbstractIncomingMessage) -> None:
        got.append(m.message_id or "")
        await m.ack()

    await (await channel.get_queue(QUEUE)).consume(on_message)
    await publish(conn, ids("before", 40), EXCHANGE, "update")  # a consumer that has worked

    async def all_before() -> bool:
        return len(got) == 40

    await wait_for(all_before, 30, what="the consumer to take the first messages")
    run = await asyncio.to_thread(cli, vhost.env, "migrate")  # the loop keeps consuming
    assert run.returncode == 0, run.stderr
    assert "its consumers were cancelled" in run.stderr
    assert cancelled.is_set()  # a re-attached consumer would have been told nothing
    await channel.close()
    await publish(conn, ids("after", 40), EXCHANGE, "update")
    assert await received(conn, QUEUE, set(ids("after", 40)))


# -- re-running after a crash at any step -----------------------------------------------


HOLD = f"{QUEUE}.migrating"


async def crashed_while_draining(conn: AbstractConnection) -> None:
    await declare_old_topology(conn)
    channel = await conn.channel()
    hold = await channel.declare_queue(HOLD, durable=True, arguments={"x-queue-type": "quorum"})
    await hold.bind(EXCHANGE, "update")
    await (await channel.get_queue(QUEUE)).unbind(EXCHANGE, "update")
    await channel.close()
    await publish(conn, ids("held", 20), routing_key=HOLD)
    await publish(conn, ids("main", 20), routing_key=QUEUE)


async def crashed_after_deleting(conn: AbstractConnection) -> None:
    await crashed_while_draining(conn)
    channel = await conn.channel()
    await channel.queue_delete(QUEUE)
    await channel.close()
    await publish(conn, ids("main", 20), routing_key=HOLD)  # drained before the delete


async def crashed_while_restoring(conn: AbstractConnection) -> None:
    topology = await declare(conn, 5)  # the rebuilt topology
    await topology.channel.close()
    channel = await conn.channel()
    hold = await channel.declare_queue(HOLD, durable=True, arguments={"x-queue-type": "quorum"})
    await hold.bind(EXCHANGE, "update")  # not unbound yet
    await channel.close()
    await publish(conn, ids("held", 20), routing_key=HOLD)
    await publish(conn, ids("main", 20), routing_key=QUEUE)


@pytest.mark.parametrize(
    "crash", [crashed_while_draining, crashed_after_deleting, crashed_while_restoring]
)
async def test_migrate_resumes_after_a_crash(
    vhost: Vhost, conn: AbstractConnection, crash: Any
) -> None:
    await crash(conn)
    run = cli(vhost.env, "migrate")
    assert run.returncode == 0, run.stderr
    assert f"{HOLD}: left by an earlier run: resuming" in run.stderr
    assert_current(vhost)
    assert set(await peek(conn, QUEUE)) == {*ids("held", 20), *ids("main", 20)}


async def test_a_second_migrate_waits_for_the_first(vhost: Vhost, conn: AbstractConnection) -> None:
    await declare(conn, 5)
    channel = await conn.channel()
    await channel.declare_queue("qcare.ingest.migrate.lock", exclusive=True)  # a migrate runs
    run = cli(vhost.env, "migrate")
    assert run.returncode == 1
    assert "another `qcare-ingest migrate` is upgrading" in run.stderr
    await channel.close()


# -- (b) at-least-once dead-lettering ---------------------------------------------------


async def test_a_message_dead_lettered_while_the_dlq_is_unbound_is_kept_until_it_is_back(
    vhost: Vhost, conn: AbstractConnection
) -> None:
    topology = await declare(conn, 5, (1,))
    dlq = await topology.channel.get_queue(DLQ)
    await dlq.unbind(DLX, "dead")  # the dead-letter target is unavailable
    await publish(conn, ["poison-1"], EXCHANGE, "update")
    got = await topology.queue.get(no_ack=False)
    assert got is not None
    assert got.message_id == "poison-1"
    await got.nack(requeue=False)  # dead-letter it (as x-delivery-limit does)

    assert await depth(conn, QUEUE) == 0  # not ready any more, not in the DLQ: held aside
    assert await depth(conn, DLQ) == 0
    await dlq.bind(DLX, "dead")
    vhost.nudge(r"^qcare\.ingest$")

    async def arrived() -> bool:
        return await depth(conn, DLQ) == 1

    # at most once (today's topology): dropped at the nack, this never comes
    await wait_for(arrived, 30, interval=0.1, what="the dead-lettered message in the DLQ")
    dead = await peek(conn, DLQ)
    assert set(dead) == {"poison-1"}
    death = dead["poison-1"]["x-death"][0]
    assert (death["queue"], death["reason"]) == (QUEUE, "rejected")


async def test_a_delay_queue_expiring_while_the_main_queue_is_unbound_keeps_the_message(
    vhost: Vhost, conn: AbstractConnection
) -> None:
    topology = await declare(conn, 5, (1,))
    await topology.queue.unbind(EXCHANGE, "update")  # the retry's target is unavailable
    delay_1s = "qcare.ingest.delay.1s"
    await publish(conn, ["retry-1"], routing_key=delay_1s)

    async def expired() -> bool:
        return await depth(conn, delay_1s) == 0

    await wait_for(expired, 30, interval=0.1, what="the 1 s delay to expire")
    assert await depth(conn, QUEUE) == 0
    await topology.queue.bind(EXCHANGE, "update")
    vhost.nudge(r"^qcare\.ingest\.delay\.1s$")

    async def back() -> bool:
        return await depth(conn, QUEUE) == 1

    # at most once (today's topology): dropped at expiry, this never comes
    await wait_for(back, 30, interval=0.1, what="the retried message back in the main queue")
    assert set(await peek(conn, QUEUE)) == {"retry-1"}


# -- (c) processes started before the migration -----------------------------------------


async def test_declare_uses_an_old_topology_as_it_is_and_says_so(
    vhost: Vhost, conn: AbstractConnection, caplog: pytest.LogCaptureFixture
) -> None:
    await declare_old_topology(conn)
    before = vhost.arguments()
    with caplog.at_level(logging.WARNING, logger="qcare_ingest.topology"):
        topology = await declare(conn, 5)  # what gateway, workers, dlq and status call
    old = {QUEUE, DLQ, *(f"qcare.ingest.delay.{s}s" for s in DELAYS)}  # DLQ: no delivery limit
    assert set(topology.outdated) == old
    warned = [r for r in caplog.records if getattr(r, "action", None) == "topology_outdated"]
    assert warned
    assert "qcare-ingest migrate" in warned[0].getMessage()
    assert vhost.arguments() == before  # nothing redeclared

    # and it works: publish through its exchange, consume from its queue
    await topology.exchange.publish(message("old-1"), "update", mandatory=True)
    got = await topology.queue.get(no_ack=False)
    assert got is not None
    assert got.message_id == "old-1"
    await got.ack()
    await topology.channel.close()


async def test_queues_declared_before_the_group_size_are_current(
    vhost: Vhost, conn: AbstractConnection
) -> None:
    """Issue 17: the group size only counts when a queue is created. Queues declared by the
    version before it (today's arguments without it) are neither outdated nor rebuilt, and
    on this single node a queue asking for three members gets one."""
    channel = await conn.channel()
    for name, arguments in queue_arguments(5, DELAYS).items():
        without = {k: v for k, v in arguments.items() if k not in GROUP}
        await channel.declare_queue(name, durable=True, arguments=without)
    await channel.close()
    topology = await declare(conn, 5)
    assert topology.outdated == ()
    await topology.channel.close()
    run = cli(vhost.env, "migrate")
    assert run.returncode == 0, run.stderr
    assert "rebuilding" not in run.stdout + run.stderr
    assert all(GROUP.keys().isdisjoint(args) for args in vhost.arguments().values())

    await (await declare(conn, 5)).channel.close()  # now created anew: three asked, one given
    vhost.ctl("delete_queue", DELAY_600)
    await (await declare(conn, 5)).channel.close()
    assert vhost.arguments()[DELAY_600] == delay_queue_arguments(600)
    rows = json.loads(vhost.ctl("list_queues", "name", "members", "--formatter", "json"))
    assert {len(r["members"]) for r in rows} == {1}


async def test_declare_with_another_delivery_limit_warns_instead_of_failing(
    vhost: Vhost, conn: AbstractConnection
) -> None:
    await (await declare(conn, 5)).channel.close()
    topology = await declare(conn, 7)
    assert topology.outdated == (QUEUE,)
    await topology.channel.close()
    # migrate converges it to the configured limit
    run = cli({**vhost.env, "QCARE_DELIVERY_LIMIT": "7"}, "migrate")
    assert run.returncode == 0, run.stderr
    assert_current(vhost, limit=7)


async def test_a_worker_runs_through_migrate_and_applies_every_message(
    vhost: Vhost, conn: AbstractConnection, procs: Procs, db: asyncpg.Pool
) -> None:
    """migrate deletes and re-creates qcare.ingest under a running worker: RabbitMQ cancels
    the worker's consumers, and the worker must start its session over, not sit idle."""
    await declare_old_topology(conn)
    worker = procs.worker(QCARE_AMQP_URL=vhost.amqp_url)
    await worker.consuming()
    run = uuid.uuid4().hex[:8]
    now = datetime.now(UTC)
    before = [f"mig-{run}-a{i}" for i in range(20)]
    for msg_id in before:
        await publish_as_gateway(conn, {"msg_id": msg_id, "accessionNo": f"ACC-{msg_id}"}, now)
    result = cli(vhost.env, "migrate")
    assert result.returncode == 0, result.stderr
    after = [f"mig-{run}-b{i}" for i in range(20)]
    for msg_id in after:
        await publish_as_gateway(conn, {"msg_id": msg_id, "accessionNo": f"ACC-{msg_id}"}, now)

    async def all_applied() -> bool:
        n = await db.fetchval(
            "SELECT count(*) FROM inbox WHERE msg_id = ANY($1::text[])", before + after
        )
        return int(n) == len(before) + len(after)

    await wait_for(all_applied, 30, interval=0.2, what="every message applied after migrate")
    assert sum(e.get("action") == "consuming" for e in worker.events()) >= 2
