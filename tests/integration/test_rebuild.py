"""Issue 15: `qcare-ingest rebuild` re-applies the journal into a fresh schema and compares.

The last test of the session runs it over everything the suite posted (conftest moves it
to the end): "identical" after every end-to-end test, fault tests included."""

from __future__ import annotations

import uuid

import aiohttp
import asyncpg
import pytest

from tests.conftest import RunEnv
from tests.support.http import post, wait_processed
from tests.support.payloads import order, vector
from tests.support.procs import Gateway, Worker
from tests.support.queues import cli


def _rebuild(test_env: RunEnv) -> tuple[int, str]:
    done = cli(test_env.env(), "rebuild", timeout=600)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout


async def test_rebuild_is_identical_and_names_what_drifted(
    stack: tuple[Gateway, list[Worker]],
    test_env: RunEnv,
    http: aiohttp.ClientSession,
    db: asyncpg.Pool,
) -> None:
    gw, _ = stack
    tag = uuid.uuid4().hex[:8]
    acc = f"RB-{tag}"
    first, second = f"rb-{tag}-1", f"rb-{tag}-2"
    assert (await post(http, gw, order(first, acc, modality="DX")))[0] == 200
    await wait_processed(http, gw, first)
    xml = vector("xml_01_help_page_sample.xml")
    xml = xml.replace(b"<msg_id>sample string 1</msg_id>", f"<msg_id>{second}</msg_id>".encode())
    assert (await post(http, gw, xml.replace(b"sample string 16", acc.encode()), "text/xml"))[
        0
    ] == 200
    await wait_processed(http, gw, second)

    code, out = _rebuild(test_env)
    assert (code, out.splitlines()[-1]) == (0, "identical"), out

    patient_key, modality = await db.fetchrow(
        "SELECT patient_key, modality FROM orders WHERE accession_no = $1", acc
    )
    name = await db.fetchval("SELECT name FROM patients WHERE patient_key = $1", patient_key)
    await db.execute("UPDATE orders SET modality = 'TAMPERED' WHERE accession_no = $1", acc)
    await db.execute(
        "UPDATE patients SET name = 'WONG SIU MING' WHERE patient_key = $1", patient_key
    )
    try:
        code, out = _rebuild(test_env)
        assert code == 1, out
        assert f'orders {acc} modality: live "TAMPERED", rebuilt "{modality}"' in out
        patient_lines = [line for line in out.splitlines() if line.startswith("patients ")]
        assert [line.split(" name: ")[1] for line in patient_lines] == ["live ***, rebuilt ***"]
        assert "WONG" not in out
        assert out.splitlines()[-1] == "2 difference(s)"
    finally:
        await db.execute("UPDATE orders SET modality = $2 WHERE accession_no = $1", acc, modality)
        await db.execute("UPDATE patients SET name = $2 WHERE patient_key = $1", patient_key, name)
    code, out = _rebuild(test_env)
    assert (code, out.splitlines()[-1]) == (0, "identical"), out
    assert not await db.fetchval(
        "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'qcare_rebuild_%'"
    ), "the rebuilt schema is dropped afterwards"


@pytest.mark.last
def test_the_whole_suite_rebuilds_identically(test_env: RunEnv) -> None:
    """Every message every earlier test got applied, re-applied from the journal in
    received_at order, gives the live tables exactly."""
    code, out = _rebuild(test_env)
    assert (code, out.splitlines()[-1]) == (0, "identical"), out
