"""The worklist's pool against its association limit: every C-FIND holds a connection for
its cursor while it streams, and writes its audit row (before the first item) on another.
With as many associations as connections, ten queries at once each held a cursor and
waited for a connection for its audit row that none could free: every one timed out."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from qcare_ingest.worklist import query, scp
from tests.conftest import RunEnv


async def test_audit_rows_get_a_connection_while_every_association_streams(
    test_env: RunEnv,
) -> None:
    acc = f"WP{uuid.uuid4().hex[:8].upper()}"
    owner = await asyncpg.connect(test_env.database_url)
    try:
        await owner.execute(
            "INSERT INTO orders (accession_no, study_at) VALUES ($1, '2031-06-01T09:00+08')",
            acc,
        )
    finally:
        await owner.close()
    q = query.Query(entries=())  # no keys: every order, ours among them

    def scenario() -> None:
        db = scp.Database(test_env.database_url, timeout=2)
        streams = [db.rows(q) for _ in range(scp.MAX_ASSOCIATIONS)]
        try:
            for rows in streams:  # each holds its cursor's connection, as mid-C-FIND
                assert next(rows)
            for _ in streams:  # each then writes its audit row
                db.audit("dicom:TEST", "AccessionNumber", "127.0.0.1:1", "shown")
        finally:
            for rows in streams:
                rows.close()
            db.close()

    try:
        await asyncio.to_thread(scenario)
    finally:
        # written here, not journaled: the session's last test rebuilds from the journal
        owner = await asyncpg.connect(test_env.database_url)
        try:
            await owner.execute("DELETE FROM orders WHERE accession_no = $1", acc)
        finally:
            await owner.close()
