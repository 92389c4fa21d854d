"""Issue 17: losing a RabbitMQ node of three. The cluster is this machine's installation run
three times beside the machine's own node (scripts/cluster, started once per session and
removed at the end); each test gets a vhost of its own on it and a database of its own.

Faults are real: kill -9 of the node leading the main queue, of the node the gateway is
connected to, and a clean stop of a follower while idle. The failover times measured are
printed (pytest -s shows them) and kept in the README.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import random
import shutil
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aio_pika
import aiohttp
import asyncpg
import pytest

from qcare_ingest import broker
from qcare_ingest.amqp_urls import where
from qcare_ingest.broker import BLOCKED, Publisher, connect
from qcare_ingest.console_dlq import BrokerLink
from qcare_ingest.db import migrate
from qcare_ingest.errors import PublishError
from qcare_ingest.store import init_connection
from qcare_ingest.topology import declare
from tests.conftest import PG_BASE, RunEnv, _unavailable
from tests.support.http import post
from tests.support.isolation import drop_database
from tests.support.payloads import UPDATE, order
from tests.support.procs import ROOT, Gateway, Proc, Worker, wait_for
from tests.support.queues import cli

SCRIPT = ROOT / "scripts" / "cluster"
QUEUE = "qcare.ingest"  # fixed names (SPEC)
DLQ = "qcare.ingest.dlq"
N_UPDATES = 2000
KILL_AFTER = 500  # accepted updates before the kill
FAILOVER_LIMIT_S = 15.0


def _sh(*args: str, timeout: float = 120) -> str:
    run = subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if run.returncode != 0:
        raise AssertionError(f"scripts/cluster {' '.join(args)}: {run.stderr[-2000:]}")
    return run.stdout


@dataclass
class Cluster:
    ports: tuple[int, ...]
    down: set[int] = field(default_factory=set)  # nodes a test stopped or killed

    def node(self, n: int) -> str:
        return f"qc{n}@localhost"

    def number(self, node: str) -> int:
        return int(node.split("@")[0].removeprefix("qc"))

    def number_at(self, where: str) -> int:
        """The node listening on "127.0.0.1:PORT" (what the clients log)."""
        return self.ports.index(int(where.rsplit(":", 1)[1])) + 1

    def urls(self, vhost: str, compact: bool) -> str:
        """QCARE_AMQP_URL naming the three nodes: host:port items after the first URL
        (compact), or full URLs."""
        path = "/" + quote(vhost, safe="")
        first = f"amqp://guest:guest@127.0.0.1:{self.ports[0]}{path}"
        if compact:
            return ",".join([first, *(f"127.0.0.1:{p}" for p in self.ports[1:])])
        return ",".join(f"amqp://guest:guest@127.0.0.1:{p}{path}" for p in self.ports)

    def ctl(self, *args: str) -> str:
        return _sh("ctl", *args, timeout=60)

    def queues(self, vhost: str) -> dict[str, dict[str, Any]]:
        columns = ("name", "leader", "members", "online")
        rows = json.loads(self.ctl("list_queues", "-p", vhost, *columns, "--formatter", "json"))
        return {row["name"]: row for row in rows}

    def raft(self, vhost: str, queue: str) -> list[dict[str, Any]]:
        out = _sh("queues", "quorum_status", queue, "-p", vhost, "--formatter", "json")
        rows: list[dict[str, Any]] = json.loads(out)
        return rows

    def kill(self, n: int) -> float:
        self.down.add(n)
        _sh("kill", str(n))
        return time.time()

    def start(self, n: int) -> None:
        _sh("start", str(n))
        self.down.discard(n)

    def stop(self, n: int) -> None:
        self.down.add(n)
        _sh("stop", str(n))


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    if not Path("/usr/lib/rabbitmq/bin/rabbitmq-server").exists():
        _unavailable("RabbitMQ is not installed here (scripts/cluster runs its nodes)")
    if os.geteuid() != 0 and shutil.which("runuser") is None:
        _unavailable("scripts/cluster runs the nodes as the rabbitmq user: run as root")
    ports = tuple(int(p) for p in os.environ.get("QCARE_CLUSTER_PORTS", "5681 5682 5683").split())
    try:
        _sh("up", timeout=180)
    except AssertionError as exc:
        _unavailable(str(exc))
    yield Cluster(ports)
    _sh("down", timeout=120)


@dataclass
class Site:
    """A vhost on the cluster and a database, with the processes a test started."""

    cluster: Cluster
    vhost: str
    database_url: str
    db: asyncpg.Pool
    started: list[Proc] = field(default_factory=list)

    def env(self, compact: bool = True, **extra: str) -> dict[str, str]:
        return {
            "QCARE_AMQP_URL": self.cluster.urls(self.vhost, compact),
            "QCARE_DATABASE_URL": self.database_url,
            "QCARE_LOG_LEVEL": "INFO",
            "QCARE_API_KEYS": "",
            **extra,
        }

    def gateway(self, compact: bool = True) -> Gateway:
        gw = Gateway(self.env(compact))
        self.started.append(gw)
        return gw

    def worker(self, compact: bool = True) -> Worker:
        w = Worker(self.env(compact), concurrency=64)
        self.started.append(w)
        return w


@pytest.fixture
async def site(cluster: Cluster) -> AsyncIterator[Site]:
    name = f"qcare_cluster_{uuid.uuid4().hex[:10]}"
    cluster.ctl("add_vhost", name)
    cluster.ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    admin = await asyncpg.connect(PG_BASE.rstrip("/") + "/postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    database_url = PG_BASE.rstrip("/") + "/" + name
    await migrate(database_url)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4, init=init_connection)
    assert pool is not None
    s = Site(cluster, name, database_url, pool)
    try:
        yield s
    finally:
        for proc in s.started:
            proc.close()
        await pool.close()
        await drop_database(PG_BASE, name)
        for n in sorted(cluster.down):
            cluster.start(n)  # a test that failed half-way left it down
        cluster.ctl("delete_vhost", name)


# -- the load and what the processes logged -------------------------------------------------


@dataclass
class Load:
    """Posts updates through the gateway as QCare would: an update that got anything but
    200 is posted again (same msg_id) until it gets one. (sent, answered, status) of each
    attempt, wall-clock."""

    prefix: str
    attempts: list[tuple[float, float, int]] = field(default_factory=list)
    accepted: set[str] = field(default_factory=set)

    async def run(
        self, http: aiohttp.ClientSession, gw: Gateway, n: int, concurrency: int = 24
    ) -> None:
        ids = iter(range(n))
        give_up = time.monotonic() + 120

        async def poster() -> None:
            for i in ids:
                msg_id = f"{self.prefix}{i}"
                while time.monotonic() < give_up:
                    sent = time.time()
                    try:
                        status, _ = await post(http, gw, order(msg_id, f"ACC-{msg_id}"))
                    except (aiohttp.ClientError, TimeoutError):
                        status = 0
                    self.attempts.append((sent, time.time(), status))
                    if status == 200:
                        self.accepted.add(msg_id)
                        break
                    assert status in (0, 503), f"{msg_id}: {status}"
                    await asyncio.sleep(0.1)

        await asyncio.gather(*(poster() for _ in range(concurrency)))

    def failures_after(self, t: float) -> list[tuple[float, float, int]]:
        return [a for a in self.attempts if a[2] != 200 and a[1] >= t]

    def first_200_sent_after(self, t: float) -> float:
        return min(
            answered for sent, answered, status in self.attempts if status == 200 and sent >= t
        )


def _ts(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["ts"]).timestamp()


def node_of(proc: Proc, cluster: Cluster, before: float | None = None) -> int:
    """The node `proc` connected to last (before `before`, wall-clock)."""
    nodes = [
        cluster.number_at(e["node"])
        for e in proc.events()
        if e.get("action") == "broker_node" and (before is None or _ts(e) <= before)
    ]
    assert nodes, f"{proc.module} never connected: {proc.text()[-2000:]}"
    return nodes[-1]


def node_after(proc: Proc, cluster: Cluster, t: float) -> int | None:
    """The node `proc` connected to first at or after `t` (wall-clock), if it did."""
    nodes = [
        (_ts(e), cluster.number_at(e["node"]))
        for e in proc.events()
        if e.get("action") == "broker_node" and _ts(e) >= t
    ]
    return min(nodes)[1] if nodes else None


def first_after(proc: Proc, action: str, t: float) -> float | None:
    times = [_ts(e) for e in proc.events() if e.get("action") == action and _ts(e) >= t]
    return min(times) if times else None


async def applied(db: asyncpg.Pool, prefix: str) -> int:
    return int(
        await db.fetchval(
            "SELECT count(*) FROM inbox WHERE msg_id LIKE $1 || '%' AND status = 'applied'",
            prefix,
        )
    )


async def dlq_depth(cluster: Cluster, vhost: str) -> int:
    conn = await connect(cluster.urls(vhost, compact=True), timeout=10)
    try:
        channel = await conn.channel()
        queue = await channel.declare_queue(DLQ, passive=True)
        return int(queue.declaration_result.message_count or 0)
    finally:
        await conn.close()


async def wait_three_members(cluster: Cluster, vhost: str, timeout: float = 60) -> float:
    """Until every quorum queue of the vhost has its three members online, and each
    follower's log has reached the leader's commit index (caught up). Seconds taken."""
    started = time.monotonic()

    async def caught_up() -> bool:
        queues = await asyncio.to_thread(cluster.queues, vhost)
        if not queues or any(
            len(q["online"]) != 3 or len(q["members"]) != 3 for q in queues.values()
        ):
            return False
        rows = await asyncio.to_thread(cluster.raft, vhost, QUEUE)
        leader = [r for r in rows if r["Raft State"] == "leader"]
        if len(rows) != 3 or len(leader) != 1:
            return False
        return all(r["Commit Index"] >= leader[0]["Commit Index"] for r in rows)

    await wait_for(caught_up, timeout, interval=0.5, what="three members online, caught up")
    return time.monotonic() - started


def say(line: str) -> None:
    print(f"\n[cluster] {line}", flush=True)


# -- the tests ----------------------------------------------------------------------------------


async def _kill_under_load(site: Site, http: aiohttp.ClientSession, victim_of: str) -> None:
    cluster = site.cluster
    if victim_of == "leader":
        # The first process to declare the topology makes its node the queue's leader
        # (client-local): a worker on the leader's node is then sure to lose its node.
        first = site.worker()
        await first.consuming(timeout=60)
        gw = site.gateway()
    else:
        # The topology declared through node 1 (its leader); a gateway on another node,
        # so that this kill is not the leader's again.
        conn = await connect(cluster.urls(site.vhost, compact=True).split(",")[0], 10)
        await (await declare(conn, 5)).channel.close()
        await conn.close()
        gw = await _gateway_off(site, http, avoid=1)
        first = site.worker()
    second = site.worker(compact=False)
    await asyncio.gather(gw.ready(http, timeout=60), first.consuming(60), second.consuming(60))
    async with http.get(gw.url + "/readyz") as resp:
        assert resp.status == 200, await resp.text()
    prefix = f"c{uuid.uuid4().hex[:6]}-"
    load = Load(prefix)
    posting = asyncio.create_task(load.run(http, gw, N_UPDATES))
    await wait_for(lambda: _ready(len(load.accepted) >= KILL_AFTER), 60, what="load under way")

    leader = cluster.number(cluster.queues(site.vhost)[QUEUE]["leader"])
    victim = leader if victim_of == "leader" else node_of(gw, cluster)
    workers = [first, second]
    on_victim = [w for w in workers if node_of(w, cluster) == victim]
    killed_at = cluster.kill(victim)
    await asyncio.wait_for(posting, 150)
    restarting = asyncio.create_task(asyncio.to_thread(cluster.start, victim))

    # every accepted update applied exactly once, nothing dead-lettered
    assert len(load.accepted) == N_UPDATES
    await wait_for(
        lambda: _count_is(site.db, prefix, N_UPDATES), 90, interval=0.2, what="all applied"
    )
    await restarting
    outcomes = Counter(
        msg_id for w in workers for msg_id, outcome in w.outcomes() if outcome == "applied"
    )
    assert set(outcomes) == load.accepted
    assert max(outcomes.values()) == 1
    orders = await site.db.fetchval(
        "SELECT count(*) FROM orders WHERE accession_no LIKE 'ACC-' || $1 || '%'", prefix
    )
    assert orders == N_UPDATES
    dead = await site.db.fetchval(
        "SELECT count(*) FROM inbox WHERE msg_id LIKE $1 || '%' AND status <> 'applied'", prefix
    )
    assert dead == 0
    assert await dlq_depth(cluster, site.vhost) == 0

    # the gateway's refusals stopped within 15 s of the kill
    failures = load.failures_after(killed_at)
    window = max((answered for _, answered, _ in failures), default=killed_at) - killed_at
    first_200 = load.first_200_sent_after(killed_at) - killed_at
    assert window <= FAILOVER_LIMIT_S, f"503s for {window:.1f}s after the kill"

    # the workers carry on by themselves; those on the killed node moved to another one
    resumed = {}
    for w in workers:
        assert w.popen.poll() is None, w.text()[-2000:]
        done = first_after(w, "processed", killed_at)
        assert done is not None, f"worker processed nothing after the kill: {w.text()[-2000:]}"
        resumed[w.pid] = done - killed_at
    # A process on the killed node reconnected to another one. Its first connection after
    # the kill is the one that counts: the victim is restarted before this check, and a
    # later reconnect (to any node, the victim included) is legitimate.
    for w in on_victim:
        assert node_after(w, cluster, killed_at) not in (None, victim), w.text()[-2000:]
    gw_moved = node_of(gw, cluster, before=killed_at) == victim
    if gw_moved:
        assert node_after(gw, cluster, killed_at) not in (None, victim), gw.text()[-2000:]
    await wait_three_members(cluster, site.vhost)
    say(
        f"kill -9 of {cluster.node(victim)} (the {victim_of}'s node; queue leader was "
        f"{cluster.node(leader)}) after {KILL_AFTER} of {N_UPDATES} accepted: "
        f"first 200 {first_200:.2f}s after, last 503 {window:.2f}s after "
        f"({len(failures)} refused attempts), workers processing again after "
        + ", ".join(
            f"{t:.2f}s" + (" (moved node)" if w in on_victim else "")
            for w in workers
            for t in [resumed[w.pid]]
        )
        + (", gateway moved node" if gw_moved else ", gateway kept its node")
    )


async def _gateway_off(site: Site, http: aiohttp.ClientSession, avoid: int) -> Gateway:
    """A gateway connected to another node than `avoid` (connect() picks one at random:
    start another while it picked that one)."""
    for _ in range(8):
        gw = site.gateway()
        await gw.ready(http, timeout=60)
        async with http.get(gw.url + "/readyz") as resp:  # connects the publisher
            assert resp.status == 200, await resp.text()
        if node_of(gw, site.cluster) != avoid:
            return gw
        gw.close()
    raise AssertionError(f"eight gateways in a row connected to node {avoid}")


async def _link_on(cluster: Cluster, vhost: str, node: int) -> BrokerLink:
    """The console's BrokerLink (the cluster's URL), connected to `node`: connect() picks
    one at random, so open links until one has picked it."""
    for _ in range(30):
        link = BrokerLink(cluster.urls(vhost, compact=True), None)
        conn = await link.connection()
        if cluster.number_at(where(str(conn.url))) == node:
            return link
        await link.forget()
    raise AssertionError(f"30 connections in a row avoided node {node}")


async def _ready(value: bool) -> bool:
    return value


async def _count_is(db: asyncpg.Pool, prefix: str, n: int) -> bool:
    return await applied(db, prefix) == n


@pytest.mark.slow
async def test_killing_the_queue_leader_loses_nothing(
    site: Site, http: aiohttp.ClientSession
) -> None:
    await _kill_under_load(site, http, victim_of="leader")


@pytest.mark.slow
async def test_killing_the_gateways_node_loses_nothing(
    site: Site, http: aiohttp.ClientSession
) -> None:
    await _kill_under_load(site, http, victim_of="gateway")


@pytest.mark.slow
async def test_a_node_stopped_while_idle_catches_up(
    site: Site, http: aiohttp.ClientSession
) -> None:
    cluster = site.cluster
    gw = site.gateway()
    await gw.ready(http, timeout=60)
    prefix = f"i{uuid.uuid4().hex[:6]}-"
    assert (await post(http, gw, order(f"{prefix}0", f"ACC-{prefix}0")))[0] == 200
    queues = cluster.queues(site.vhost)
    assert {len(q["members"]) for q in queues.values()} == {3}
    leader = cluster.number(queues[QUEUE]["leader"])
    victim = random.choice([n for n in (1, 2, 3) if n != leader])
    link = await _link_on(cluster, site.vhost, victim)
    cluster.stop(victim)
    # the console's link to RabbitMQ: it lost its node and comes back on another one
    async with link.channel() as channel:
        await channel.declare_queue(DLQ, passive=True)
    conn = link.usable()
    assert conn is not None
    assert cluster.number_at(where(str(conn.url))) != victim
    await link.forget()

    # two of three: intake and the CLI work on; the stopped node misses these updates
    load = Load(prefix)
    await load.run(http, gw, 200)
    assert len(load.accepted) == 200
    status = cli(site.env(), "status")
    assert status.returncode == 0, status.stderr

    cluster.start(victim)
    catch_up = await wait_three_members(cluster, site.vhost)
    worker = site.worker()
    await worker.consuming(timeout=60)
    await wait_for(lambda: _count_is(site.db, prefix, 200), 60, interval=0.2, what="all applied")
    say(f"{cluster.node(victim)} stopped while idle, 200 updates meanwhile: caught up "
        f"{catch_up:.2f}s after it was started again")  # fmt: skip


@pytest.mark.slow
async def test_a_resource_alarm_refuses_intake_at_once_and_loses_nothing(
    site: Site, http: aiohttp.ClientSession
) -> None:
    """A memory alarm (watermark 0: RabbitMQ blocks every publishing connection of the
    cluster). RabbitMQ tells a connection so when it next publishes: that publish waits out
    the publish timeout (503); from then on the gateway answers 503 without writing, says
    so on /readyz and in its log, keeps its connection, and takes updates again when the
    alarm clears; every update is applied once."""
    gw, worker = site.gateway(), site.worker()
    await asyncio.gather(gw.ready(http, timeout=60), worker.consuming(60))
    prefix = f"a{uuid.uuid4().hex[:6]}-"
    await Load(prefix + "before-").run(http, gw, 20)
    refused = f"{prefix}refused"
    with memory_alarm(site.cluster):
        for _ in range(2):  # the publish that learns of the alarm, then one refused at once
            body, json_type = order(refused, f"ACC-{refused}"), {"Content-Type": "application/json"}
            async with http.post(gw.url + UPDATE, data=body, headers=json_type) as resp:
                assert resp.status == 503, await resp.text()
                assert resp.headers["Retry-After"] == "5"
                assert "Retry later with the same msg_id" in await resp.text()
            await wait_for(lambda: _alarm_is(http, gw, True), 30, interval=0.2, what="alarm")
        events = gw.events()
        assert any(e.get("action") == "broker_blocked" for e in events)
        failed = [e.get("error", "") for e in events if e.get("action") == "publish_failed"]
        # the first one written, unconfirmed; the second refused before anything was written
        assert failed == [f"{BLOCKED}; not confirmed in time", BLOCKED], failed
    await wait_for(lambda: _alarm_is(http, gw, False), 60, interval=0.2, what="alarm cleared")
    status, _ = await post(http, gw, order(refused, f"ACC-{refused}"))  # the client's retry
    assert status == 200
    await Load(prefix + "after-").run(http, gw, 20)
    events = gw.events()
    assert any(e.get("action") == "broker_unblocked" for e in events)
    # the connection was kept through the alarm: connected once in the gateway's life
    assert sum(e.get("action") == "broker_connected" for e in events) == 1
    await wait_for(lambda: _count_is(site.db, prefix, 41), 60, interval=0.2, what="applied")


@pytest.mark.slow
async def test_a_connection_blocked_for_long_is_replaced(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RabbitMQ watches no heartbeats of a blocked connection, so one that died while
    blocked would look blocked until aiormq's own heartbeat timeout (minutes): the
    publisher replaces a connection blocked for BLOCKED_RECONNECT_S; the new one learns of
    the alarm on its first publish."""
    monkeypatch.setattr(broker, "BLOCKED_RECONNECT_S", 0.5)
    pub = Publisher(site.cluster.urls(site.vhost, compact=True), delivery_limit=5, timeout=2)
    try:
        await pub.publish(b"{}", "long-0", {})
        first = pub._conn
        with memory_alarm(site.cluster):
            with pytest.raises(PublishError, match="not confirmed in time"):
                await pub.publish(b"{}", "long-1", {})  # written, then told: blocked
            assert pub.blocked
            assert pub._conn is first  # kept
            with pytest.raises(PublishError, match="resource alarm"):
                await pub.publish(b"{}", "long-1", {})  # refused, nothing written
            await asyncio.sleep(0.6)  # the blocked spell outlasts BLOCKED_RECONNECT_S
            with pytest.raises(PublishError, match="resource alarm"):
                await pub.publish(b"{}", "long-1", {})  # refused, and the connection let go
            assert pub._conn is None
            assert await pub.ping()  # a new connection, not blocked until it publishes
            assert pub._conn not in (None, first)
        await wait_for(lambda: _publishes(pub, "long-1"), 60, interval=0.5, what="accepted")
    finally:
        await pub.close(grace=1)


async def _publishes(pub: Publisher, msg_id: str) -> bool:
    try:
        await pub.publish(b"{}", msg_id, {})
    except PublishError:
        return False
    return True


@contextlib.contextmanager
def memory_alarm(cluster: Cluster) -> Iterator[None]:
    """RabbitMQ's memory alarm, raised at once (watermark 0: cluster-wide, so the
    machine's own node is never touched), and the watermark put back on the way out."""
    expr = "vm_memory_monitor:get_vm_memory_high_watermark()."
    watermark = cluster.ctl("eval", expr).strip()
    float(watermark)  # a fraction (scripts/cluster sets no absolute limit)
    cluster.ctl("set_vm_memory_high_watermark", "0")
    try:
        yield
    finally:
        cluster.ctl("set_vm_memory_high_watermark", watermark)


async def _alarm_is(http: aiohttp.ClientSession, gw: Gateway, on: bool) -> bool:
    async with http.get(gw.url + "/readyz") as resp:
        body = await resp.json()
        return resp.status == (503 if on else 200) and body["broker_alarm"] is on


async def test_connect_skips_nodes_that_are_down(test_env: RunEnv) -> None:
    """Not slow, no cluster: the machine's node listed with two ports nobody listens on;
    connect() finds it whatever the shuffle, within its timeout."""
    live = test_env.amqp_url
    dead = [f"127.0.0.1:{_closed_port()}" for _ in range(2)]
    for _ in range(6):
        started = time.monotonic()
        conn = await connect(",".join([live, *dead]), timeout=5)
        assert time.monotonic() - started < 5
        await conn.close()
    before = _open_connections()
    gc.disable()  # a failed node's connection is cyclic garbage: seen, not collected, below
    try:
        with pytest.raises(ConnectionError) as info:
            await connect(",".join([live.replace(":5672/", f":{_closed_port()}/"), *dead]), 3)
        # the nodes that failed left no connection open: one left to aio-pika's __del__
        # cannot be closed when the collector runs outside the event loop's thread
        assert _open_connections() - before == set()
    finally:
        gc.enable()
    assert any("other nodes" in note for note in info.value.__notes__)
    assert "guest" not in " ".join(info.value.__notes__)


def _open_connections() -> set[int]:
    """Connections not closed that the collector tracks, garbage included."""
    found = [o for o in gc.get_objects() if isinstance(o, aio_pika.Connection)]
    return {id(o) for o in found if not o.is_closed}


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port  # closed again on return: nothing listens there
