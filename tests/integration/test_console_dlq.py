"""The console's dead-letter queue (issue 15) against real processes: messages dead-lettered
by a worker with a bug (tests/support/inject), looked at, replayed once the bug is gone
(a worker without it), purged; nothing moves without its audit rows."""

from __future__ import annotations

import asyncio
import html
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

import aio_pika
import aiohttp
import asyncpg
import pytest

from qcare_ingest import console_dlq
from qcare_ingest.config import Settings
from qcare_ingest.console_dlq import BrokerLink, Outcome
from qcare_ingest.deadletter import H_ATTEMPTS, H_REASON
from qcare_ingest.topology import DEAD_KEY, DLX, declare
from tests.conftest import Procs, RunEnv
from tests.integration.test_console_pages import CSRF_RE, KEYS, POSTER_SECRET, Console, jar
from tests.support.http import post
from tests.support.isolation import rabbitmqctl
from tests.support.payloads import UPDATE, order
from tests.support.procs import ROOT, Gateway, free_port, wait_for
from tests.support.proxy import TcpProxy, via
from tests.support.queues import dead_letters

INJECT = str(ROOT / "tests" / "support" / "inject")


async def gone_from_dlq(amqp: aio_pika.abc.AbstractConnection, ids: list[str]) -> None:
    """Every id has left the dead-letter queue by the time the purge answered: its acks
    are fenced (qcare_ingest.ackfence), so none is handed back when its channel closes."""
    left = set(ids) & set(await dead_letters(amqp))
    assert not left, f"{len(left)} purged message(s) still dead-lettered"


async def dead_lettered_by_a_bug(
    procs: Procs, http: aiohttp.ClientSession, amqp: aio_pika.abc.AbstractConnection, n: int
) -> tuple[Gateway, list[str]]:
    """A gateway, and n posted updates a worker with a bug dead-lettered (that worker is
    gone when this returns; start a good one to see them applied)."""
    tag = f"cdlq-{uuid.uuid4().hex[:8]}"
    gw = procs.gateway()
    await gw.ready(http)
    ids = [f"{tag}-{i}" for i in range(n)]
    for msg_id in ids:
        status, _ = await post(http, gw, order(msg_id, f"ACC-{msg_id}"))
        assert status == 200
    buggy = procs.worker(PYTHONPATH=INJECT, QCARE_TEST_BUG_PREFIX=tag)

    async def parked() -> bool:
        return set(ids) <= set(await dead_letters(amqp))

    await wait_for(parked, 30, interval=0.2, what="the bug's messages dead-lettered")
    assert buggy.terminate(15) == 0
    return gw, ids


HIDDEN_RE = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


def confirm_fields(page: str) -> list[tuple[str, str]]:
    """The confirmation form's hidden fields, as a browser sends them (no CSRF token)."""
    form = page[page.index('<form method="post" action="/console/dlq/') :]
    form = form[: form.index("</form>")]
    return [(n, html.unescape(v)) for n, v in HIDDEN_RE.findall(form) if n != "csrf_token"]


def confirmed_ids(page: str) -> list[str]:
    """The msg_ids the confirmation form will send."""
    out: list[str] = []
    for name, value in confirm_fields(page):
        if name == "id_list":
            out += json.loads(value)
        elif name == "ids":
            out.append(value)
    return out


def by_id(outs: list[Outcome]) -> dict[str, str]:
    return {o.msg_id: o.status for o in outs}


async def test_look_replay_after_the_fix_and_purge(
    procs: Procs,
    test_env: RunEnv,
    http: aiohttp.ClientSession,
    amqp: aio_pika.abc.AbstractConnection,
    db: asyncpg.Pool,
) -> None:
    settings: Settings = test_env.settings()
    _, ids = await dead_lettered_by_a_bug(procs, http, amqp, 3)
    link = BrokerLink(settings.amqp_url, None)
    try:
        async with link.channel() as channel:
            listing = await console_dlq.peek(channel, reason="bug")
        rows = {r.msg_id: r for r in listing.rows}
        assert set(ids) <= set(rows)
        assert rows[ids[0]].reason == "bug"
        assert rows[ids[0]].error_class == "RuntimeError"
        assert rows[ids[0]].accession == f"ACC-{ids[0]}"
        assert rows[ids[0]].attempts >= 1
        assert ("bug", listing.matching) in listing.reasons or listing.examined > listing.matching
        # the look held them only while the channel was open: all back in the queue
        assert set(ids) <= set(await dead_letters(amqp))

        # nothing moves when the audit rows cannot be written
        async def refuse(found: list[str], gone: list[str]) -> datetime:
            raise asyncpg.PostgresConnectionError("the database is away")

        try:
            async with link.channel() as channel:
                await console_dlq.move(channel, "replay", [ids[0]], refuse)
        except asyncpg.PostgresConnectionError:
            pass
        else:
            raise AssertionError("the move went on without its audit rows")
        assert set(ids) <= set(await dead_letters(amqp))

        # the fix: a worker without the bug; replay one, and one that is not there
        await procs.worker().consuming()
        async with db.acquire() as conn:

            async def audited(found: list[str], gone: list[str]) -> datetime:
                return await console_dlq.audit_move(
                    conn, "ops-test", "127.0.0.1", "replay", found, gone
                )

            async with link.channel() as channel:
                moved = await console_dlq.move(
                    channel, "replay", [ids[0], ids[0], "never-there"], audited
                )
        assert moved.done == [ids[0]]
        assert moved.copies == 1
        assert moved.gone == ["never-there"]
        assert moved.at is not None
        audit_rows = await db.fetch(
            "SELECT who, action, subject, outcome FROM audit_log WHERE who = 'ops-test' "
            "AND subject = ANY($1::text[]) ORDER BY id",
            [ids[0], "never-there"],
        )
        assert [tuple(r) for r in audit_rows] == [
            ("ops-test", "dlq_replay", ids[0], "requested"),
            ("ops-test", "dlq_replay", "never-there", "not_found"),
        ]

        async def landed() -> list[Outcome] | None:
            async with db.acquire() as conn:
                outs = await console_dlq.outcomes(conn, "replay", moved.done, moved.gone, moved.at)
            return outs if all(o.final for o in outs) else None

        outs = await wait_for(landed, 30, interval=0.2, what="the replayed message applied")
        assert by_id(outs) == {ids[0]: "applied", "never-there": "gone"}
        # before the replay landed the same message was "still queued", not its old failure
        async with db.acquire() as conn:
            early = await console_dlq.outcomes(conn, "replay", [ids[1]], [], moved.at)
        assert by_id(early) == {ids[1]: "queued"}

        # purge the other two
        async def no_audit(found: list[str], gone: list[str]) -> datetime:
            return moved.at or datetime.now()

        async with link.channel() as channel:
            purged = await console_dlq.move(channel, "purge", ids[1:], no_audit)
        assert purged.done == ids[1:]
        left = set(await dead_letters(amqp))
        assert not set(ids) & left
        async with db.acquire() as conn:
            outs = await console_dlq.outcomes(conn, "purge", purged.done, [], purged.at)
        assert by_id(outs) == {ids[1]: "purged", ids[2]: "purged"}
    finally:
        await link.close()


async def test_a_look_is_bounded_and_quick(
    test_env: RunEnv, amqp: aio_pika.abc.AbstractConnection
) -> None:
    """600 dead letters of one reason: the page lists 500 and counts the rest; the look
    holds them only while it reads them (printed: how long that is)."""
    reason = f"bulk-{uuid.uuid4().hex[:6]}"
    ids = [f"{reason}-{i}" for i in range(600)]
    settings = test_env.settings()
    await (await declare(amqp, settings.delivery_limit, settings.retry_delays)).channel.close()
    channel = await amqp.channel(publisher_confirms=True)
    dlx = await channel.get_exchange(DLX)
    for msg_id in ids:
        headers = {H_REASON: reason, H_ATTEMPTS: 1}
        await dlx.publish(aio_pika.Message(b"{}", message_id=msg_id, headers=headers), DEAD_KEY)
    await channel.close()
    link = BrokerLink(settings.amqp_url, None)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with link.channel() as held:
            listing = await console_dlq.peek(held, reason=reason)
        took = loop.time() - started
        print(f"\nlook at {listing.examined} dead letters: {took * 1e3:.1f} ms")
        assert len(listing.rows) == console_dlq.LIST_CAP
        assert listing.matching == 600
        assert listing.unlisted == 100 + listing.not_examined
        assert (reason, 600) in listing.reasons
        assert {r.msg_id for r in listing.rows} < set(ids)

        async with link.channel() as held:
            every = await console_dlq.matching_ids(held, reason)
        assert sorted(every) == sorted(ids)

        async def audited(found: list[str], gone: list[str]) -> datetime:
            return datetime.now()

        async with link.channel() as held:
            purged = await console_dlq.move(held, "purge", every, audited)
        assert purged.copies == 600
        assert not purged.gone
        await gone_from_dlq(amqp, ids)
    finally:
        await link.close()


# --- the pages, signed in with an admin key, against a live gateway and workers ---


@dataclass
class Ops:
    console: Console
    gw: Gateway

    async def post_update(self, http: aiohttp.ClientSession, msg_id: str) -> None:
        async with http.post(
            self.gw.url + UPDATE,
            data=order(msg_id, f"ACC-{msg_id}"),
            headers={"Content-Type": "application/json", "X-Api-Key": POSTER_SECRET},
        ) as resp:
            assert resp.status == 200, await resp.text()

    async def form(
        self, path: str, fields: list[tuple[str, str]], token: bool = True
    ) -> tuple[int, str, aiohttp.ClientResponse]:
        if token:
            fields = [("csrf_token", await self.console.csrf("/console/dlq")), *fields]
        async with self.console.http.post(
            self.gw.url + path, data=fields, headers=self.console.origin, allow_redirects=False
        ) as resp:
            return resp.status, await resp.text(), resp

    async def outcome(self, location: str) -> dict[str, str]:
        json_path = location.replace("/console/dlq/outcome?", "/console/dlq/outcome.json?")

        async def final() -> dict[str, str] | None:
            async with self.console.http.get(self.gw.url + json_path) as resp:
                assert resp.status == 200, await resp.text()
                data = await resp.json()
            return {o["msg_id"]: o["status"] for o in data["outcomes"]} if data["final"] else None

        found: dict[str, str] = await wait_for(final, 30, interval=0.2, what="the outcome")
        return found


@pytest.fixture
async def ops(procs: Procs, http: aiohttp.ClientSession) -> AsyncIterator[Ops]:
    gw = procs.gateway(QCARE_API_KEYS=KEYS)
    await gw.ready(http)
    async with aiohttp.ClientSession(cookie_jar=jar()) as session:
        console = Console(gw, session)
        status, _, _ = await console.sign_in()
        assert status == 302
        yield Ops(console, gw)


async def bug_dead_letters(
    ops: Ops, procs: Procs, http: aiohttp.ClientSession, amqp: aio_pika.abc.AbstractConnection,
    n: int,
) -> list[str]:  # fmt: skip
    tag = f"cpage-{uuid.uuid4().hex[:8]}"
    buggy = procs.worker(PYTHONPATH=INJECT, QCARE_TEST_BUG_PREFIX=tag)
    ids = [f"{tag}-{i}" for i in range(n)]
    for msg_id in ids:
        await ops.post_update(http, msg_id)

    async def parked() -> bool:
        return set(ids) <= set(await dead_letters(amqp))

    await wait_for(parked, 30, interval=0.2, what="the bug's messages dead-lettered")
    assert buggy.terminate(15) == 0
    return ids


async def test_replay_through_the_pages_after_the_fix(
    ops: Ops,
    procs: Procs,
    http: aiohttp.ClientSession,
    amqp: aio_pika.abc.AbstractConnection,
    db: asyncpg.Pool,
) -> None:
    ids = await bug_dead_letters(ops, procs, http, amqp, 2)
    status, page, _ = await ops.console.get("/console/dlq?reason=bug")
    assert status == 200, page
    for msg_id in ids:
        assert f'href="/console/messages/{msg_id}"' in page
        assert f'value="{msg_id}"' in page
    assert "RuntimeError" in page
    assert '<option value="bug" selected>' in page

    # without the CSRF token: refused, nothing moved
    status, page, _ = await ops.form("/console/dlq/replay", [("ids", ids[0])], token=False)
    assert status == 403, page
    assert set(ids) <= set(await dead_letters(amqp))
    assert await db.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'dlq_replay' AND subject = $1", ids[0]
    ) == 0  # fmt: skip

    # the confirmation names the message; the fix (a worker without the bug); then replay
    status, page, _ = await ops.form(
        "/console/dlq/confirm", [("action", "replay"), ("ids", ids[0]), ("reason", "bug")]
    )
    assert status == 200, page
    assert "Replay 1 message?" in page
    assert confirmed_ids(page) == [ids[0]]
    assert ids[1] not in page
    await procs.worker().consuming()
    status, page, resp = await ops.form("/console/dlq/replay", [("ids", ids[0])])
    assert status == 303, page
    location = resp.headers["Location"]
    assert location.startswith("/console/dlq/outcome?")
    assert await ops.outcome(location) == {ids[0]: "applied"}
    status, page, _ = await ops.console.get(location)
    assert status == 200
    assert ">applied<" in page
    assert 'data-final="true"' in page
    who = await db.fetchval(
        "SELECT who FROM audit_log WHERE action = 'dlq_replay' AND subject = $1", ids[0]
    )
    assert who == "ops"
    assert ids[1] in await dead_letters(amqp)
    lines = [e for e in ops.gw.events() if e.get("action") == "dlq_replay"]
    assert lines
    assert lines[-1]["client"] == "ops"

    # replayed by someone else meanwhile: reported, not an error
    status, page, resp = await ops.form("/console/dlq/replay", [("ids", ids[0])])
    assert status == 303, page
    assert await ops.outcome(resp.headers["Location"]) == {ids[0]: "gone"}


async def test_purge_through_the_pages_with_confirmation(
    ops: Ops,
    procs: Procs,
    http: aiohttp.ClientSession,
    amqp: aio_pika.abc.AbstractConnection,
    db: asyncpg.Pool,
) -> None:
    ids = await bug_dead_letters(ops, procs, http, amqp, 3)
    # "all matching the filter": the confirmation names every one
    status, page, _ = await ops.form(
        "/console/dlq/confirm", [("action", "purge-all"), ("reason", "bug")]
    )
    assert status == 200, page
    assert "cannot be undone" in page
    assert set(ids) <= set(confirmed_ids(page))
    status, page, resp = await ops.form("/console/dlq/purge", confirm_fields(page))
    assert status == 303, page
    outcome = await ops.outcome(resp.headers["Location"])
    assert {outcome[i] for i in ids} == {"purged"}
    await gone_from_dlq(amqp, ids)
    status, page, _ = await ops.console.get("/console/dlq?reason=bug")
    assert status == 200
    assert "No dead-lettered messages with reason bug." in page
    rows = await db.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'dlq_purge' AND who = 'ops' "
        "AND subject = ANY($1::text[])",
        ids,
    )
    assert rows == 3


async def test_nothing_selected_and_bad_requests_are_clear(ops: Ops) -> None:
    status, _, resp = await ops.form("/console/dlq/confirm", [("action", "replay")])
    assert status == 303
    assert resp.headers["Location"] == "/console/dlq"
    status, page, _ = await ops.form("/console/dlq/confirm", [("action", "explode")])
    assert status == 400
    assert "Choose Replay or Purge" in page
    status, page, _ = await ops.console.get("/console/dlq/outcome?action=nope")
    assert status == 400
    status, _, _ = await ops.console.get("/console/dlq/outcome.json?action=nope")
    assert status == 400


async def test_no_audit_row_no_move(
    procs: Procs,
    test_env: RunEnv,
    http: aiohttp.ClientSession,
    amqp: aio_pika.abc.AbstractConnection,
) -> None:
    """A gateway whose database is away (auth off, loopback: no sign-in to record) lists the
    dead letters but moves none: their audit rows cannot be written."""
    _, ids = await dead_lettered_by_a_bug(procs, http, amqp, 1)
    gw = procs.gateway(
        QCARE_API_KEYS="", QCARE_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/x"
    )
    await gw.ready(http)
    async with aiohttp.ClientSession(cookie_jar=jar()) as session:
        console = Console(gw, session)
        status, page, _ = await console.get("/console/dlq?reason=bug")
        assert status == 200, page
        assert "Authentication is off" in page
        assert f'value="{ids[0]}"' in page
        token = CSRF_RE.search(page)
        assert token is not None
        for action in ("replay", "purge"):
            async with session.post(
                gw.url + f"/console/dlq/{action}",
                data=[("csrf_token", token[1]), ("ids", ids[0])],
                headers=console.origin,
                allow_redirects=False,
            ) as resp:
                assert resp.status == 503
                assert "audit trail cannot be written" in await resp.text()
            assert ids[0] in await dead_letters(amqp)
    refused = [e for e in gw.events() if e.get("action") in ("dlq_replay_refused",
                                                            "dlq_purge_refused")]  # fmt: skip
    assert len(refused) == 2


async def test_a_big_purge_keeps_its_outcome_url_short(
    ops: Ops, test_env: RunEnv, amqp: aio_pika.abc.AbstractConnection
) -> None:
    """150 dead letters with 200-character msg_ids: the outcome page follows what fits in
    a URL aiohttp accepts, and counts the rest."""
    settings = test_env.settings()
    await (await declare(amqp, settings.delivery_limit, settings.retry_delays)).channel.close()
    reason = f"long-{uuid.uuid4().hex[:6]}"
    ids = [f"{reason}-{i:03d}-" + "x" * 185 for i in range(150)]
    channel = await amqp.channel(publisher_confirms=True)
    dlx = await channel.get_exchange(DLX)
    for msg_id in ids:
        message = aio_pika.Message(b"{}", message_id=msg_id, headers={H_REASON: reason})
        await dlx.publish(message, DEAD_KEY)
    await channel.close()
    status, page, _ = await ops.form(
        "/console/dlq/confirm", [("action", "purge-all"), ("reason", reason)]
    )
    assert status == 200, page
    assert "Purge 150 messages?" in page
    assert sorted(confirmed_ids(page)) == ids
    status, page, resp = await ops.form("/console/dlq/purge", confirm_fields(page))
    assert status == 303, page
    location = resp.headers["Location"]
    assert len(location) < 8000
    status, page, _ = await ops.console.get(location)
    assert status == 200, page
    followed = page.count(">purged<")
    assert 0 < followed < 150
    assert f"{150 - followed} more message(s) were purged" in page
    await gone_from_dlq(amqp, ids)


async def test_a_replayed_conflict_is_dead_lettered_again(
    ops: Ops, procs: Procs, http: aiohttp.ClientSession, amqp: aio_pika.abc.AbstractConnection
) -> None:
    """Its cause cannot be fixed by a replay (the msg_id was applied with other content):
    the outcome page says so, rather than showing the first message's "applied"."""
    await procs.worker().consuming()
    msg_id = f"cconf-{uuid.uuid4().hex[:8]}"
    await ops.post_update(http, msg_id)

    async def applied() -> bool:
        status, _, _ = await ops.console.get(f"/console/messages/{msg_id}")
        return status == 200

    await wait_for(applied, 30, interval=0.2, what="the first message applied")
    async with http.post(
        ops.gw.url + UPDATE,
        data=order(msg_id, f"ACC-{msg_id}", location="ELSEWHERE"),
        headers={"Content-Type": "application/json", "X-Api-Key": POSTER_SECRET},
    ) as resp:
        assert resp.status == 200

    async def parked() -> bool:
        return msg_id in await dead_letters(amqp)

    await wait_for(parked, 30, interval=0.2, what="the conflict dead-lettered")
    status, page, resp = await ops.form("/console/dlq/replay", [("ids", msg_id)])
    assert status == 303, page
    assert await ops.outcome(resp.headers["Location"]) == {msg_id: "dead_lettered"}
    status, page, _ = await ops.console.get(resp.headers["Location"])
    assert "dead-lettered again" in page
    assert "conflict" in page
    # recorded only once it was safely back in the dead-letter queue
    assert msg_id in await dead_letters(amqp)
    # tidy: it would be dead-lettered again on every replay
    status, _, _ = await ops.form("/console/dlq/purge", [("ids", msg_id)])
    assert status == 303


async def test_a_look_holds_a_bounded_number_of_bytes(
    test_env: RunEnv, amqp: aio_pika.abc.AbstractConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bodies carry the request's bytes (up to 4 MiB): a look stops once it holds
    HELD_BYTES (here 2 MiB) and one step more, however many messages there are."""
    settings = test_env.settings()
    await (await declare(amqp, settings.delivery_limit, settings.retry_delays)).channel.close()
    reason = f"big-{uuid.uuid4().hex[:6]}"
    ids = [f"{reason}-{i}" for i in range(80)]
    body = b"{}" + b" " * (256 * 1024)
    channel = await amqp.channel(publisher_confirms=True)
    dlx = await channel.get_exchange(DLX)
    for msg_id in ids:
        message = aio_pika.Message(body, message_id=msg_id, headers={H_REASON: reason})
        await dlx.publish(message, DEAD_KEY)
    await channel.close()
    monkeypatch.setattr(console_dlq, "HELD_BYTES", 2 * 1024 * 1024)
    link = BrokerLink(settings.amqp_url, None)
    try:
        async with link.channel() as held:
            listing = await console_dlq.peek(held, reason=reason)
        assert 8 <= listing.examined <= 8 + console_dlq.STEP  # 2 MiB of 256 KiB, a step more
        assert listing.not_examined >= 80 - listing.examined

        async def audited(found: list[str], gone: list[str]) -> datetime:
            return datetime.now()

        # a move is bounded the same way: what lies beyond is "not reached", not "gone"
        monkeypatch.setattr(console_dlq, "HELD_BYTES", 1)
        async with link.channel() as held:
            moved = await console_dlq.move(held, "purge", ids, audited)
        assert not moved.complete
        assert 0 < moved.copies <= console_dlq.STEP
        assert len(moved.gone) == 80 - moved.copies
        outs = await console_dlq.outcomes(
            None,
            "purge",
            moved.done,
            moved.gone,
            moved.at,
            complete=moved.complete,  # type: ignore[arg-type]
        )
        assert {o.status for o in outs} == {"purged", "unreached"}
        monkeypatch.undo()

        async with link.channel() as held:
            every = await console_dlq.matching_ids(held, reason)
        async with link.channel() as held:
            await console_dlq.move(held, "purge", every, audited)
        await gone_from_dlq(amqp, ids)
    finally:
        await link.close()


# --- the broker goes away and comes back (F-A) ---


async def dead_letters_of(
    test_env: RunEnv, amqp: aio_pika.abc.AbstractConnection, n: int, prefix: str = "dl"
) -> tuple[str, list[str]]:
    """n messages published straight into the dead-letter queue, with a reason of their own."""
    settings = test_env.settings()
    await (await declare(amqp, settings.delivery_limit, settings.retry_delays)).channel.close()
    reason = f"{prefix}-{uuid.uuid4().hex[:6]}"
    ids = [f"{reason}-{i}" for i in range(n)]
    channel = await amqp.channel(publisher_confirms=True)
    dlx = await channel.get_exchange(DLX)
    for msg_id in ids:
        message = aio_pika.Message(b"{}", message_id=msg_id, headers={H_REASON: reason})
        await dlx.publish(message, DEAD_KEY)
    await channel.close()
    return reason, ids


def close_broker_connections(vhost: str) -> None:
    """What a broker restart or a cluster failover does to every client of the vhost."""
    rabbitmqctl("close_all_connections", "-p", vhost, "console test: broker restart")


async def test_the_pages_reconnect_after_the_broker_closed_the_connection(
    ops: Ops, test_env: RunEnv, amqp: aio_pika.abc.AbstractConnection, db: asyncpg.Pool
) -> None:
    reason, ids = await dead_letters_of(test_env, amqp, 3)
    status, page, _ = await ops.console.get(f"/console/dlq?reason={reason}")
    assert status == 200, page
    status, page, _ = await ops.console.get("/console")
    assert status == 200
    close_broker_connections(test_env.name)
    # the very next look works: the dead connection is dropped and a new one opened
    status, page, _ = await ops.console.get(f"/console/dlq?reason={reason}")
    assert status == 200, page
    for msg_id in ids:
        assert f'value="{msg_id}"' in page
    close_broker_connections(test_env.name)
    status, page, resp = await ops.form("/console/dlq/purge", [("ids", ids[0])])
    assert status == 303, page
    assert await ops.outcome(resp.headers["Location"]) == {ids[0]: "purged"}

    # the dashboard's sampler comes back by itself too
    async def broker_back() -> bool:
        async with ops.console.http.get(ops.gw.url + "/console/dashboard.json") as resp:
            data = await resp.json()
        return (
            bool(data["broker"]) and bool(data["series"]["t"]) and data["series"]["t"][-1] > cut_at
        )

    close_broker_connections(test_env.name)
    cut_at = time.time()
    await wait_for(broker_back, 20, interval=0.2, what="the dashboard reading the queues again")
    assert "console page failed" not in ops.gw.text()


async def test_an_unreachable_broker_is_a_503_then_the_pages_come_back(
    procs: Procs,
    test_env: RunEnv,
    http: aiohttp.ClientSession,
    amqp: aio_pika.abc.AbstractConnection,
) -> None:
    reason, ids = await dead_letters_of(test_env, amqp, 1)
    host, port = test_env.amqp_host_port
    proxy = TcpProxy(host, port)
    await proxy.start()
    try:
        gw = procs.gateway(QCARE_API_KEYS=KEYS, QCARE_AMQP_URL=via(test_env.amqp_url, proxy.port))
        await gw.ready(http)
        async with aiohttp.ClientSession(cookie_jar=jar()) as session:
            ops = Ops(Console(gw, session), gw)
            assert (await ops.console.sign_in())[0] == 302
            token = await ops.console.csrf("/console/dlq")
            await proxy.cut()  # every connection aborted, new ones refused
            status, page, _ = await ops.console.get(f"/console/dlq?reason={reason}")
            assert status == 503, page
            assert "RabbitMQ is unreachable" in page
            status, page, _ = await ops.form(
                "/console/dlq/replay", [("csrf_token", token), ("ids", ids[0])], token=False
            )
            assert status == 503, page
            assert "RabbitMQ is unreachable" in page
            assert "Nothing was moved" in page
            await proxy.start()

            async def listed() -> bool:
                status, page, _ = await ops.console.get(f"/console/dlq?reason={reason}")
                assert status in (200, 503), page
                return status == 200 and f'value="{ids[0]}"' in page

            await wait_for(listed, 20, interval=0.2, what="the dead letters listed again")
        assert "Something went wrong" not in gw.text()
        assert "console page failed" not in gw.text()
    finally:
        await proxy.stop()


# --- two operators, or many tabs, at once (F0, F1) ---


async def test_concurrent_looks_and_a_move_never_see_a_false_empty_queue(
    ops: Ops, test_env: RunEnv, amqp: aio_pika.abc.AbstractConnection
) -> None:
    """A look holds what it reads until its channel closes: looks and moves take turns in
    the gateway, so none sees the queue empty or a held message "gone"."""
    reason, ids = await dead_letters_of(test_env, amqp, 400)
    token = await ops.console.csrf("/console/dlq")

    async def look() -> tuple[int, str]:
        status, page, _ = await ops.console.get(f"/console/dlq?reason={reason}")
        return status, page

    async def purge_ten() -> tuple[int, str, str]:
        await asyncio.sleep(0)  # queued behind the looks started before it
        fields = [("csrf_token", token), *(("ids", i) for i in ids[:10])]
        status, page, resp = await ops.form("/console/dlq/purge", fields, token=False)
        return status, page, resp.headers.get("Location", "")

    results = await asyncio.gather(
        *(look() for _ in range(8)), purge_ten(), *(look() for _ in range(4))
    )
    pages = [r for r in results if len(r) == 2]
    for status, page in pages:
        assert status in (200, 503), page
        assert "No dead-lettered messages" not in page
        if status == 503:
            assert "dead-letter queue is busy" in page
        else:
            assert "The queue held" in page
            assert f'value="{ids[-1]}"' in page
    assert sum(1 for s, _ in pages if s == 200) >= 1
    status, page, location = next(r for r in results if len(r) == 3)  # type: ignore[misc]
    assert status == 303, page
    outcome = await ops.outcome(location)
    assert outcome == {i: "purged" for i in ids[:10]}
    left = set(await dead_letters(amqp))
    assert not set(ids[:10]) & left
    assert set(ids[10:]) <= left


# --- "all matching the filter" up to the look's cap (F9) ---


async def test_all_matching_moves_more_than_a_thousand(
    ops: Ops, test_env: RunEnv, amqp: aio_pika.abc.AbstractConnection
) -> None:
    """1200 dead letters: the confirmation's form, sent as a browser sends it, stays within
    aiohttp's 1000 form fields, and all 1200 are purged."""
    reason, ids = await dead_letters_of(test_env, amqp, 1200)
    status, page, _ = await ops.form(
        "/console/dlq/confirm", [("action", "purge-all"), ("reason", reason)]
    )
    assert status == 200, page
    assert "Purge 1200 messages?" in page
    assert sorted(confirmed_ids(page)) == sorted(ids)
    status, page, _ = await ops.form("/console/dlq/purge", confirm_fields(page))
    assert status == 303, page
    await gone_from_dlq(amqp, ids)


# --- the outcome URL stays short whatever the msg_ids (F17) ---


async def test_the_outcome_url_of_long_encoded_ids_stays_well_inside_a_request_line(
    ops: Ops, test_env: RunEnv, amqp: aio_pika.abc.AbstractConnection
) -> None:
    """CJK msg_ids of 80 characters (240 bytes, 720 percent-encoded) and some holding & = %:
    the redirect's query stays within 4000 bytes as sent, the page and its poll both work,
    and what is not followed is counted."""
    reason, _ = await dead_letters_of(test_env, amqp, 0)
    ids = [f"{reason}-{i:02d}-" + "中" * 80 for i in range(12)]
    ids += [f"{reason}-amp-{i}&ids=x%41=" for i in range(3)]
    channel = await amqp.channel(publisher_confirms=True)
    dlx = await channel.get_exchange(DLX)
    for msg_id in ids:
        message = aio_pika.Message(b"{}", message_id=msg_id, headers={H_REASON: reason})
        await dlx.publish(message, DEAD_KEY)
    await channel.close()
    status, page, _ = await ops.form(
        "/console/dlq/confirm", [("action", "purge-all"), ("reason", reason)]
    )
    assert status == 200, page
    assert sorted(confirmed_ids(page)) == sorted(ids)
    status, page, resp = await ops.form("/console/dlq/purge", confirm_fields(page))
    assert status == 303, page
    location = resp.headers["Location"]
    assert len(location.encode()) <= 4100
    status, page, _ = await ops.console.get(location)
    assert status == 200, page
    followed = page.count(">purged<")
    more = re.search(r"(\d+) more message\(s\) were purged", page)
    assert more is not None
    assert followed + int(more[1]) == len(ids)
    poll = re.search(r'data-poll="([^"]+)"', page)
    assert poll is not None
    async with ops.console.http.get(ops.gw.url + html.unescape(poll[1])) as resp:
        assert resp.status == 200
        data = await resp.json()
    polled = {o["msg_id"] for o in data["outcomes"]}
    assert len(polled) == followed
    assert polled <= set(ids)
    assert {o["status"] for o in data["outcomes"]} == {"purged"}
    await gone_from_dlq(amqp, ids)


# --- a replay the main queue refuses (F10) ---


async def test_a_replay_refused_by_a_full_main_queue_says_so_and_audits_it(
    ops: Ops,
    test_env: RunEnv,
    http: aiohttp.ClientSession,
    amqp: aio_pika.abc.AbstractConnection,
    db: asyncpg.Pool,
) -> None:
    """No worker; the main queue capped at one message with reject-publish and full: the
    replay is refused (nack). The page says the main queue refused it (not that RabbitMQ is
    unreachable), nothing is lost, and the audit trail follows 'requested' with 'failed'."""
    reason, ids = await dead_letters_of(test_env, amqp, 2)
    rabbitmqctl("set_policy", "-p", test_env.name, "--apply-to", "queues", "console-cap",
                r"^qcare\.ingest$", '{"max-length": 1, "overflow": "reject-publish"}')  # fmt: skip
    try:
        n = 0

        async def full() -> bool:
            nonlocal n
            n += 1
            async with http.post(
                ops.gw.url + UPDATE,
                data=order(f"{reason}-fill-{n}", f"ACC-{reason}-{n}"),
                headers={"Content-Type": "application/json", "X-Api-Key": POSTER_SECRET},
            ) as resp:
                return resp.status == 503

        await wait_for(full, 20, interval=0.2, what="the main queue full (a publish refused)")
        status, page, _ = await ops.form("/console/dlq/replay", [("ids", i) for i in ids])
        assert status == 503, page
        assert "main queue refused the message" in page
        assert "unreachable" not in page
        assert "0 message(s) moved" in page
        assert set(ids) <= set(await dead_letters(amqp))
        rows = await db.fetch(
            "SELECT subject, outcome FROM audit_log WHERE action = 'dlq_replay' "
            "AND subject = ANY($1::text[]) ORDER BY id",
            ids,
        )
        assert sorted((r["subject"], r["outcome"]) for r in rows) == sorted(
            [(i, "requested") for i in ids] + [(i, "failed") for i in ids]
        )
    finally:
        rabbitmqctl("clear_policy", "-p", test_env.name, "console-cap")


# --- ids no message can have (F5) ---


async def test_an_id_of_invalid_text_is_not_found_and_the_rest_move(
    ops: Ops, test_env: RunEnv, amqp: aio_pika.abc.AbstractConnection, db: asyncpg.Pool
) -> None:
    """A NUL or a lone surrogate in a msg_id sent to purge: that one is reported not in the
    queue (audited as such), the others move; no 503 for the whole batch, no 500."""
    reason, ids = await dead_letters_of(test_env, amqp, 2)
    token = await ops.console.csrf("/console/dlq")
    bad = [f"{reason}-nul\x00x", f"{reason}-sur\ud800x"]
    id_list = json.dumps([*bad, ids[0]])  # ASCII: the surrogate as \\ud800
    fields = [("csrf_token", token), ("id_list", id_list), ("ids", ids[1])]
    status, page, resp = await ops.form("/console/dlq/purge", fields, token=False)
    assert status == 303, page
    outcome = await ops.outcome(resp.headers["Location"])
    assert outcome[ids[0]] == outcome[ids[1]] == "purged"
    assert sorted(v for k, v in outcome.items() if k not in ids) == ["gone", "gone"]
    await gone_from_dlq(amqp, ids)
    rows = await db.fetch(
        "SELECT subject, outcome FROM audit_log WHERE action = 'dlq_purge' AND subject LIKE $1",
        f"{reason}-%",
    )
    assert sorted(r["outcome"] for r in rows) == [
        "not_found",
        "not_found",
        "requested",
        "requested",
    ]
