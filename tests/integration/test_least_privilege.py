"""Issue 14, least privilege: `migrate` creates the gateway's and the workers' login roles
from their URLs and grants each only what it needs; the services run as them.

Roles are cluster-wide in PostgreSQL, so each test run names its own and drops them after.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import pytest

from tests.conftest import Procs, RunEnv
from tests.support.http import wait_processed
from tests.support.payloads import UPDATE, order
from tests.support.queues import cli


@dataclass(frozen=True)
class Roles:
    gateway_url: str
    worker_url: str

    def env(self) -> dict[str, str]:
        return {
            "QCARE_GATEWAY_DATABASE_URL": self.gateway_url,
            "QCARE_WORKER_DATABASE_URL": self.worker_url,
        }


def as_role(url: str, role: str, password: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{role}:{password}@{parts.hostname}:{parts.port}"))


async def _drop_roles(test_env: RunEnv, names: list[str]) -> None:
    owner = await asyncpg.connect(test_env.database_url)
    try:
        for name in names:
            if await owner.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", name):
                await owner.execute(f'DROP OWNED BY "{name}"')  # its grants in this database
                await owner.execute(f'DROP ROLE "{name}"')
    finally:
        await owner.close()


@pytest.fixture
async def roles(test_env: RunEnv) -> AsyncIterator[Roles]:
    """This run's two roles, made by `qcare-ingest migrate` (twice at once: idempotent and
    safe concurrently), dropped afterwards."""
    run = uuid.uuid4().hex[:8]
    names = [f"qcare_test_gw_{run}", f"qcare_test_wk_{run}"]
    made = Roles(
        as_role(test_env.database_url, names[0], f"gw-{uuid.uuid4().hex}"),
        as_role(test_env.database_url, names[1], f"wk-{uuid.uuid4().hex}"),
    )
    try:
        results = await asyncio.gather(
            *(asyncio.to_thread(cli, test_env.env(**made.env()), "migrate") for _ in range(2))
        )
        for result in results:
            assert result.returncode == 0, result.stderr
        yield made
    finally:
        await _drop_roles(test_env, names)


async def test_the_gateway_role_cannot_write_and_audit_rows_cannot_change(
    roles: Roles, test_env: RunEnv
) -> None:
    gateway = await asyncpg.connect(roles.gateway_url)
    worker = await asyncpg.connect(roles.worker_url)
    try:
        superuser = "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
        assert await gateway.fetchval(superuser) is False
        assert await worker.fetchval(superuser) is False
        refused = [
            (gateway, "INSERT INTO orders (accession_no) VALUES ('ACC-forged')"),
            (gateway, "UPDATE patients SET name = 'overwritten'"),
            (gateway, "DELETE FROM inbox"),
            (gateway, "UPDATE audit_log SET who = 'someone else'"),
            (gateway, "DELETE FROM audit_log"),
            (gateway, "SELECT count(*) FROM audit_log"),  # it appends, it does not read
            (gateway, "CREATE TABLE mine (x int)"),
            (worker, "INSERT INTO audit_log (who, action, subject, outcome) "
                     "VALUES ('w', 'x', 'y', 'shown')"),
            (worker, "DELETE FROM audit_log"),
            (worker, "DELETE FROM orders"),
            (worker, "CREATE TABLE mine (x int)"),
        ]  # fmt: skip
        for conn, sql in refused:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(sql)
        # what each does need
        await gateway.execute(
            "INSERT INTO audit_log (who, action, subject, outcome) VALUES ('t', 'x', 'y', 'shown')"
        )
        await gateway.fetch("SELECT * FROM orders LIMIT 1")
        scratch = worker.transaction()
        await scratch.start()
        await worker.execute("INSERT INTO patients (patient_key) VALUES ('PASSNO:LP-TEST')")
        await worker.execute("UPDATE patients SET name = 'x' WHERE patient_key = 'PASSNO:LP-TEST'")
        await scratch.rollback()
    finally:
        await gateway.close()
        await worker.close()


async def test_the_services_run_as_their_roles(
    roles: Roles, procs: Procs, test_env: RunEnv, http: aiohttp.ClientSession, db: asyncpg.Pool
) -> None:
    """Posting, applying, reading (audited) and the message status, end to end, with each
    service connected as its own role: the grants are enough."""
    gw = procs.gateway(**roles.env())
    worker = procs.worker(**roles.env())
    await gw.ready(http)
    await worker.consuming()
    m = f"roles-{uuid.uuid4().hex[:8]}"
    async with http.post(
        gw.url + UPDATE, data=order(m, "ACC-" + m), headers={"Content-Type": "application/json"}
    ) as resp:
        assert resp.status == 200
    view = await wait_processed(http, gw, m)
    assert view["status"] == "applied", json.dumps(view)
    async with http.get(f"{gw.url}/api/v1/qcare/orders/ACC-{m}") as resp:
        assert resp.status == 200
        assert (await resp.json())["name"] == "CHAN TAI MAN"
    sessions = await db.fetch(
        "SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = $1 AND usename LIKE $2",
        test_env.name,
        "qcare_test_%",
    )
    assert {r["usename"] for r in sessions} == {
        urlsplit(roles.gateway_url).username,
        urlsplit(roles.worker_url).username,
    }
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE subject = $1", f"ACC-{m}") == 1
