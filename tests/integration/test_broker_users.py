"""Issue 14, least privilege in RabbitMQ: the gateway, the workers and the CLI run as users
with exactly topology.PERMISSIONS (what the README and scripts/broker-users.sh give them);
only `migrate` declares the topology.

RabbitMQ users are cluster-wide: each run names its own and deletes them after.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import aiohttp
import pytest

from qcare_ingest.topology import PERMISSIONS
from tests.conftest import Procs, RunEnv
from tests.support.http import wait_processed
from tests.support.isolation import rabbitmqctl
from tests.support.payloads import UPDATE, order
from tests.support.procs import ROOT, wait_for
from tests.support.queues import cli


@pytest.fixture
def broker_users(test_env: RunEnv) -> Iterator[dict[str, str]]:
    """service -> its AMQP URL, each user with exactly the documented permissions."""
    run = uuid.uuid4().hex[:8]
    urls: dict[str, str] = {}
    made: list[str] = []
    try:
        for service in ("gateway", "worker", "cli"):
            user, password = f"qcare_test_{service}_{run}", uuid.uuid4().hex
            rabbitmqctl("add_user", user, password)
            made.append(user)
            rabbitmqctl("set_permissions", "-p", test_env.name, user, *PERMISSIONS[service])
            urls[service] = (
                f"amqp://{user}:{password}@127.0.0.1:5672/{quote(test_env.name, safe='')}"
            )
        yield urls
    finally:
        for user in made:
            rabbitmqctl("delete_user", user)


async def test_each_service_works_with_only_its_permissions(
    broker_users: dict[str, str], procs: Procs, test_env: RunEnv, http: aiohttp.ClientSession
) -> None:
    migrated = await asyncio.to_thread(cli, test_env.env(), "migrate")  # guest: the admin
    assert migrated.returncode == 0, migrated.stderr
    gw = procs.gateway(QCARE_AMQP_URL=broker_users["gateway"])
    worker = procs.worker(QCARE_AMQP_URL=broker_users["worker"])
    await gw.ready(http)
    await worker.consuming()
    m = f"busers-{uuid.uuid4().hex[:8]}"
    for body in (order(m, "ACC-" + m), order(m, "ACC-" + m, name="SOMEONE ELSE")):
        async with http.post(
            gw.url + UPDATE, data=body, headers={"Content-Type": "application/json"}
        ) as resp:
            assert resp.status == 200, await resp.text()
        await wait_processed(http, gw, m)
    ops = {"QCARE_AMQP_URL": broker_users["cli"]}

    async def dead_lettered() -> str | None:  # the conflict, published to the DLX by the worker
        listing = await asyncio.to_thread(cli, test_env.env(**ops), "dlq", "list")
        assert listing.returncode == 0, listing.stderr
        return listing.stdout if m in listing.stdout else None

    await wait_for(dead_lettered, 30, what="the conflict in the dead-letter queue")
    shown = await asyncio.to_thread(cli, test_env.env(**ops), "dlq", "show", m)
    assert json.loads(shown.stdout)["reason"] == "conflict"
    status = await asyncio.to_thread(cli, test_env.env(**ops), "status")
    assert status.returncode == 0, status.stderr
    purged = await asyncio.to_thread(cli, test_env.env(**ops), "dlq", "purge", m, "--yes")
    assert purged.returncode == 0, purged.stderr
    for proc in (gw, worker):
        assert not [e for e in proc.events() if "ACCESS_REFUSED" in json.dumps(e)]
    # a user without configure permission cannot declare: it attached to migrate's topology
    for proc in (gw, worker):
        assert any(e.get("action") == "topology_attach" for e in proc.events())


def test_the_setup_script_gives_the_same_permissions() -> None:
    script = (ROOT / "scripts" / "broker-users.sh").read_text()
    for service in ("gateway", "worker", "cli"):
        configure, write, read = PERMISSIONS[service]
        line = f"permit \"$QCARE_{service.upper()}_AMQP_USER\" '{configure}' '{write}' '{read}'"
        assert line in script, line
