"""Issue 12: inputs nobody planned for, through a live gateway and workers.

Each test is one finding of the issue: it failed on the code before the fix (a 500, a 503
that dropped the publisher, a 200 that never reached a final status, a message that
multiplied) and now gets a clear 400 or is applied with a warning.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from qcare_ingest.limits import MAX_MESSAGE_BYTES, MAX_SERVICE_LINES
from tests.conftest import Procs, RunEnv
from tests.support.http import get, post, wait_processed
from tests.support.payloads import UPDATE, order
from tests.support.procs import Gateway

FINAL = ("applied", "stale", "rejected", "dead_lettered")


@pytest.fixture(scope="module")
async def gw(test_env: RunEnv) -> AsyncIterator[Gateway]:
    """One gateway and one worker for the module: these tests only post and read."""
    procs = Procs(test_env)
    gateway = procs.gateway()
    worker = procs.worker()
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(gateway.ready(session), worker.consuming())
    yield gateway
    procs.close()


def tag() -> str:
    return uuid.uuid4().hex[:10]


async def accepted_and_final(
    http: aiohttp.ClientSession, gw: Gateway, body: bytes, ctype: str = "application/json"
) -> dict[str, Any]:
    status, answer = await post(http, gw, body, ctype)
    assert status == 200, answer
    view: dict[str, Any] = await wait_processed(http, gw, answer["msg_id"], 10, FINAL)
    return view


async def refused(
    http: aiohttp.ClientSession, gw: Gateway, body: bytes, ctype: str = "application/json"
) -> dict[str, list[str]]:
    headers = {"Content-Type": ctype, "Accept": "application/json"}  # XML errors too
    async with http.post(gw.url + UPDATE, data=io.BytesIO(body), headers=headers) as resp:
        status, answer = resp.status, await resp.json(content_type=None)
    assert status == 400, answer
    assert answer["Message"] == "The request is invalid."
    state: dict[str, list[str]] = answer["ModelState"]
    return state


async def test_ref_fan_out_and_repeated_lines_cannot_multiply_a_message(
    gw: Gateway, http: aiohttp.ClientSession
) -> None:
    """Finding 1: 1,000 $refs to one 150 kB line made a 150 MB message."""
    line = {"$id": "2", "studyDesc": "X" * 150_000}
    body = {"msg_id": f"ref-{tag()}", "accessionNo": f"A-{tag()}", "services": [line]}
    body["services"] += [{"$ref": "2"}] * 1000
    state = await refused(http, gw, json.dumps(body).encode())
    assert "at most 100 service lines" in state["dto.services"][0]
    empty = {"msg_id": f"e-{tag()}", "accessionNo": "A", "services": [{}] * 5000}
    assert "dto.services" in await refused(http, gw, json.dumps(empty).encode())
    # a form post never bound services (a public field; Web API binds form keys to properties)
    form = f"msg_id=f-{tag()}&accessionNo=A&services.index=" + ",".join(["0"] * 20_000)
    view = await accepted_and_final(http, gw, form.encode(), "application/x-www-form-urlencoded")
    assert view["warnings"][:1] == [
        "form posts never bound services: 1 services keys ignored, as the old server did"
    ]
    # within the limits, the message stays within its bound however the lines were written
    at_limit = {"msg_id": f"ok-{tag()}", "accessionNo": f"A-{tag()}"}
    at_limit["services"] = [{"$id": "2", "studyDesc": "醫" * 500}]
    at_limit["services"] += [{"$ref": "2"}] * (MAX_SERVICE_LINES - 1)
    view = await accepted_and_final(http, gw, json.dumps(at_limit).encode())
    assert view["status"] == "applied"
    status, stored = await get(http, gw, f"/orders/{at_limit['accessionNo']}")
    assert status == 200
    assert len(stored["services"]) == MAX_SERVICE_LINES
    assert len(json.dumps(stored, ensure_ascii=False).encode()) < MAX_MESSAGE_BYTES


async def test_msg_id_is_limited_in_bytes_and_does_not_cost_other_posts(
    gw: Gateway, http: aiohttp.ClientSession
) -> None:
    """Finding 2: 100 times '醫' (300 bytes) broke the AMQP marshalling, answered 503 and
    dropped the shared publisher connection under the other requests."""
    wide = json.dumps({"msg_id": "醫" * 100, "accessionNo": "A"}).encode()
    normal = [order(f"n-{tag()}-{i}", f"ACC-{tag()}") for i in range(30)]
    answers = await asyncio.gather(
        *(post(http, gw, body) for body in [wide, *normal[:15], wide, *normal[15:]])
    )
    statuses = [status for status, _ in answers]
    assert statuses[0] == statuses[16] == 400
    assert "255 bytes" in answers[0][1]["ModelState"]["dto.msg_id"][0]
    assert [s for i, s in enumerate(statuses) if i not in (0, 16)] == [200] * 30


async def test_lone_surrogates_and_nul_are_stored_as_replacement_characters(
    gw: Gateway, http: aiohttp.ClientSession
) -> None:
    """Finding 3 (a .NET Substring through an emoji: 500 before) and the NUL of finding 6."""
    acc = f"S-{tag()}"
    body = (
        f'{{"msg_id":"sur-{tag()}","accessionNo":"{acc}","hkid":"A123456(3)",'
        '"name":"CHAN \\ud83d","address":"1\\u0000 Main St",'
        '"services":[{"studyDesc":"\\udc00CHEST"}]}'
    ).encode()
    view = await accepted_and_final(http, gw, body)
    assert view["status"] == "applied"
    assert {w.split(":")[0] for w in view["warnings"]} >= {"name", "address", "services"}
    status, stored = await get(http, gw, f"/orders/{acc}")
    assert status == 200
    assert stored["name"] == "CHAN \ufffd"
    assert stored["address"] == "1\ufffd Main St"
    assert stored["services"][0]["studyDesc"] == "\ufffdCHEST"


BOUND_AS = {"0001-01-01T00:00:00.0000000+14:00": "0001-01-01T08:00:00.0000000+08:00"}


@pytest.mark.parametrize(
    "study_date",
    [
        "0001-01-01T00:00:00",  # DateTime.MinValue, Hong Kong time: before year 1 in UTC
        "0001-01-01T00:00:00.0000000+14:00",
        "9999-12-31T23:59:59.9999999-12:00",
        "9999-12-31T23:59:59.9999999",
        "/Date(253402300799999)/",  # MaxValue in UTC: after year 9999 in Hong Kong
        "/Date(-62135596800000)/",
    ],
)
async def test_dotnet_date_extremes_are_stored_and_read_back(
    gw: Gateway, http: aiohttp.ClientSession, study_date: str
) -> None:
    """Finding 4: dead-lettered as data_refused, or GET /orders answering 500 for ever."""
    acc = f"D-{tag()}"
    body = {"msg_id": f"date-{tag()}", "accessionNo": acc, "studyDate": study_date}
    view = await accepted_and_final(http, gw, json.dumps(body).encode())
    assert view["status"] == "applied", view
    status, stored = await get(http, gw, f"/orders/{quote(acc)}")
    assert status == 200, stored
    assert stored["studyDate"] is not None
    if stored["normalized"]["studyAt"] is None:
        # no instant: the text as bound, which is the text as sent, except that Json.NET
        # clamps a DateTime its offset pushes before year 1 to MinValue in the server's
        # time zone (the reference server does the same)
        assert stored["studyDate"] == BOUND_AS.get(study_date, study_date)
        assert any("studyDate" in w for w in view["warnings"])


@pytest.mark.parametrize(
    ("ctype", "body", "key"),
    [
        (
            "application/json",
            '{"msg_id":"m","accessionNo":"A","services":[{"noOfImages":' + "9" * 5000 + "}]}",
            "dto.services[0].noOfImages",
        ),
        (
            "application/json",
            '{"msg_id":"m","accessionNo":"A","name":' + "9" * 5000 + "}",
            "dto.name",
        ),
        (
            "application/json",
            '{"msg_id":"m","accessionNo":"A","studyDate":"/Date(' + "9" * 5000 + ')/"}',
            "dto.studyDate",
        ),
        (
            "application/xml",
            "<QCareDto><msg_id>m</msg_id><accessionNo>A</accessionNo><services><ServicesInfo>"
            f"<NoOfImages>{'9' * 5000}</NoOfImages></ServicesInfo></services></QCareDto>",
            "dto",
        ),
        (
            "application/x-www-form-urlencoded",
            "msg_id=m&accessionNo=A&studyDate=" + "9" * 5000,  # form posts bind no services
            "dto.studyDate",
        ),
    ],
)
async def test_numbers_of_thousands_of_digits_are_a_clear_400(
    gw: Gateway, http: aiohttp.ClientSession, ctype: str, body: str, key: str
) -> None:
    """Finding 5: int()'s 4,300-digit limit raised ValueError: 500."""
    state = await refused(http, gw, body.encode(), ctype)
    assert key in state, state


async def test_what_the_worker_or_database_would_refuse_is_checked_at_the_gateway(
    gw: Gateway, http: aiohttp.ClientSession
) -> None:
    """Finding 6: 200, then the retry ladder (dob /Date(9…)/, 5,000-character accessionNo)
    or dead-lettered and not recordable (NUL in msg_id: GET /messages 404 for ever)."""
    state = await refused(http, gw, json.dumps({"msg_id": "m", "accessionNo": "A" * 5000}).encode())
    assert "64 characters" in state["dto.accessionNo"][0]
    state = await refused(http, gw, json.dumps({"msg_id": "m\u0000", "accessionNo": "A"}).encode())
    assert "control characters" in state["dto.msg_id"][0]
    long_dob = json.dumps(
        {"msg_id": "m", "hkid": "A123456(3)", "dob": "/Date(" + "9" * 5000 + ")/"}
    )
    assert "dto.dob" in await refused(http, gw, long_dob.encode())
    acc = f"B-{tag()}"
    dob = "/Date(" + "9" * 19 + ")/"  # no DateTime can hold it: kept as sent, with a warning
    body = {"msg_id": f"dob-{tag()}", "accessionNo": acc, "hkid": "A123456(3)", "dob": dob}
    view = await accepted_and_final(http, gw, json.dumps(body).encode())
    assert view["status"] == "applied"
    assert any(w.startswith("dob") for w in view["warnings"])
    status, stored = await get(http, gw, f"/orders/{acc}")
    assert (status, stored["dob"], stored["normalized"]["dob"]) == (200, dob, None)


# --- what an outside attack found after the first round (helper review of issue 12) -----


async def raw_exchange(gw: Gateway, data: bytes, timeout: float = 10) -> bytes:
    """Send bytes as they are (headers aiohttp's client would not write) and read to EOF."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(timeout):
            return await reader.read()
    finally:
        writer.close()


def raw_post(body: bytes, *headers: bytes) -> bytes:
    head = (
        b"POST "
        + UPDATE.encode()
        + b" HTTP/1.1\r\nHost: x\r\n"
        + b"".join(h + b"\r\n" for h in headers)
    )
    return head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body


async def test_a_compressed_body_is_refused_not_cut_short(
    gw: Gateway, http: aiohttp.ClientSession
) -> None:
    """aiohttp inflated gzip bodies, read_body took Content-Length (compressed) bytes of
    them: form lines were lost with a 200, and a gzip bomb got a 200 after seconds."""
    body = gzip.compress(b"msg_id=gz-1&accessionNo=ACC-GZ1&services[0].studyDesc=CHEST")
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Content-Encoding": "gzip"}
    async with http.post(gw.url + UPDATE, data=body, headers=headers) as resp:
        assert resp.status == 415
        assert "Content-Encoding" in (await resp.json())["Message"]


async def test_undecodable_content_type_bytes_are_refused_not_a_broken_connection(
    gw: Gateway, http: aiohttp.ClientSession
) -> None:
    """A non-UTF-8 byte in Content-Type could not go into the AMQP header: 503 'retry' for
    ever, and the shared publisher connection dropped under the other requests. Web API's
    header parser does not read such a header at all (issue 13): no Content-Type, 415."""
    msg_id = f"ct-{tag()}"
    body = json.dumps({"msg_id": msg_id, "accessionNo": f"A-{msg_id}", "location": "X"}).encode()
    answer = await raw_exchange(gw, raw_post(body, b"Content-Type: application/json; x=\xff"))
    assert answer.startswith(b"HTTP/1.1 415"), answer[:300]
    status, _ = await post(http, gw, order(f"after-{tag()}", f"ACC-{tag()}"))
    assert status == 200


async def test_bad_http_is_answered_without_quoting_the_request(gw: Gateway) -> None:
    """aiohttp's parser error quoted the bytes after `Connection: close` (the body, HKID
    and name included) in the 400 and in the log."""
    hkid, name = "Z987654(2)", "WONG SIU MING"
    body = json.dumps({"msg_id": "leak-1", "hkid": hkid, "name": name}).encode()
    head = b"POST " + UPDATE.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
    answer = await raw_exchange(gw, head + b"\r\nConnection: close\r\n\r\n" + body)
    assert answer.split(b"\r\n")[0].endswith(b" 400 Bad Request"), answer[:200]
    assert hkid.encode() not in answer
    assert name.encode() not in answer
    assert hkid not in gw.text()
    assert name not in gw.text()


async def test_a_nul_in_a_read_path_is_unknown_not_an_outage(
    gw: Gateway, http: aiohttp.ClientSession
) -> None:
    """PostgreSQL cannot hold NUL: the read failed and answered 503 + Retry-After."""
    for path in ("/messages/a%00b", "/orders/a%00b"):
        status, _ = await get(http, gw, path)
        assert status == 404


async def test_expect_continue_for_an_oversized_body_gets_413_at_once(gw: Gateway) -> None:
    head = (
        b"POST " + UPDATE.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 5000000\r\nExpect: 100-continue\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        writer.write(head)  # and no body: the answer must come without it
        async with asyncio.timeout(5):
            answer = await reader.readuntil(b"}")
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"100 Continue" not in answer


async def test_an_hkid_with_no_letter_or_digit_identifies_nobody(
    gw: Gateway, http: aiohttp.ClientSession
) -> None:
    """'( )' and '[]' both normalised to '': two patients became one (one's name, the
    other's date of birth)."""
    one, two = f"P1-{tag()}", f"P2-{tag()}"
    first = {"msg_id": one, "accessionNo": one, "hkid": "( )", "name": "ONE", "dob": "1950-01-01"}
    second = {"msg_id": two, "accessionNo": two, "hkid": "[]", "name": "TWO"}
    for dto in (first, second):
        view = await accepted_and_final(http, gw, json.dumps(dto).encode())
        assert any(w.startswith("hkid holds no letter") for w in view["warnings"])
    _, stored = await get(http, gw, f"/orders/{one}")
    assert (stored["name"], stored["dob"]) == (None, None)
    state = await refused(http, gw, json.dumps({"msg_id": f"P3-{tag()}", "hkid": "( )"}).encode())
    assert "Nothing to apply" in state["dto"][0]


async def test_slow_chunked_clients_do_not_block_large_posts(
    gw: Gateway, http: aiohttp.ClientSession
) -> None:
    """Each chunked or large body held one of two places for its whole deadline: a dozen
    slow clients made every large post wait, then 503."""
    head = (
        b"POST " + UPDATE.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n1\r\n \r\n"
    )
    slow = [await asyncio.open_connection("127.0.0.1", gw.port) for _ in range(12)]
    try:
        for _, writer in slow:
            writer.write(head)
            await writer.drain()
        msg_id = f"big-{tag()}"
        big = {"msg_id": msg_id, "accessionNo": f"A-{msg_id}", "x": "y" * 70_000}
        status, answer = await post(http, gw, json.dumps(big).encode())
        assert status == 200, answer
    finally:
        for _, writer in slow:
            writer.close()
