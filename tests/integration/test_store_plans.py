"""The worker's statements keep index plans, planned once, even when the database is new.

The worker's sessions (store.SESSION_SETTINGS) use generic plans: PostgreSQL plans each
statement once per connection. A generic plan made while the tables are empty, as they
are in a new database, is kept as they grow; left to the statistics it would be
sequential scans and hash joins (PostgreSQL's CPU per message 2.5 x, lag p99 in seconds).

The test runs every kind of statement the worker sends on a new, empty database, through a
connection with the worker's settings: a batch that creates a patient, an order and its
lines; a duplicate and a conflicting msg_id; a recorded failure and a conflict. Then it
reads the plan of each statement the connection prepared and requires that every table
is read through an index condition (by key), with no hash or merge join.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from qcare_ingest.db import migrate
from qcare_ingest.dto import QCareDto
from qcare_ingest.envelope import Envelope
from qcare_ingest.errors import ConflictError
from qcare_ingest.store import SESSION_SETTINGS, apply_batch, init_connection, record_failure
from tests.conftest import RunEnv

TABLES = {"inbox", "inbox_conflicts", "journal", "patients", "orders", "order_services"}
T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def envelope(msg_id: str, accession: str, i: int, name: str = "CHAN TAI MAN") -> Envelope:
    dto = QCareDto.model_validate(
        {
            "msg_id": msg_id,
            "hkid": "A1234563",
            "name": name,
            "accessionNo": accession,
            "modality": "CR",
            "studyDate": "2026-12-03T09:30:00",
            "services": [
                {"studyDesc": "CHEST PA", "noOfImages": 1, "warningTime": 0},
                {"studyDesc": "KUB", "noOfImages": 2, "warningTime": 0},
            ],
        }
    )
    return Envelope(msg_id, T0 + timedelta(microseconds=i), dto.encode(), dto)


@pytest.fixture
async def new_database(test_env: RunEnv) -> AsyncIterator[str]:
    name = f"qcare_plans_{uuid.uuid4().hex[:10]}"
    url = test_env.pg_base.rstrip("/") + "/" + name
    await migrate(url)
    yield url
    admin = await asyncpg.connect(test_env.pg_base.rstrip("/") + "/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found += nodes(child)
    return found


async def worker_statements(url: str) -> dict[str, list[dict[str, Any]]]:
    """Each statement the worker's connection prepared that names a table of ours, with
    the nodes of its generic plan."""
    conn = await asyncpg.connect(url, server_settings=SESSION_SETTINGS)
    try:
        await init_connection(conn)
        run = uuid.uuid4().hex[:8]
        first = [envelope(f"{run}-{i}", f"{run}-ACC-{i % 3}", i) for i in range(6)]
        results = await apply_batch(conn, first)
        assert {type(r).__name__ for r in results} == {"Outcome"}
        again = [first[0], envelope(first[1].msg_id, "OTHER", 1, name="CHAN SIU MING")]
        duplicate, conflict = await apply_batch(conn, again)
        assert getattr(duplicate, "status", None) == "duplicate"
        assert isinstance(conflict, ConflictError)
        await record_failure(conn, envelope(f"{run}-x", f"{run}-ACC-x", 9), "rejected", "data")
        await record_failure(conn, again[1], "conflict", "conflict")
        prepared = await conn.fetch(
            "SELECT name, statement, cardinality(parameter_types) AS n FROM pg_prepared_statements"
        )
        plans = {}
        for row in prepared:
            words = set(row["statement"].replace("(", " ").replace(",", " ").split())
            if not words & TABLES or row["statement"].lstrip().upper().startswith("EXPLAIN"):
                continue
            args = ", ".join(["NULL"] * row["n"])
            name = row["name"].replace('"', '""')
            explained = await conn.fetchval(f'EXPLAIN (FORMAT JSON) EXECUTE "{name}"({args})')
            plans[row["statement"]] = nodes(explained[0]["Plan"])  # json: init_connection
        return plans
    finally:
        await conn.close()


def not_by_key(plan: list[dict[str, Any]]) -> list[str]:
    """The nodes that read one of our tables other than by an index condition (a
    sequential or a whole-index scan), and every hash or merge join."""
    return [
        f"{node['Node Type']} {node.get('Relation Name', '')}".strip()
        for node in plan
        if node["Node Type"] in ("Hash Join", "Merge Join")
        or (
            node.get("Relation Name") in TABLES
            and "Scan" in node["Node Type"]
            and "Index Cond" not in node
        )
    ]


async def test_the_worker_statements_use_indexes_when_planned_on_empty_tables(
    new_database: str,
) -> None:
    plans = await worker_statements(new_database)
    # claim, the held digests, two locks, the write, a failure, its journal copy, a conflict
    assert len(plans) >= 8, list(plans)
    bad = {" ".join(sql.split())[:60]: not_by_key(plan) for sql, plan in plans.items()}
    assert not {sql: nodes for sql, nodes in bad.items() if nodes}
    scanned = {node.get("Relation Name") for plan in plans.values() for node in plan}
    assert {"inbox", "patients", "orders", "order_services"} <= scanned
