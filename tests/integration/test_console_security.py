"""Console hardening found by the attack round of issue 15: each test reproduces a finding."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from urllib.parse import quote, urlencode

import aiohttp
import asyncpg
import pytest

from qcare_ingest.normalize import mask_id
from tests.conftest import Procs
from tests.integration.test_console_pages import KEYS, Console, Live, jar
from tests.support.payloads import order


@pytest.fixture
async def signed_in(procs: Procs, http: aiohttp.ClientSession) -> AsyncIterator[Console]:
    gw = procs.gateway(QCARE_API_KEYS=KEYS)
    await gw.ready(http)
    async with aiohttp.ClientSession(cookie_jar=jar()) as session:
        console = Console(gw, session)
        assert (await console.sign_in())[0] == 302
        yield console


async def test_too_many_form_fields_is_a_console_page(signed_in: Console) -> None:
    """F13/F9: aiohttp's own 413 (over 1000 form fields) was text/plain, not a page."""
    token = await signed_in.csrf("/console/messages")
    fields = [("ids", f"m-{i}") for i in range(1200)] + [("csrf_token", token)]
    async with signed_in.http.post(
        signed_in.gw.url + "/console/messages/x/reveal",
        data=fields,
        headers=signed_in.origin,
        allow_redirects=False,
    ) as resp:
        text = await resp.text()
        assert resp.status == 413
        assert resp.content_type == "text/html"
        assert "Too much sent" in text
        assert "base-uri 'none'" in resp.headers["Content-Security-Policy"]


@pytest.fixture
async def live_console(
    procs: Procs, http: aiohttp.ClientSession, db: asyncpg.Pool
) -> AsyncIterator[Live]:
    gw = procs.gateway(QCARE_API_KEYS=KEYS)
    worker = procs.worker()
    await asyncio.gather(gw.ready(http), worker.consuming())
    async with aiohttp.ClientSession(cookie_jar=jar()) as session:
        console = Console(gw, session)
        assert (await console.sign_in())[0] == 302
        yield Live(console, db)


async def test_bidi_controls_in_ids_are_escaped(live_console: Live) -> None:
    """F16: a U+202E in msg_id/accessionNo made two different ids look alike."""
    tag = uuid.uuid4().hex[:8]
    msg_id = f"bidi-\u202egpj.exe\u202c-{tag}"
    accession = f"BIDI\u202e{tag}"
    body = order(msg_id, accession)
    await live_console.post(body)
    await live_console.processed(msg_id, body)
    c = live_console.console
    pages = (
        f"/console/messages/{quote(msg_id, safe='')}",
        f"/console/orders/{quote(accession, safe='')}",
        "/console/messages?" + urlencode({"q": accession}),
    )
    for path in pages:
        status, text, _ = await c.get(path)
        assert status == 200, path
        if "?" in path:  # the search box echoes what was typed, as typed
            text = text[text.index("<table>") :]
        assert "\u202e" not in text, path
        assert f"bidi-\\u202egpj.exe\\u202c-{tag}" in text, path


async def test_a_search_by_identifier_is_audited_masked(live_console: Live) -> None:
    """F12: "is this person a patient, and which orders" was answered without a trace."""
    db = live_console.db
    digits = f"{uuid.uuid4().int % 1_000_000:06d}"
    hkid, hkid_norm = f"Y{digits}(4)", f"Y{digits}4"
    msg_id = f"search-{uuid.uuid4().hex[:10]}"
    accession = "ACC-" + msg_id
    body = order(msg_id, accession, hkid=hkid)
    await live_console.post(body)
    await live_console.processed(msg_id, body)
    c = live_console.console

    async def rows(subject: str) -> list[asyncpg.Record]:
        return await db.fetch(
            "SELECT who, outcome FROM audit_log WHERE action = 'message_search' AND subject = $1",
            subject,
        )

    status, text, _ = await c.get("/console/messages?" + urlencode({"q": hkid}))
    assert status == 200
    assert f">{msg_id}</a>" in text
    assert [(r["who"], r["outcome"]) for r in await rows(mask_id(hkid_norm))] == [("ops", "shown")]
    unknown = f"X{digits}5"  # nobody: the answer "not a patient" is audited too
    assert (await c.get("/console/messages?" + urlencode({"q": unknown})))[0] == 200
    assert [r["outcome"] for r in await rows(mask_id(unknown))] == ["not_found"]
    # by accession or msg_id: an operator's lookup of a message, no identifier involved
    for q in (accession, msg_id):
        assert f">{msg_id}</a>" in (await c.get("/console/messages?" + urlencode({"q": q})))[1]
        assert await rows(mask_id(q)) == []
    full = await db.fetchval(
        "SELECT count(*) FROM audit_log WHERE subject LIKE '%' || $1 || '%'", digits
    )
    assert full == 0  # never the full identifier


async def test_the_search_form_keeps_the_identifier_out_of_urls(live_console: Live) -> None:
    """F12: an HKID typed in the search box went into the URL (history, next=, links)."""
    digits = f"{uuid.uuid4().int % 1_000_000:06d}"
    hkid = f"W{digits}(2)"
    msg_id = f"prg-{uuid.uuid4().hex[:10]}"
    body = order(msg_id, "ACC-" + msg_id, hkid=hkid)
    await live_console.post(body)
    await live_console.processed(msg_id, body)
    c = live_console.console
    token = await c.csrf("/console/messages")
    form = {"q": hkid, "status": "applied", "from": "", "csrf_token": token}
    assert (
        await c.post("/console/messages", {k: v for k, v in form.items() if k != "csrf_token"})
    )[0] == 403
    status, _, resp = await c.post("/console/messages", form)
    assert status == 303
    location = resp.headers["Location"]
    assert location.startswith("/console/messages?")
    assert digits not in location
    assert "h=" in location
    assert "status=applied" in location
    status, text, _ = await c.get(location)
    assert status == 200
    assert f">{msg_id}</a>" in text
    assert f'value="{hkid}"' in text  # the box shows what was typed (in the page, not the URL)
    status, text, _ = await c.get("/console/messages?h=no-such-handle")
    assert status == 400
    assert "Search again" in text
