"""Issue 4: one test per rule of SPEC §3, through the gateway, GET views checked field by field."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import aio_pika
import aiohttp
import asyncpg

from qcare_ingest.envelope import now_utc
from qcare_ingest.topology import DLQ
from tests.support.http import get, post, publish_as_gateway, wait_processed
from tests.support.procs import Gateway, Worker, wait_for

Stack = tuple[Gateway, list[Worker]]


def ids() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    return f"m-{tag}", f"ACC-{tag}"


async def send(http: aiohttp.ClientSession, gw: Gateway, dto: dict[str, Any]) -> dict[str, Any]:
    status, body = await post(http, gw, dto)
    assert status == 200, body
    view: dict[str, Any] = await wait_processed(http, gw, dto["msg_id"])
    return view


async def order(http: aiohttp.ClientSession, gw: Gateway, accession: str) -> dict[str, Any]:
    status, view = await get(http, gw, f"/orders/{accession}")
    assert status == 200
    result: dict[str, Any] = view
    return result


def hkid_for(tag: str) -> str:
    """A syntactically odd but unique HKID-like id per test (check digits are tested apart)."""
    return f"Z{int(tag[:6], 16) % 1000000:06d}(1)"


async def test_hkid_spellings_are_one_patient_and_order_follows_patient(
    stack: Stack, http: aiohttp.ClientSession, db: asyncpg.Pool
) -> None:
    gw, _ = stack
    m, acc = ids()
    await send(
        http,
        gw,
        {"msg_id": m + "-1", "accessionNo": acc, "hkid": "A123456(3)", "name": "CHAN TAI MAN"},
    )
    await send(http, gw, {"msg_id": m + "-2", "hkid": "a 123456 3", "address": "1 Main St"})
    view = await order(http, gw, acc)
    assert (view["name"], view["address"]) == ("CHAN TAI MAN", "1 Main St")
    assert view["hkid"] == "a 123456 3"  # the latest spelling, as sent
    assert view["normalized"]["hkid"] == "A1234563"
    assert view["normalized"]["hkidValid"] is True
    n = await db.fetchval("SELECT count(*) FROM patients WHERE hkid = 'A1234563'")
    assert n == 1
    # a later message moves the order to another patient
    await send(
        http,
        gw,
        {"msg_id": m + "-3", "accessionNo": acc, "hkid": "E364912(5)", "name": "LEE SIU MING"},
    )
    view = await order(http, gw, acc)
    assert (view["hkid"], view["name"], view["address"]) == ("E364912(5)", "LEE SIU MING", None)


async def test_wrong_check_digit_is_stored_and_warned(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    gw, _ = stack
    m, acc = ids()
    message = await send(http, gw, {"msg_id": m, "accessionNo": acc, "hkid": "A123456(4)"})
    assert message["status"] == "applied"
    assert any("A12****(4)" in w and "check digit" in w for w in message["warnings"])
    assert "A123456" not in str(message)  # masked in the message view
    view = await order(http, gw, acc)
    assert view["hkid"] == "A123456(4)"  # never silently fixed
    assert view["normalized"] == {**view["normalized"], "hkid": "A1234564", "hkidValid": False}


async def test_partial_updates(stack: Stack, http: aiohttp.ClientSession) -> None:
    gw, _ = stack
    m, acc = ids()
    hkid = hkid_for(m[2:])
    line = {"studyDesc": "CHEST PA", "bodypart": "CHEST", "noOfImages": 2, "warningTime": 30}
    first = {
        "msg_id": m + "-1",
        "accessionNo": acc,
        "hkid": hkid,
        "name": "A",
        "address": "1 Main St",
        "location": "Room 1",
        "services": [line],
    }
    await send(http, gw, first)
    # absent and null keep; present replaces; services absent keeps the lines
    await send(
        http,
        gw,
        {"msg_id": m + "-2", "accessionNo": acc, "hkid": hkid, "name": None, "location": "Room 2"},
    )
    view = await order(http, gw, acc)
    assert (view["name"], view["address"], view["location"]) == ("A", "1 Main St", "Room 2")
    assert view["services"] == [line]
    # services null keeps; services present replaces
    await send(http, gw, {"msg_id": m + "-3", "accessionNo": acc, "services": None})
    assert (await order(http, gw, acc))["services"] == [line]
    kub = {"studyDesc": "KUB", "bodypart": None, "noOfImages": 1, "warningTime": 0}
    await send(http, gw, {"msg_id": m + "-4", "accessionNo": acc, "services": [kub, line]})
    assert (await order(http, gw, acc))["services"] == [kub, line]
    # a shorter list replaces line by line and drops the rest
    await send(http, gw, {"msg_id": m + "-4b", "accessionNo": acc, "services": [line]})
    assert (await order(http, gw, acc))["services"] == [line]
    # [] empties the lines
    await send(http, gw, {"msg_id": m + "-5", "accessionNo": acc, "services": []})
    view = await order(http, gw, acc)
    assert view["services"] == []
    assert view["msg_id"] == m + "-5"


async def test_older_update_is_stale(
    stack: Stack, http: aiohttp.ClientSession, amqp: aio_pika.abc.AbstractConnection
) -> None:
    gw, _ = stack
    m, acc = ids()
    hkid = hkid_for(m[2:])
    await send(
        http,
        gw,
        {
            "msg_id": m + "-new",
            "accessionNo": acc,
            "hkid": hkid,
            "name": "NEW NAME",
            "location": "Room 9",
        },
    )
    then = now_utc() - timedelta(minutes=5)
    # wholly older: changes nothing anywhere
    await publish_as_gateway(
        amqp,
        {
            "msg_id": m + "-old",
            "accessionNo": acc,
            "hkid": hkid,
            "name": "OLD NAME",
            "location": "Room 1",
        },
        then,
    )
    message = await wait_processed(http, gw, m + "-old")
    assert message["status"] == "stale"
    assert sorted(message["stale_for"]) == ["order", "patient"]
    view = await order(http, gw, acc)
    assert (view["name"], view["location"], view["msg_id"]) == ("NEW NAME", "Room 9", m + "-new")
    # older but carrying a field nobody newer set: that field is taken, as in received_at order
    await publish_as_gateway(
        amqp, {"msg_id": m + "-old2", "hkid": hkid, "name": "OLDER", "address": "5 Old Rd"}, then
    )
    message = await wait_processed(http, gw, m + "-old2")
    assert (message["status"], message["stale_for"]) == ("applied", ["patient"])
    view = await order(http, gw, acc)
    assert (view["name"], view["address"]) == ("NEW NAME", "5 Old Rd")


async def test_msg_id_reused_with_other_content_is_dead_lettered(
    stack: Stack, http: aiohttp.ClientSession, amqp: aio_pika.abc.AbstractConnection
) -> None:
    gw, _ = stack
    m, acc = ids()
    await send(http, gw, {"msg_id": m, "accessionNo": acc, "location": "Room 1"})
    status, _ = await post(http, gw, {"msg_id": m, "accessionNo": acc, "location": "Room 2"})
    assert status == 200

    async def conflict_reported() -> Any:
        _, view = await get(http, gw, f"/messages/{m}")
        return view if view["conflicts"] else None

    message = await wait_for(conflict_reported, 30, what="conflict recorded")
    assert message["status"] == "applied"  # the first content stands
    assert "conflict" in message["error"]
    assert (await order(http, gw, acc))["location"] == "Room 1"
    channel = await amqp.channel()
    try:
        dlq = await channel.declare_queue(DLQ, passive=True)
        found = None
        # read without settling (closing the channel returns the others): a message
        # nacked with requeue comes straight back first from a queue with a delivery limit
        while (got := await dlq.get(no_ack=False, fail=False)) is not None:
            if got.message_id == m:
                found = got
                await got.ack()
                break
        assert found is not None
        assert found.headers["x-qcare-dead-reason"] == "conflict"
        assert found.headers["x-qcare-error-class"] == "ConflictError"
    finally:
        await channel.close()


async def test_values_are_normalised_and_raw_kept(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    gw, _ = stack
    m, acc = ids()
    message = await send(
        http,
        gw,
        {
            "msg_id": m,
            "accessionNo": acc,
            "hkid": hkid_for(m[2:]),
            "gender": "女",
            "dob": "29/02/1980",
            "studyDate": "2025-10-26",
            "studyTime": "1545",
            "ref_clinic_fullname": "Central Clinic (snake)",
            "refClinicFullname": "Central (camel)",
        },
    )
    view = await order(http, gw, acc)
    assert (view["gender"], view["dob"]) == ("女", "29/02/1980")
    assert view["normalized"]["gender"] == "F"
    assert view["normalized"]["dob"] == "1980-02-29"
    assert view["studyDate"] == "2025-10-26T15:45:00+08:00"
    assert view["normalized"]["studyAt"] == "2025-10-26T07:45:00+00:00"
    assert view["ref_clinic_fullname"] == "Central Clinic (snake)"
    assert view["refClinicFullname"] == "Central (camel)"
    m2 = m + "-2"
    message = await send(
        http,
        gw,
        {
            "msg_id": m2,
            "accessionNo": acc,
            "hkid": hkid_for(m[2:]),
            "gender": "alien",
            "dob": "last spring",
        },
    )
    joined = " ".join(message["warnings"])
    assert "gender" in joined
    assert "dob" in joined
    view = await order(http, gw, acc)
    assert (view["dob"], view["normalized"]["dob"], view["normalized"]["gender"]) == (
        "last spring",
        None,
        "U",
    )


async def test_what_the_old_server_dropped_or_joined_is_done_the_same_and_warned(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    """Issue 13: two `services` keys in one JSON body are joined (Json.NET populated the same
    list twice), and a form post never bound services (a field, not a property); both are
    what the old server did, and both say so in the message's warnings."""
    gw, _ = stack
    m, acc = ids()
    head = json.dumps({"msg_id": m, "accessionNo": acc})[:-1]
    body = (
        head + ',"services":[{"studyDesc":"CHEST PA"}],'
        '"services":[{"studyDesc":"KUB","NoOfImages":1}]}'
    ).encode()
    assert (await post(http, gw, body))[0] == 200
    message = await wait_processed(http, gw, m)
    assert message["status"] == "applied"
    assert any("lists were joined" in w for w in message["warnings"]), message["warnings"]
    view = await order(http, gw, acc)
    assert [(s["studyDesc"], s["noOfImages"]) for s in view["services"]] == [
        ("CHEST PA", None),
        ("KUB", 1),
    ]
    m2 = m + "-form"
    form = f"msg_id={m2}&accessionNo={acc}&location=X-RAY+2&services[0].studyDesc=CT"
    status, _ = await post(http, gw, form.encode(), "application/x-www-form-urlencoded")
    assert status == 200
    message = await wait_processed(http, gw, m2)
    assert message["status"] == "applied"
    assert any("never bound services" in w for w in message["warnings"]), message["warnings"]
    view = await order(http, gw, acc)
    assert view["location"] == "X-RAY 2"
    assert [s["studyDesc"] for s in view["services"]] == ["CHEST PA", "KUB"]  # untouched
