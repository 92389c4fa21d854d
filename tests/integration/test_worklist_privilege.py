"""The worklist's own database role (issue 16, least privilege as in issue 14): `migrate`
creates it from QCARE_WORKLIST_DATABASE_URL with SELECT on patients, orders and
order_services and INSERT on audit_log only, and the worklist serves with it."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from pydicom.dataset import Dataset

from tests.conftest import RunEnv
from tests.integration.test_least_privilege import as_role
from tests.support.queues import cli
from tests.support.worklist import WorklistProc, scu_find


async def test_the_worklist_role_only_reads_orders(test_env: RunEnv) -> None:
    role = f"qcare_test_wl_{uuid.uuid4().hex[:8]}"
    url = as_role(test_env.database_url, role, f"wl-{uuid.uuid4().hex}")
    owner = await asyncpg.connect(test_env.database_url)
    try:
        done = await asyncio.to_thread(
            cli, test_env.env(QCARE_WORKLIST_DATABASE_URL=url), "migrate"
        )
        assert done.returncode == 0, done.stderr
        accession = f"WP{uuid.uuid4().hex[:8].upper()}"
        await owner.execute(
            "INSERT INTO orders (accession_no, modality) VALUES ($1, 'CR')", accession
        )
        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval("SELECT count(*) FROM orders WHERE accession_no = $1",
                                       accession) == 1  # fmt: skip
            await conn.fetch("SELECT * FROM patients, order_services LIMIT 1")
            await conn.execute(  # it audits its reads: appends, never reads the trail
                "INSERT INTO audit_log (who, action, subject, outcome) "
                "VALUES ('dicom:TEST', 'worklist_query', 'x', 'shown')"
            )
            for sql in (
                "SELECT count(*) FROM inbox",
                "SELECT count(*) FROM journal",
                "SELECT count(*) FROM audit_log",
                f"UPDATE orders SET modality = 'DX' WHERE accession_no = '{accession}'",
                "DELETE FROM order_services",
                "INSERT INTO patients (patient_key) VALUES ('PASSNO:X')",
                "CREATE TABLE mine (x int)",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute(sql)
        finally:
            await conn.close()
        wl = WorklistProc(test_env.env(QCARE_WORKLIST_DATABASE_URL=url))
        try:
            await wl.listening()
            ds = Dataset()
            ds.AccessionNumber = accession
            found = await asyncio.to_thread(scu_find, wl.port, ds)
            assert found.status == 0x0000
            assert [str(i.AccessionNumber) for i in found.items] == [accession]
            # no audit row, no data: a trail it cannot append to ends the query with C001
            await owner.execute(f'REVOKE INSERT ON audit_log FROM "{role}"')
            found = await asyncio.to_thread(scu_find, wl.port, ds)
            assert (found.status, found.items) == (0xC001, [])
        finally:
            wl.close()
        await owner.execute("DELETE FROM orders WHERE accession_no = $1", accession)
    finally:
        if await owner.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
            await owner.execute(f'DROP OWNED BY "{role}"')
            await owner.execute(f'DROP ROLE "{role}"')
        await owner.close()
