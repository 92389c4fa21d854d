"""Issue 2: gateway -> RabbitMQ -> worker -> PostgreSQL, end to end, real services."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.support.http import get, post, publish_as_gateway, wait_processed
from tests.support.payloads import help_page_sample, order
from tests.support.procs import Gateway, Worker, wait_for

JSON_TYPES = ["application/json", "text/json", "text/html"]


async def wait_applied(http: aiohttp.ClientSession, gw: Gateway, msg_id: str) -> Any:
    return await wait_processed(http, gw, msg_id)


SAMPLE_LINE = {
    "studyDesc": "sample string 1",
    "bodypart": "sample string 2",
    "noOfImages": 1,
    "warningTime": 3,
}


def assert_sample_order(view: dict[str, Any], accession: str, msg_id: str) -> None:
    expected = {
        "accessionNo": accession,
        "msg_id": msg_id,
        "name": "sample string 2",
        "hkid": "sample string 3",
        "passno": "sample string 4",
        "gender": "sample string 5",
        "dob": "sample string 6",
        "studyDate": "2025-10-26T15:51:31.8166249+08:00",
        "studyTime": "sample string 7",
        "location": "sample string 8",
        "chitno": "sample string 9",
        "plan_type": "sample string 10",
        "ref_doctor": "sample string 11",
        "ref_clinic_fullname": "sample string 12",
        "csCode": "sample string 13",
        "modality": "sample string 14",
        "address": "sample string 15",
        "refClinicFullname": "sample string 17",
        "examClinicFullName": "sample string 18",
        "services": [SAMPLE_LINE, SAMPLE_LINE],
    }
    for key, value in expected.items():
        assert view[key] == value, key
    assert view["updated_at"]


async def test_help_page_sample_verbatim_is_applied(
    stack: tuple[Gateway, list[Worker]], http: aiohttp.ClientSession
) -> None:
    gw, _ = stack
    status, body = await post(http, gw, help_page_sample())
    assert (status, body) == (200, {"msg_id": "sample string 1", "status": "queued"})
    await wait_applied(http, gw, "sample string 1")
    status, view = await get(http, gw, "/orders/sample string 16")
    assert status == 200
    assert_sample_order(view, "sample string 16", "sample string 1")


@pytest.mark.parametrize("ctype", JSON_TYPES)
async def test_help_page_sample_under_each_json_type(
    stack: tuple[Gateway, list[Worker]], http: aiohttp.ClientSession, ctype: str
) -> None:
    gw, _ = stack
    msg_id, accession = f"m-{uuid.uuid4()}", f"ACC-{uuid.uuid4()}"
    status, body = await post(http, gw, help_page_sample(msg_id, accession), ctype)
    assert (status, body) == (200, {"msg_id": msg_id, "status": "queued"})
    message = await wait_applied(http, gw, msg_id)
    assert message["status"] == "applied"
    assert message["accessionNo"] == accession
    status, view = await get(http, gw, f"/orders/{accession}")
    assert status == 200
    assert_sample_order(view, accession, msg_id)


async def test_unknown_ids_are_404(
    stack: tuple[Gateway, list[Worker]], http: aiohttp.ClientSession
) -> None:
    gw, _ = stack
    assert (await get(http, gw, "/messages/never-sent"))[0] == 404
    assert (await get(http, gw, "/orders/NO-SUCH-ORDER"))[0] == 404


async def test_same_msg_id_posted_five_times_is_applied_once(
    stack: tuple[Gateway, list[Worker]], http: aiohttp.ClientSession, db: asyncpg.Pool
) -> None:
    gw, workers = stack
    msg_id, accession = f"m-{uuid.uuid4()}", f"ACC-{uuid.uuid4()}"
    body = order(msg_id, accession)
    for _ in range(5):
        assert (await post(http, gw, body))[0] == 200

    async def all_seen() -> list[str] | None:
        seen = [o for w in workers for m, o in w.outcomes() if m == msg_id]
        return seen if len(seen) == 5 else None

    outcomes = await wait_for(all_seen, 30, what="five deliveries processed")
    assert sorted(outcomes) == ["applied"] + ["duplicate"] * 4
    row = await db.fetchrow(
        """SELECT o.xmin::text AS order_tx, i.xmin::text AS inbox_tx,
                  (SELECT count(*) FROM order_services s WHERE s.accession_no = o.accession_no)
                  AS lines
             FROM orders o JOIN inbox i ON i.msg_id = o.last_msg_id WHERE o.accession_no = $1""",
        accession,
    )
    # the order and the inbox row were last written by one and the same transaction
    assert row["order_tx"] == row["inbox_tx"]
    assert row["lines"] == 1


async def test_thousand_concurrent_messages_two_workers(
    stack: tuple[Gateway, list[Worker]], http: aiohttp.ClientSession, db: asyncpg.Pool
) -> None:
    gw, workers = stack
    run = uuid.uuid4().hex[:8]
    ids = [f"bulk-{run}-{i}" for i in range(1000)]
    limit = asyncio.Semaphore(64)

    async def send(i: int, msg_id: str) -> int:
        async with limit:
            return (await post(http, gw, order(msg_id, f"ACC-{run}-{i}")))[0]

    started = time.monotonic()
    statuses = await asyncio.gather(*(send(i, m) for i, m in enumerate(ids)))
    posted = time.monotonic()
    assert statuses == [200] * 1000

    async def drained() -> bool:
        n = await db.fetchval(
            "SELECT count(*) FROM inbox WHERE msg_id LIKE $1 AND status = 'applied'",
            f"bulk-{run}-%",
        )
        return bool(n == 1000)

    await wait_for(drained, 120, interval=0.2, what="1000 messages applied")
    done = time.monotonic()
    print(
        f"\n1000 messages: posted in {posted - started:.2f}s, all applied after "
        f"{done - started:.2f}s"
    )
    assert (
        await db.fetchval("SELECT count(*) FROM orders WHERE accession_no LIKE $1", f"ACC-{run}-%")
        == 1000
    )
    applied = [m for w in workers for m, o in w.outcomes() if m.startswith(f"bulk-{run}-")]
    assert sorted(applied) == sorted(ids)  # each exactly once, across both workers
    assert all(any(m.startswith(f"bulk-{run}") for m, _ in w.outcomes()) for w in workers)


async def test_reposted_pre_upgrade_message_is_a_duplicate(
    stack: tuple[Gateway, list[Worker]], http: aiohttp.ClientSession, amqp: Any
) -> None:
    """NoOfImages is `int?` (issue 13): left out, it reads back null. The same post bound
    before the change carried 0; re-sent after the upgrade it is a duplicate, not a conflict."""
    gw, workers = stack
    msg_id, accession = f"m-{uuid.uuid4()}", f"ACC-{uuid.uuid4()}"
    line = {"studyDesc": "CHEST PA", "bodypart": "CHEST"}
    before = {"msg_id": msg_id, "accessionNo": accession, "services": [{**line, "noOfImages": 0}]}
    await publish_as_gateway(amqp, before, datetime.now(UTC))
    await wait_applied(http, gw, msg_id)
    after = {"msg_id": msg_id, "accessionNo": accession, "services": [line]}
    assert (await post(http, gw, after))[0] == 200

    async def both_seen() -> list[str] | None:
        seen = [o for w in workers for m, o in w.outcomes() if m == msg_id]
        return seen if len(seen) == 2 else None

    assert sorted(await wait_for(both_seen, 30, what="two deliveries")) == [
        "applied",
        "duplicate",
    ]
    status, view = await get(http, gw, f"/orders/{accession}")
    assert status == 200
    assert view["services"] == [{**line, "noOfImages": 0, "warningTime": 0}]
    fresh, fresh_acc = f"m-{uuid.uuid4()}", f"ACC-{uuid.uuid4()}"
    body = {"msg_id": fresh, "accessionNo": fresh_acc, "services": [line]}
    assert (await post(http, gw, body))[0] == 200
    await wait_applied(http, gw, fresh)
    status, view = await get(http, gw, f"/orders/{fresh_acc}")
    assert view["services"] == [{**line, "noOfImages": None, "warningTime": 0}]
