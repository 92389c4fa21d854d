"""The worklist's SQL narrowing must return every order whose item matches: the Modality an
item shows is the stored value cleaned to CS (upper case, `_` for what CS cannot hold), so
a key naming that value must find the order."""

from __future__ import annotations

import uuid

import asyncpg
from pydicom.dataset import Dataset

from qcare_ingest.worklist import items, query, reads
from tests.conftest import RunEnv


async def test_a_modality_key_finds_the_modality_an_item_shows(test_env: RunEnv) -> None:
    acc = f"WM{uuid.uuid4().hex[:8].upper()}"
    pool = await asyncpg.create_pool(test_env.database_url, min_size=1, max_size=1)
    assert pool is not None
    try:
        await pool.execute(
            "INSERT INTO orders (accession_no, study_at, modality)"
            " VALUES ($1, '2031-07-01T09:00+08', 'x-ray')",
            acc,
        )
        shown = items.text("x-ray", "CS")
        assert shown == "X_RAY"
        sps = Dataset()
        sps.Modality = shown
        sps.ScheduledProcedureStepStartDate = "20310701"
        ds = Dataset()
        ds.AccessionNumber = acc
        ds.ScheduledProcedureStepSequence = [sps]
        q = query.parse(ds)
        rows = await reads.fetch(pool, q, timeout=5)
        found = [r for r in rows if query.matches(q, items.item(r, {}, q.wanted))]
        assert [r["accession_no"] for r in found] == [acc]
    finally:
        # written here, not journaled: the session's last test rebuilds from the journal
        await pool.execute("DELETE FROM orders WHERE accession_no = $1", acc)
        await pool.close()
