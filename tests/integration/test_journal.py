"""Issue 15: the journal keeps every accepted message as the clinic sent it (bytes,
Content-Type, receipt time, the key's name), written with its inbox row."""

from __future__ import annotations

import json
import secrets
import uuid
from datetime import UTC, datetime

import aio_pika
import aiohttp
import asyncpg

from tests.conftest import Procs, RunEnv
from tests.integration.test_recovery import failing_orders
from tests.support.http import publish_as_gateway, wait_processed
from tests.support.payloads import UPDATE, order, vector
from tests.support.procs import Gateway, wait_for

KEY = secrets.token_urlsafe(24)


async def _post(http: aiohttp.ClientSession, gw: Gateway, body: bytes, ctype: str) -> None:
    headers = {"Content-Type": ctype, "X-Api-Key": KEY}
    async with http.post(gw.url + UPDATE, data=body, headers=headers) as resp:
        assert resp.status == 200, await resp.text()


async def _status(http: aiohttp.ClientSession, gw: Gateway, msg_id: str) -> str | None:
    url = f"{gw.url}/api/v1/qcare/messages/{msg_id}"
    async with http.get(url, headers={"X-Api-Key": KEY}) as resp:
        return (await resp.json())["status"] if resp.status == 200 else None


async def test_each_format_is_journaled_byte_for_byte(
    procs: Procs, http: aiohttp.ClientSession, db: asyncpg.Pool
) -> None:
    gw = procs.gateway(QCARE_API_KEYS=f"clinic-7:{KEY}:post+status")
    worker = procs.worker()
    await gw.ready(http)
    await worker.consuming()
    tag = uuid.uuid4().hex[:8]
    bodies = {
        f"j-{tag}-json": (
            # Json.NET syntax the stdlib would not write: the journal keeps it as sent
            b"\xef\xbb\xbf{ msg_id: 'j-" + tag.encode() + b"-json', accessionNo: 'A-"
            + tag.encode() + b"', modality: 'DX' /* c */ }",
            "application/json; charset=utf-8",
        ),
        f"j-{tag}-xml": (
            vector("xml_01_help_page_sample.xml")
            .replace(b"<msg_id>sample string 1</msg_id>", f"<msg_id>j-{tag}-xml</msg_id>".encode())
            .replace(b"sample string 16", f"X-{tag}".encode()),
            "text/xml",
        ),
        f"j-{tag}-form": (
            f"msg_id=j-{tag}-form&accessionNo=F-{tag}&name=CHAN+TAI+MAN&hkid=A123456%283%29"
            .encode(),
            "application/x-www-form-urlencoded",
        ),
    }  # fmt: skip
    before = datetime.now(UTC)
    for body, ctype in bodies.values():
        await _post(http, gw, body, ctype)
    for msg_id in bodies:

        async def done(msg_id: str = msg_id) -> bool:
            return await _status(http, gw, msg_id) == "applied"

        await wait_for(done, 30, what=f"{msg_id} applied")
    rows = {
        r["msg_id"]: r
        for r in await db.fetch("SELECT * FROM journal WHERE msg_id = ANY($1)", list(bodies))
    }
    inbox = {
        r["msg_id"]: r["received_at"]
        for r in await db.fetch("SELECT * FROM inbox WHERE msg_id = ANY($1)", list(bodies))
    }
    assert set(rows) == set(bodies)
    for msg_id, (body, ctype) in bodies.items():
        row = rows[msg_id]
        assert bytes(row["body"]) == body, msg_id
        assert row["content_type"] == ctype
        assert row["client"] == "clinic-7"
        assert row["as_received"] is True
        assert row["received_at"] == inbox[msg_id]
        assert row["received_at"] >= before
        assert json.loads(row["dto"])["msg_id"] == msg_id


async def test_a_message_queued_before_the_journal_keeps_its_canonical_json(
    stack: tuple[Gateway, list[object]],
    amqp: aio_pika.abc.AbstractConnection,
    http: aiohttp.ClientSession,
    db: asyncpg.Pool,
) -> None:
    gw, _ = stack
    msg_id = f"legacy-{uuid.uuid4().hex[:8]}"
    dto = json.loads(order(msg_id, f"ACC-{msg_id}"))
    await publish_as_gateway(amqp, dto, datetime.now(UTC))  # no request bytes: the old format
    await wait_processed(http, gw, msg_id)
    row = await db.fetchrow("SELECT * FROM journal WHERE msg_id = $1", msg_id)
    assert row is not None
    assert row["as_received"] is False
    assert row["content_type"] == "application/json"
    assert json.loads(bytes(row["body"])) == json.loads(row["dto"])
    assert json.loads(row["dto"])["accessionNo"] == f"ACC-{msg_id}"


async def test_a_rejected_message_is_journaled_too(
    stack: tuple[Gateway, list[object]],
    test_env: RunEnv,
    http: aiohttp.ClientSession,
    db: asyncpg.Pool,
) -> None:
    gw, _ = stack
    prefix = f"jr{uuid.uuid4().hex[:6]}"
    body = order(f"{prefix}-1", f"ACC-{prefix}-1")
    async with failing_orders(db, prefix):
        async with http.post(
            gw.url + UPDATE, data=body, headers={"Content-Type": "text/json"}
        ) as resp:
            assert resp.status == 200
        await wait_processed(http, gw, f"{prefix}-1", statuses=("rejected",))
    row = await db.fetchrow(
        "SELECT body, content_type FROM journal WHERE msg_id = $1", f"{prefix}-1"
    )
    assert row is not None
    assert (bytes(row["body"]), row["content_type"]) == (body, "text/json")
