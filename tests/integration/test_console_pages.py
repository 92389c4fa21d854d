"""The console (issue 15) against a live gateway and workers: access, CSRF, sessions."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlencode

import aiohttp
import asyncpg
import pytest
from yarl import URL

from qcare_ingest.normalize import mask_id
from tests.conftest import Procs, RunEnv
from tests.integration.test_least_privilege import _drop_roles, as_role
from tests.support.payloads import UPDATE, order
from tests.support.procs import Gateway, free_port, wait_for
from tests.support.queues import cli

ADMIN_SECRET = "k-ops-456-Hn4Tb7Jc1Md6Ks-console"
POSTER_SECRET = "k-qcare-123-Zp8Qw2Lx5Rv9-console"
KEYS = f"qcare:{POSTER_SECRET},ops:{ADMIN_SECRET}:post+status+read+admin"
COOKIE = "qcare_console"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Console:
    gw: Gateway
    http: aiohttp.ClientSession

    @property
    def origin(self) -> dict[str, str]:
        return {"Origin": self.gw.url}

    async def get(self, path: str, **kw: object) -> tuple[int, str, aiohttp.ClientResponse]:
        async with self.http.get(self.gw.url + path, allow_redirects=False, **kw) as resp:  # type: ignore[arg-type]
            return resp.status, await resp.text(), resp

    async def post(
        self, path: str, data: dict[str, str], origin: bool = True
    ) -> tuple[int, str, aiohttp.ClientResponse]:
        headers = self.origin if origin else {}
        async with self.http.post(
            self.gw.url + path, data=data, headers=headers, allow_redirects=False
        ) as resp:
            return resp.status, await resp.text(), resp

    async def sign_in(self, key: str = ADMIN_SECRET) -> tuple[int, str, aiohttp.ClientResponse]:
        return await self.post("/console/sign-in", {"key": key, "next": "/console/messages"})

    def cookie(self) -> str | None:
        morsel = self.http.cookie_jar.filter_cookies(URL(self.gw.url + "/console/")).get(COOKIE)
        return morsel.value if morsel is not None else None

    async def csrf(self, path: str = "/console") -> str:
        status, text, _ = await self.get(path)
        assert status == 200, text
        found = CSRF_RE.search(text)
        assert found is not None
        return found[1]


def jar() -> aiohttp.CookieJar:
    return aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1


@pytest.fixture
async def console(procs: Procs, http: aiohttp.ClientSession) -> AsyncIterator[Console]:
    gw = procs.gateway(QCARE_API_KEYS=KEYS)
    await gw.ready(http)
    async with aiohttp.ClientSession(cookie_jar=jar()) as session:
        yield Console(gw, session)


async def audit_rows(db: asyncpg.Pool, action: str, subject: str) -> int:
    count: int = await db.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = $1 AND subject = $2", action, subject
    )
    return count


async def test_nothing_but_sign_in_without_a_session(console: Console) -> None:
    for path in ("/console", "/console/messages", "/console/messages/x", "/console/orders/A"):
        status, _, resp = await console.get(path)
        assert status == 302, path
        assert resp.headers["Location"].startswith("/console/sign-in?next=")
    status, text, resp = await console.get("/console/sign-in")
    assert status == 200
    assert "API key" in text
    assert resp.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["Cache-Control"] == "no-store"
    status, _, resp = await console.get("/console/static/console.css")
    assert status == 200
    status, _, resp = await console.post("/console/messages/x/reveal", {"csrf_token": "x"})
    assert status == 302
    assert resp.headers["Location"] == "/console/sign-in?next=/console"
    status, text, _ = await console.post("/console/static/console.css", {})
    assert status == 403  # a public path takes no POST: no session, no token


async def test_sign_in_needs_an_admin_key(console: Console, db: asyncpg.Pool) -> None:
    status, text, _ = await console.sign_in("not-a-key-at-all-but-long-enough")
    assert status == 401
    assert "not valid" in text
    status, text, _ = await console.sign_in(POSTER_SECRET)
    assert status == 403
    assert "admin" in text
    assert console.cookie() is None
    before = await audit_rows(db, "console_sign_in", "ops")
    status, _, resp = await console.sign_in()
    assert status == 302
    assert resp.headers["Location"] == "/console/messages"
    cookie = resp.cookies["qcare_console"]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/console"
    assert not cookie["secure"]  # plain HTTP on loopback
    assert await audit_rows(db, "console_sign_in", "ops") == before + 1
    status, text, _ = await console.get("/console")
    assert status == 200
    assert "Signed in as" in text
    log = console.gw.text()
    assert ADMIN_SECRET not in log
    assert POSTER_SECRET not in log
    assert "not-a-key-at-all" not in log


async def test_csrf_and_sign_out(console: Console, db: asyncpg.Pool) -> None:
    await console.sign_in()
    token = await console.csrf()
    status, text, _ = await console.post("/console/sign-out", {})
    assert status == 403
    assert "security token" in text
    status, _, _ = await console.post("/console/sign-out", {"csrf_token": "wrong"})
    assert status == 403
    status, text, _ = await console.post("/console/sign-out", {"csrf_token": token}, origin=False)
    assert status == 403
    assert "not sent from a page of this console" in text
    async with console.http.post(
        console.gw.url + "/console/sign-out",
        data={"csrf_token": token},
        headers={"Origin": "http://evil.example"},
        allow_redirects=False,
    ) as resp:
        assert resp.status == 403
    assert (await console.get("/console"))[0] == 200  # still signed in
    stolen = console.cookie()
    before = await audit_rows(db, "console_sign_out", "ops")
    async with console.http.post(  # a script's POST: the token in X-CSRF-Token
        console.gw.url + "/console/sign-out",
        headers={"Origin": console.gw.url, "X-CSRF-Token": token},
        allow_redirects=False,
    ) as resp:
        status = resp.status
    assert status == 302
    assert resp.headers["Location"] == "/console/sign-in"
    assert await audit_rows(db, "console_sign_out", "ops") == before + 1
    assert (await console.get("/console"))[0] == 302
    # the old cookie, replayed, is no longer a session
    async with (
        aiohttp.ClientSession() as other,
        other.get(
            console.gw.url + "/console",
            headers={"Cookie": f"qcare_console={stolen}"},
            allow_redirects=False,
        ) as resp,
    ):
        assert resp.status == 302


async def test_a_forged_cookie_is_no_session(console: Console) -> None:
    await console.sign_in()
    value = console.cookie()
    assert value is not None
    payload, sig = value.split(".")
    async with aiohttp.ClientSession() as other:
        for forged in (f"{payload}.{sig[:-2]}AA", f"{payload[:-2]}AA.{sig}", "x.y", ""):
            async with other.get(
                console.gw.url + "/console",
                headers={"Cookie": f"qcare_console={forged}"},
                allow_redirects=False,
            ) as resp:
                assert resp.status == 302, forged


async def test_unknown_console_page_is_a_404_page(console: Console) -> None:
    await console.sign_in()
    status, text, resp = await console.get("/console/nothing-here")
    assert status == 404
    assert "<h1>Not found</h1>" in text
    assert resp.headers["X-Frame-Options"] == "DENY"


async def test_without_keys_the_console_is_open_and_says_so(
    procs: Procs, http: aiohttp.ClientSession
) -> None:
    gw = procs.gateway()
    await gw.ready(http)
    async with aiohttp.ClientSession(cookie_jar=jar()) as session:
        console = Console(gw, session)
        status, text, _ = await console.get("/console")
        assert status == 200
        assert "Authentication is off" in text
        status, _, resp = await console.get("/console/sign-in")
        assert status == 302
        assert resp.headers["Location"] == "/console"
        assert (await console.post("/console/sign-out", {"csrf_token": "x"}))[0] == 403


# --- search, message and order pages against a gateway and a worker ---


@dataclass
class Live:
    console: Console
    db: asyncpg.Pool

    async def post(self, body: bytes, ctype: str = "application/json") -> None:
        headers = {"Content-Type": ctype, "X-Api-Key": ADMIN_SECRET}
        async with self.console.http.post(
            self.console.gw.url + UPDATE, data=body, headers=headers
        ) as resp:
            assert resp.status == 200, await resp.text()

    async def processed(self, msg_id: str, body: bytes) -> None:
        """Wait for the inbox row; the worker wrote the journal row with it, byte for byte."""

        async def done() -> bool:
            status = await self.db.fetchval("SELECT status FROM inbox WHERE msg_id = $1", msg_id)
            return status in ("applied", "stale")

        await wait_for(done, 30, what=f"{msg_id} processed")
        journal = await self.db.fetchrow(
            "SELECT body, client, as_received FROM journal WHERE msg_id = $1", msg_id
        )
        assert journal is not None
        assert bytes(journal["body"]) == body
        assert journal["client"] == "ops"
        assert journal["as_received"]

    async def reveal(self, path: str) -> tuple[int, str]:
        token = await self.console.csrf(path)
        status, text, _ = await self.console.post(path + "/reveal", {"csrf_token": token})
        return status, text


@pytest.fixture
async def live(procs: Procs, http: aiohttp.ClientSession, db: asyncpg.Pool) -> AsyncIterator[Live]:
    gw = procs.gateway(QCARE_API_KEYS=KEYS)
    worker = procs.worker()
    await asyncio.gather(gw.ready(http), worker.consuming())
    async with aiohttp.ClientSession(cookie_jar=jar()) as session:
        console = Console(gw, session)
        status, _, _ = await console.sign_in()
        assert status == 302
        yield Live(console, db)


def unique_hkid() -> tuple[str, str]:
    """(as typed, normalised): a fresh HKID per test, valid check digit or not."""
    digits = f"{uuid.uuid4().int % 1_000_000:06d}"
    return f"Z{digits}(7)", f"Z{digits}7"


def ids(tag: str) -> tuple[str, str]:
    m = f"{tag}-{uuid.uuid4().hex[:10]}"
    return m, "ACC-" + m


async def test_search_finds_by_accession_hkid_passport_msg_id(live: Live) -> None:
    hkid, hkid_norm = unique_hkid()
    m1, acc1 = ids("s1")
    body1 = order(m1, acc1, hkid=hkid, name="CHAN SIU MING")
    m2, acc2 = ids("s2")
    passno = "k" + uuid.uuid4().hex[:7]
    body2 = order(m2, acc2, passno=passno, hkid=None, name="LEE MEI")
    await live.post(body1)
    await live.post(body2)
    await live.processed(m1, body1)
    await live.processed(m2, body2)
    c = live.console

    async def found(q: str, **params: str) -> str:
        status, text, _ = await c.get("/console/messages?" + urlencode({"q": q, **params}))
        assert status == 200, text
        return text

    for q in (acc1, m1, hkid, f" z{hkid_norm[1:4]} {hkid_norm[4:7]} ({hkid_norm[-1]}) ", hkid_norm):
        text = await found(q)
        assert f">{m1}</a>" in text, q
        assert m2 not in text
        table = text[text.index("<table>") : text.index("</table>")]  # the box echoes q
        assert hkid not in table  # masked: Z12****(7)
        assert hkid_norm not in table
        assert mask_id(hkid_norm) in table
    for q in (passno, passno.upper(), acc2):
        text = await found(q)
        assert f">{m2}</a>" in text, q
        table = text[text.index("<table>") : text.index("</table>")]
        assert passno.upper() not in table
        assert mask_id(passno) in table
    assert f">{m1}</a>" in await found(acc1, status="applied")
    assert f">{m1}</a>" not in await found(acc1, status="rejected")
    assert "No messages match" in await found("no-such-thing")
    assert f">{m1}</a>" not in await found(acc1, **{"from": "2999-01-01T00:00"})
    assert f">{m1}</a>" in await found(
        acc1, **{"from": "2000-01-01T00:00", "to": "2999-01-01T00:00"}
    )
    status, text, _ = await c.get("/console/messages?" + urlencode({"q": acc1, "from": "soon"}))
    assert status == 400
    assert "Received from: not a date" in text
    # dates the database cannot take are the operator's mistake (400), not a 503
    for bad in (
        {"from": "0001-01-01"},
        {"to": "0001-01-01T00:00:00+14:00"},
        {"to": "9999-12-31T23:00-12:00"},
    ):
        status, text, _ = await c.get("/console/messages?" + urlencode({"q": acc1, **bad}))
        assert status == 400, (bad, text)
        assert "out of range (years 1970 to 9999)" in text


async def test_message_page_masked_then_revealed_with_an_audit_row(live: Live) -> None:
    hkid, hkid_norm = unique_hkid()
    m, acc = ids("msg")
    body = order(m, acc, hkid=hkid, name="CHAN TAI MAN", address="1 Main St")
    await live.post(body)
    await live.processed(m, body)
    c = live.console
    path = f"/console/messages/{m}"
    status, text, _ = await c.get(path)
    assert status == 200
    assert "applied" in text
    for personal in ("CHAN TAI MAN", "1 Main St", hkid, hkid_norm):
        assert personal not in text, personal
    assert mask_id(hkid) in text
    assert "CHEST PA" in text  # services are shown
    assert f'href="/console/orders/{acc}"' in text
    assert "Reveal personal data" in text
    # reveal needs the token, and is recorded before anything is shown
    status, _, _ = await c.post(path + "/reveal", {})
    assert status == 403
    before = await audit_rows(live.db, "message_reveal", m)
    status, text = await live.reveal(path)
    assert status == 200
    assert await audit_rows(live.db, "message_reveal", m) == before + 1
    for personal in ("CHAN TAI MAN", "1 Main St", hkid):
        assert personal in text, personal
    assert "Personal data revealed" in text


async def test_message_page_without_a_journal_row_says_so(live: Live) -> None:
    m, acc = ids("nj")
    body = order(m, acc)
    await live.post(body)

    async def done() -> bool:
        return await live.db.fetchval("SELECT 1 FROM inbox WHERE msg_id = $1", m) == 1

    await wait_for(done, 30, what="inbox row")
    row = await live.db.fetchrow("DELETE FROM journal WHERE msg_id = $1 RETURNING *", m)
    try:
        status, text, _ = await live.console.get(f"/console/messages/{m}")
        assert status == 200
        assert "no journal row" in text
        assert "CHAN TAI MAN" not in text
    finally:  # the suite ends with `rebuild`, which needs every applied message journaled
        await live.db.execute(
            "INSERT INTO journal SELECT * FROM unnest($1::journal[])", [tuple(row.values())]
        )


async def test_form_and_xml_bodies_are_shown_masked(live: Live) -> None:
    m, acc = ids("form")
    form = urlencode({"msg_id": m, "accessionNo": acc, "name": "WONG KA YAN", "location": "RM 3"})
    await live.post(form.encode(), "application/x-www-form-urlencoded")
    await live.processed(m, form.encode())
    status, text, _ = await live.console.get(f"/console/messages/{m}")
    assert status == 200
    assert "WONG KA YAN" not in text
    assert '<th scope="row">location</th><td>RM 3</td>' in text
    status, text = await live.reveal(f"/console/messages/{m}")
    assert "WONG KA YAN" in text


async def test_order_page_links_each_field_to_the_message_that_set_it(live: Live) -> None:
    hkid, _ = unique_hkid()
    first, acc = ids("o1")
    second = first.replace("o1", "o2")
    body1 = order(first, acc, hkid=hkid, name="HO WING", location="ROOM 1")
    body2 = json.dumps({"msg_id": second, "accessionNo": acc, "location": "ROOM 2"}).encode()
    await live.post(body1)
    await live.processed(first, body1)
    await live.post(body2)
    await live.processed(second, body2)
    c = live.console
    status, text, _ = await c.get(f"/console/orders/{acc}")
    assert status == 200
    assert "HO WING" not in text
    assert hkid not in text

    def set_by(field: str) -> str:
        row = re.search(rf'<th scope="row">{field}</th>(.*?)</tr>', text, re.S)
        assert row is not None, field
        link = re.search(r'href="/console/messages/([^"]+)"', row[1])
        assert link is not None, field
        assert "UTC" in row[1]
        assert "HKT" in row[1]
        return link[1]

    assert set_by("location") == second
    assert "ROOM 2" in text
    assert set_by("name") == first
    assert set_by("studyDate") == first
    status, page, _ = await c.get(f"/console/messages/{set_by('location')}")
    assert status == 200
    assert f'href="/console/orders/{acc}"' in page
    before = await audit_rows(live.db, "order_read", acc)
    status, text = await live.reveal(f"/console/orders/{acc}")
    assert status == 200
    assert "HO WING" in text
    assert hkid in text
    assert await audit_rows(live.db, "order_read", acc) == before + 1


async def test_unknown_ids_are_404_pages(live: Live) -> None:
    for path in ("/console/messages/no-such-msg", "/console/orders/NO-SUCH-ACC"):
        status, text, _ = await live.console.get(path)
        assert status == 404, path
        assert "not found" in text.lower()
    token = await live.console.csrf("/console/messages")
    status, _, _ = await live.console.post(
        "/console/messages/no-such-msg/reveal", {"csrf_token": token}
    )
    assert status == 404
    assert await audit_rows(live.db, "message_reveal", "no-such-msg") == 1  # outcome not_found


async def test_database_down_is_a_503_page(procs: Procs, http: aiohttp.ClientSession) -> None:
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/qcare"
    open_gw = procs.gateway(QCARE_DATABASE_URL=nowhere)
    keyed_gw = procs.gateway(QCARE_DATABASE_URL=nowhere, QCARE_API_KEYS=KEYS)
    await asyncio.gather(open_gw.ready(http), keyed_gw.ready(http))
    async with aiohttp.ClientSession(cookie_jar=jar()) as session:
        console = Console(open_gw, session)
        for path in ("/console/messages?q=x", "/console/messages/x", "/console/orders/x"):
            status, text, _ = await console.get(path)
            assert status == 503, path
            assert "Database unavailable" in text
            assert "Traceback" not in text
    async with aiohttp.ClientSession(cookie_jar=jar()) as session:
        status, text, _ = await Console(keyed_gw, session).sign_in()
        assert status == 503
        assert "audit trail" in text


async def test_ids_with_slashes_and_markup_link_and_escape(live: Live) -> None:
    tag = uuid.uuid4().hex[:8]
    m = f"a/b %2F <i>{tag}</i> 陳"
    acc = f"ACC/{tag}?x=<b>"
    body = order(m, acc)
    await live.post(body)
    await live.processed(m, body)
    status, text, _ = await live.console.get("/console/messages?" + urlencode({"q": acc}))
    assert status == 200
    assert f"<i>{tag}</i>" not in text  # escaped
    link = re.search(r'<td><a href="(/console/messages/[^"]+)">', text)
    assert link is not None
    status, page, _ = await live.console.get(link[1].replace("&amp;", "&"))
    assert status == 200, link[1]
    assert f"&lt;i&gt;{tag}&lt;/i&gt;" in page
    order_link = re.search(r'href="(/console/orders/[^"]+)"', page)
    assert order_link is not None
    status, page, _ = await live.console.get(order_link[1].replace("&amp;", "&"))
    assert status == 200, order_link[1]
    status, _ = await live.reveal(link[1].replace("&amp;", "&"))
    assert status == 200


async def test_the_console_works_as_the_gateway_role(
    procs: Procs, http: aiohttp.ClientSession, test_env: RunEnv, db: asyncpg.Pool
) -> None:
    """Least privilege (issue 14): sign-in, search, message and order pages and their
    reveals need nothing the gateway's own database role lacks (it reads the journal)."""
    run = uuid.uuid4().hex[:8]
    gw_role, wk_role = f"qcare_test_cgw_{run}", f"qcare_test_cwk_{run}"
    env = {
        "QCARE_GATEWAY_DATABASE_URL": as_role(test_env.database_url, gw_role, uuid.uuid4().hex),
        "QCARE_WORKER_DATABASE_URL": as_role(test_env.database_url, wk_role, uuid.uuid4().hex),
    }
    try:
        result = await asyncio.to_thread(cli, test_env.env(**env), "migrate")
        assert result.returncode == 0, result.stderr
        gw = procs.gateway(QCARE_API_KEYS=KEYS, **env)
        worker = procs.worker(**env)
        await asyncio.gather(gw.ready(http), worker.consuming())
        async with aiohttp.ClientSession(cookie_jar=jar()) as session:
            live = Live(Console(gw, session), db)
            assert (await live.console.sign_in())[0] == 302
            m, acc = ids("role")
            body = order(m, acc, name="TSANG KIN")
            await live.post(body)
            await live.processed(m, body)
            status, text, _ = await live.console.get("/console/messages?q=" + acc)
            assert status == 200
            assert f">{m}</a>" in text
            for path in (f"/console/messages/{m}", f"/console/orders/{acc}"):
                status, text, _ = await live.console.get(path)
                assert status == 200, (path, text)
                assert "TSANG KIN" not in text
                status, text = await live.reveal(path)
                assert status == 200, (path, text)
                assert "TSANG KIN" in text
    finally:
        await _drop_roles(test_env, [gw_role, wk_role])


async def test_a_message_queued_before_the_journal_shows_its_canonical_json(live: Live) -> None:
    m, acc = ids("pre")
    body = order(m, acc, name="FUNG PO")
    await live.post(body)
    await live.processed(m, body)
    # what the worker writes for a message published before the journal existed
    await live.db.execute(
        "UPDATE journal SET as_received = false, content_type = 'application/xml' "
        "WHERE msg_id = $1",
        m,
    )
    status, text, _ = await live.console.get(f"/console/messages/{m}")
    assert status == 200
    assert "Queued before the journal existed" in text
    assert "read as JSON" in text
    assert "FUNG PO" not in text
    assert f"&#34;accessionNo&#34;: &#34;{acc}&#34;" in text


async def test_repeated_failed_sign_ins_are_throttled(console: Console) -> None:
    for _ in range(10):
        assert (await console.sign_in("wrong-key-wrong-key-wrong-key"))[0] == 401
    status, text, resp = await console.sign_in("wrong-key-wrong-key-wrong-key")
    assert status == 429
    assert "Too many failed sign-ins" in text
    assert resp.headers["Retry-After"] == "300"
    assert console.cookie() is None
    assert "wrong-key" not in console.gw.text()
    # the throttle slows guessing; it never locks out an operator with the right key
    status, _, resp = await console.sign_in()
    assert status == 302, status
    assert console.cookie() is not None
