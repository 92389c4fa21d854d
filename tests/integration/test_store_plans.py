"""The worker's statements keep index plans, whatever the tables held when they were planned.

The worker's sessions (store.SESSION_SETTINGS) use generic plans: PostgreSQL plans each
statement once per connection and keeps the plan until the next ANALYZE of its tables. A
generic plan made while the tables are empty, as they are in a new database, would be left
to statistics that say "empty": sequential scans, hash joins, or an index read whole and
joined to the batch's arrays (PostgreSQL's CPU per message 2.5 x, lag p99 in seconds).

Each kind of batch the worker applies is planned here on empty tables, on a connection of
its own with the worker's settings, inside a transaction that is rolled back (so that the
next one finds the tables empty too): a patient-only update, an order-only update, and a
batch that creates patients, orders and lines, then a duplicate, a conflicting msg_id, a
recorded failure and a conflict. Then every statement each connection prepared must read
every table through an index condition on its key's first column, with no hash or merge
join.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from qcare_ingest.db import migrate
from qcare_ingest.dto import QCareDto
from qcare_ingest.envelope import Envelope
from qcare_ingest.errors import ConflictError
from qcare_ingest.store import (
    SESSION_SETTINGS,
    Outcome,
    apply_batch,
    init_connection,
    record_failure,
)
from tests.conftest import RunEnv
from tests.support.isolation import drop_database

# each table the worker reads, and the first column of the key it must be read by
KEYS = {
    "inbox": "msg_id",
    "inbox_conflicts": "msg_id",
    "journal": "msg_id",
    "patients": "patient_key",
    "orders": "accession_no",
    "order_services": "accession_no",
}
T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)

Plans = dict[str, list[dict[str, Any]]]


def envelope(msg_id: str, i: int, **fields: Any) -> Envelope:
    dto = QCareDto.model_validate({"msg_id": msg_id, **fields})
    return Envelope(msg_id, T0 + timedelta(microseconds=i), dto.encode(), dto)


PATIENT = {"hkid": "A1234563", "name": "CHAN TAI MAN"}
LINES = [
    {"studyDesc": "CHEST PA", "noOfImages": 1, "warningTime": 0},
    {"studyDesc": "KUB", "noOfImages": 2, "warningTime": 0},
]


def order(accession: str) -> dict[str, Any]:
    return {"accessionNo": accession, "modality": "CR", "studyDate": "2026-12-03T09:30:00",
            "services": LINES}  # fmt: skip


async def patient_only(conn: asyncpg.Connection, run: str) -> None:
    assert await apply_batch(conn, [envelope(f"{run}-p", 0, **PATIENT)]) == [Outcome("applied")]


async def order_only(conn: asyncpg.Connection, run: str) -> None:
    (result,) = await apply_batch(conn, [envelope(f"{run}-o", 0, **order(f"{run}-ACC"))])
    assert result == Outcome("applied")


async def everything(conn: asyncpg.Connection, run: str) -> None:
    first = [envelope(f"{run}-{i}", i, **PATIENT, **order(f"{run}-ACC-{i % 3}")) for i in range(6)]
    assert all(isinstance(r, Outcome) for r in await apply_batch(conn, first))
    other = envelope(first[1].msg_id, 1, **PATIENT, **order("OTHER"))
    duplicate, conflict = await apply_batch(conn, [first[0], other])
    assert duplicate == Outcome("duplicate")
    assert isinstance(conflict, ConflictError)
    failed = envelope(f"{run}-x", 9, **PATIENT, **order(f"{run}-ACC-x"))
    await record_failure(conn, failed, "rejected", "data")
    await record_failure(conn, other, "conflict", "conflict")


@pytest.fixture
async def new_database(test_env: RunEnv) -> AsyncIterator[str]:
    name = f"qcare_plans_{uuid.uuid4().hex[:10]}"
    url = test_env.pg_base.rstrip("/") + "/" + name
    await migrate(url)
    yield url
    await drop_database(test_env.pg_base, name)


def nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found += nodes(child)
    return found


async def planned_empty(
    url: str, batch: Callable[[asyncpg.Connection, str], Awaitable[None]]
) -> Plans:
    """`batch` run on a new connection with the worker's settings, on empty tables (rolled
    back): the generic plan of each statement it prepared that names a table of ours."""
    conn = await asyncpg.connect(url, server_settings=SESSION_SETTINGS)
    try:
        await init_connection(conn)
        rollback = conn.transaction()
        await rollback.start()
        try:
            await batch(conn, uuid.uuid4().hex[:8])
            prepared = await conn.fetch(
                "SELECT name, statement, cardinality(parameter_types) AS n"
                "  FROM pg_prepared_statements"
            )
            plans = {}
            for row in prepared:
                words = set(row["statement"].replace("(", " ").replace(",", " ").split())
                if not words & KEYS.keys() or row["statement"].lstrip().startswith("EXPLAIN"):
                    continue
                args = ", ".join(["NULL"] * row["n"])  # a generic plan is the same for any
                name = row["name"].replace('"', '""')
                explained = await conn.fetchval(f'EXPLAIN (FORMAT JSON) EXECUTE "{name}"({args})')
                plans[row["statement"]] = nodes(explained[0]["Plan"])  # json: init_connection
            return plans
        finally:
            await rollback.rollback()
    finally:
        await conn.close()


def not_by_key(plan: list[dict[str, Any]]) -> list[str]:
    """Each hash or merge join, and each scan of one of our tables that is not bounded by
    a condition on its key's first column (a sequential or a whole-index scan)."""
    bad = []
    for node in plan:
        table = node.get("Relation Name")
        condition = node.get("Index Cond") or node.get("Recheck Cond") or ""
        if node["Node Type"] in ("Hash Join", "Merge Join") or (
            table in KEYS and "Scan" in node["Node Type"] and KEYS[table] not in condition
        ):
            bad.append(f"{node['Node Type']} {table or ''}".strip())
    return bad


@pytest.mark.parametrize("batch", [patient_only, order_only, everything])
async def test_the_worker_statements_read_by_key_when_planned_on_empty_tables(
    new_database: str, batch: Callable[[asyncpg.Connection, str], Awaitable[None]]
) -> None:
    plans = await planned_empty(new_database, batch)
    # at least the claim, two locks (or one) and the write; `everything` adds the held
    # digests, a failure, its journal copy and a conflict
    assert len(plans) >= (8 if batch is everything else 3), list(plans)
    bad = {" ".join(sql.split())[:60]: not_by_key(plan) for sql, plan in plans.items()}
    assert not {sql: found for sql, found in bad.items() if found}
    scanned = {
        node.get("Relation Name")
        for plan in plans.values()
        for node in plan
        if "Scan" in node["Node Type"]
    }
    assert scanned, "no table was read: nothing was checked"
