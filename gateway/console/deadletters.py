"""Dead-letter pages under /console/dlq (issue 15).

GET /console/dlq lists what the queue holds (qcare_ingest.console_dlq.peek: at most
LIST_CAP rows, the queue held for a fraction of a second); POST /console/dlq/confirm turns a
selection (or "all matching the filter") into a confirmation page naming every message;
POST /console/dlq/replay|purge moves exactly those, after writing an audit row for each,
and redirects (303) to GET /console/dlq/outcome, which follows what became of them
(dlq.js polls /console/dlq/outcome.json until every one is final).

The console middleware has checked the session and the CSRF token of every POST.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import aio_pika
import aiormq
import asyncpg
from aio_pika.abc import AbstractChannel
from aiohttp import web

from qcare_ingest import console_dlq
from qcare_ingest.console_dlq import ACTIONS, OUTCOME_IDS, SCAN_CAP, Action, BrokerLink
from qcare_ingest.dlq import shown_id

from ..views import POOL, SETTINGS
from .render import USER, error_page, flash, render

log = logging.getLogger(__name__)

LINK = web.AppKey("console_dlq_link", BrokerLink)
HOLD = web.AppKey("console_dlq_hold", asyncio.Lock)
BROKER_S = 15.0  # a look or a move, at most
BUSY_S = 10.0  # a look or a move waits this long, at most, for the one before it
DB_S = 5.0
CONFIRM_SHOWN = 200  # msg_ids the confirmation page lists by name
MAX_ID_CHARS = 1024  # a msg_id is at most 255 bytes; anything longer is not one
LOGGED_IDS = 20
URL_CHARS = 4000  # the outcome URL's query, percent-encoded, at most (aiohttp: 8190 a line)
BROKER_ERRORS = (
    ConnectionError,
    RuntimeError,  # aiormq's ChannelInvalidStateError: a connection the broker closed
    OSError,
    TimeoutError,
    aio_pika.exceptions.AMQPException,
    aiormq.exceptions.AMQPError,
)
DB_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


REFUSED = (
    "The gateway's RabbitMQ user may not read the dead-letter queue: it needs read "
    "permission on qcare.ingest.dlq (see qcare_ingest/topology.py PERMISSIONS)."
)


REFUSED_BY_QUEUE = (
    "The main queue refused the message (RabbitMQ did not accept the publish: the queue "
    "may be full, with a max-length and reject-publish)."
)


def _broker_trouble(exc: BaseException) -> str:
    if isinstance(exc, aiormq.exceptions.ChannelAccessRefused):
        return REFUSED
    if isinstance(exc, aiormq.exceptions.DeliveryError):  # a nack, or returned unroutable
        return REFUSED_BY_QUEUE
    return "RabbitMQ is unreachable, or did not answer in time."


class Busy(Exception):
    """Another look or move held the dead-letter queue for longer than BUSY_S."""


@contextlib.asynccontextmanager
async def _hold(request: web.Request) -> AsyncIterator[AbstractChannel]:
    """A channel on the dead-letter queue, for one look or move at a time in this gateway.

    A look holds every message it reads (unacked) until its channel closes: two at once
    split the queue between them, and each saw part of it (an empty queue, or a message
    to move "gone"). So they take turns: the next one waits up to BUSY_S (Busy after)."""
    lock = request.app[HOLD]
    try:
        async with asyncio.timeout(BUSY_S):
            await lock.acquire()
    except TimeoutError:
        raise Busy from None
    try:
        async with asyncio.timeout(BROKER_S):
            async with request.app[LINK].channel() as channel:
                yield channel
    finally:
        lock.release()


def _busy(request: web.Request) -> web.Response:
    response = error_page(
        request,
        503,
        "Dead-letter queue busy",
        "The dead-letter queue is busy: another look or move is reading it. Nothing was "
        "moved. Retry in a moment.",
    )
    response.headers["Retry-After"] = "2"
    return response


def _unavailable(request: web.Request, what: str) -> web.Response:
    return error_page(
        request,
        503,
        "Dead letters unavailable",
        f"{what} Nothing was moved. Try again shortly.",
    )


def _reason(request: web.Request) -> str | None:
    reason = request.query.get("reason", "").strip()
    return reason or None


async def list_page(request: web.Request) -> web.Response:
    reason = _reason(request)
    try:
        async with _hold(request) as channel:
            listing = await console_dlq.peek(channel, reason)
    except Busy:
        return _busy(request)
    except BROKER_ERRORS as exc:
        log.warning("dead letters unreadable", extra={"action": "dlq_unreadable",
                                                      "error": type(exc).__name__})  # fmt: skip
        return error_page(
            request,
            503,
            "Dead letters unavailable",
            f"The dead-letter queue cannot be read right now. {_broker_trouble(exc)}",
        )
    reasons = listing.reasons
    if reason is not None and reason not in {r for r, _ in reasons}:
        reasons = [*reasons, (reason, 0)]
    return render(request, "dlq.html", listing=listing, reason=reason, reasons=reasons)


def _ids(form: Any) -> list[str]:
    """The msg_ids a form names: ticked boxes (`ids`, one field each: at most LIST_CAP of
    them) and the confirmation's `id_list`, one field holding a JSON array. One field per
    id would pass aiohttp's limit of 1000 form fields (a 413) for "all matching" past 999."""
    values = [v for v in form.getall("ids", []) if isinstance(v, str)]
    raw = form.get("id_list")
    if isinstance(raw, str) and raw:
        try:
            listed = json.loads(raw)
        except (ValueError, RecursionError):
            listed = None
        if isinstance(listed, list):
            values += [v for v in listed if isinstance(v, str)]
    values = [_as_text(v) for v in values if len(v) <= MAX_ID_CHARS]
    return console_dlq.distinct(values)[:SCAN_CAP]


def _as_text(msg_id: str) -> str:
    """A msg_id no message can have (a NUL, a lone surrogate: neither AMQP's intake nor
    PostgreSQL text holds one) as `dlq list` prints it, escaped: it is then simply not
    found, and its audit row and outcome URL can hold it. It must not refuse the batch."""
    try:
        msg_id.encode("utf-8")
    except UnicodeEncodeError:
        return shown_id(msg_id)
    return shown_id(msg_id) if "\x00" in msg_id else msg_id


def id_list(ids: list[str]) -> str:
    """The confirmation form's one field naming every message (ASCII JSON: any msg_id,
    a lone surrogate or a control character included, comes back as it was)."""
    return json.dumps(ids, separators=(",", ":"))


def _back(reason: str | None, message: str) -> web.HTTPSeeOther:
    target = "/console/dlq" + (f"?{urlencode({'reason': reason})}" if reason else "")
    response = web.HTTPSeeOther(target)
    flash(response, message)
    return response


async def confirm(request: web.Request) -> web.Response:
    form = await request.post()
    raw_action = form.get("action")
    raw_reason = form.get("reason")
    reason = raw_reason.strip() or None if isinstance(raw_reason, str) else None
    every = isinstance(raw_action, str) and raw_action.endswith("-all")
    action = raw_action.removesuffix("-all") if isinstance(raw_action, str) else None
    if action not in ACTIONS:
        return error_page(request, 400, "Unknown action", "Choose Replay or Purge.")
    if every:
        try:
            async with _hold(request) as channel:
                ids = (await console_dlq.matching_ids(channel, reason))[:SCAN_CAP]
        except Busy:
            return _busy(request)
        except BROKER_ERRORS as exc:
            return _unavailable(
                request, f"The dead-letter queue cannot be read right now. {_broker_trouble(exc)}"
            )
    else:
        ids = _ids(form)
    if not ids:
        raise _back(reason, "Nothing selected: tick the messages to move first.")
    return render(
        request,
        "dlq_confirm.html",
        action=action,
        ids=ids,
        id_list=id_list(ids),
        shown=[(i, shown_id(i)) for i in ids[:CONFIRM_SHOWN]],
        more=max(len(ids) - CONFIRM_SHOWN, 0),
        reason=reason,
        every=every,
    )


class AuditUnwritten(Exception):
    """The audit rows of a move could not be written: nothing moves."""


async def _moved(
    request: web.Request, action: Action, ids: list[str], who: str
) -> console_dlq.Moved | web.Response:
    moving = False
    pool = request.app[POOL]
    try:
        async with _hold(request) as channel:
            try:
                conn = await pool.acquire(timeout=DB_S)
            except DB_ERRORS as exc:
                raise AuditUnwritten(type(exc).__name__) from exc
            try:

                async def audited(found: list[str], gone: list[str]) -> datetime:
                    nonlocal moving
                    try:
                        async with asyncio.timeout(DB_S):
                            at = await console_dlq.audit_move(
                                conn, who, request.remote, action, found, gone
                            )
                    except DB_ERRORS as exc:
                        raise AuditUnwritten(type(exc).__name__) from exc
                    moving = True
                    return at

                return await console_dlq.move(channel, action, ids, audited)
            finally:
                await pool.release(conn)
    except Busy:
        return _busy(request)
    except console_dlq.Interrupted as stopped:
        return await _interrupted(request, action, who, stopped)
    except AuditUnwritten as exc:
        log.warning("dead letters not moved: no audit rows",
                    extra={"action": f"dlq_{action}_refused", "client": who,
                           "error": str(exc) or type(exc).__name__})  # fmt: skip
        return _unavailable(
            request, "The audit trail cannot be written (the database is unavailable)."
        )
    except BROKER_ERRORS as exc:
        log.warning("dead letters not moved: broker",
                    extra={"action": f"dlq_{action}_failed", "client": who,
                           "error": type(exc).__name__, "partly": moving})  # fmt: skip
        if moving:  # some may have moved before RabbitMQ went away
            return error_page(
                request,
                503,
                "Interrupted",
                f"{_broker_trouble(exc)} The {action} was interrupted: some messages "
                "may have moved. Reload the dead letters to see what is left.",
            )
        return _unavailable(request, _broker_trouble(exc))


async def _interrupted(
    request: web.Request, action: Action, who: str, stopped: console_dlq.Interrupted
) -> web.Response:
    """A move stopped part way: the audit trail gets a 'failed' row for each message that
    did not move, and the page says why and how many moved."""
    exc = stopped.cause
    log.warning("dead letters partly moved",
                extra={"action": f"dlq_{action}_failed", "client": who,
                       "error": type(exc).__name__, "moved": stopped.moved.copies,
                       "left": len(stopped.left)})  # fmt: skip
    try:
        async with asyncio.timeout(DB_S):
            async with request.app[POOL].acquire() as conn:
                await console_dlq.audit_failed(conn, who, request.remote, action, stopped.left)
    except DB_ERRORS as db_exc:
        log.error("dead letters: the 'failed' audit rows were not written",
                  extra={"action": f"dlq_{action}_unaudited", "client": who,
                         "error": type(db_exc).__name__, "left": len(stopped.left)})  # fmt: skip
    moved = len(stopped.moved.done)
    return error_page(
        request,
        503,
        "Interrupted",
        f"{_broker_trouble(exc)} The {action} stopped part way: {moved} message(s) moved, "
        f"{len(stopped.left)} did not and stay in the dead-letter queue. Reload the dead "
        "letters to see what is left.",
    )


async def _move(request: web.Request, action: Action) -> web.StreamResponse:
    form = await request.post()
    ids = _ids(form)
    if not ids:
        raise _back(None, "Nothing selected: nothing was moved.")
    who = request.get(USER) or "anonymous"
    remote = request.remote
    moved = await _moved(request, action, ids, who)
    if isinstance(moved, web.Response):
        return moved
    log.info(
        f"dead letters {'replayed' if action == 'replay' else 'purged'} by the console",
        extra={"action": f"dlq_{action}", "client": who, "remote": remote,
               "count": len(moved.done), "copies": moved.copies, "gone": len(moved.gone),
               "msg_ids": [shown_id(m) for m in moved.done[:LOGGED_IDS]]},
    )  # fmt: skip
    query: list[tuple[str, str]] = [("action", action)]
    if moved.at is not None:
        query.append(("at", moved.at.isoformat()))
    if not moved.complete:
        query.append(("bounded", "1"))
    # the outcome page follows at most OUTCOME_IDS of them, in a query of at most URL_CHARS
    # bytes as sent (aiohttp refuses a request line over 8190 bytes; a msg_id may be 255
    # bytes, 765 percent-encoded): well inside, the rest counted as "and N more"
    size = len(urlencode(query))
    followed = 0
    for name, ids_of in (("ids", moved.done), ("gone", moved.gone)):
        for msg_id in ids_of:
            part = len(urlencode([(name, msg_id)])) + 1
            if followed >= OUTCOME_IDS or size + part > URL_CHARS:
                break
            query.append((name, msg_id))
            size += part
            followed += 1
    more = len(moved.done) + len(moved.gone) - followed
    if more:
        query.append(("more", str(more)))
    raise web.HTTPSeeOther("/console/dlq/outcome?" + urlencode(query))


async def replay(request: web.Request) -> web.StreamResponse:
    return await _move(request, "replay")


async def purge(request: web.Request) -> web.StreamResponse:
    return await _move(request, "purge")


def _outcome_query(
    request: web.Request,
) -> tuple[Action, list[str], list[str], datetime | None, int]:
    action: Action
    match request.query.get("action"):
        case "replay":
            action = "replay"
        case "purge":
            action = "purge"
        case _:
            raise web.HTTPBadRequest(text="action must be replay or purge")
    try:
        at = datetime.fromisoformat(request.query.get("at", ""))
    except ValueError:
        at = None
    ids = console_dlq.distinct(request.query.getall("ids", []))[:OUTCOME_IDS]
    gone = console_dlq.distinct(request.query.getall("gone", []))[:OUTCOME_IDS]
    try:
        more = max(int(request.query.get("more", "0")), 0)
    except ValueError:
        more = 0
    return action, ids, gone, at, more


async def _outcomes(
    request: web.Request, action: Action, ids: list[str], gone: list[str], at: datetime | None
) -> list[console_dlq.Outcome] | None:
    if "\x00" in "".join(ids):  # PostgreSQL text holds no NUL: such an id has no inbox row
        ids = [i for i in ids if "\x00" not in i]
    try:
        async with asyncio.timeout(DB_S):
            async with request.app[POOL].acquire() as conn:
                return await console_dlq.outcomes(
                    conn, action, ids, gone, at, complete=request.query.get("bounded") != "1"
                )
    except DB_ERRORS as exc:
        log.warning("dlq outcomes unreadable", extra={"action": "dlq_outcome_failed",
                                                      "error": type(exc).__name__})  # fmt: skip
        return None


async def outcome_page(request: web.Request) -> web.Response:
    try:
        action, ids, gone, at, more = _outcome_query(request)
    except web.HTTPBadRequest:
        return error_page(request, 400, "Unknown action", "This outcome link is not valid.")
    outs = await _outcomes(request, action, ids, gone, at)
    return render(
        request,
        "dlq_outcome.html",
        action=action,
        outcomes=outs,
        final=outs is not None and all(o.final for o in outs),
        more=more,
        # as it came, percent-encoded: decoded, a msg_id holding & or = would split
        poll="/console/dlq/outcome.json?" + request.rel_url.raw_query_string,
    )


async def outcome_json(request: web.Request) -> web.Response:
    try:
        action, ids, gone, at, _ = _outcome_query(request)
    except web.HTTPBadRequest:
        return web.json_response({"error": "action must be replay or purge"}, status=400)
    outs = await _outcomes(request, action, ids, gone, at)
    if outs is None:
        return web.json_response({"error": "database unavailable", "final": False}, status=503)
    return web.json_response(
        {"outcomes": [o.as_dict() for o in outs], "final": all(o.final for o in outs)}
    )


async def _link(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[LINK] = BrokerLink(settings.amqp_url, settings.amqp_ca_file)
    app[HOLD] = asyncio.Lock()
    yield
    await app[LINK].close()


def add_routes(app: web.Application) -> None:
    """GET /console/dlq, POST /console/dlq/confirm|replay|purge, GET /console/dlq/outcome."""
    app.cleanup_ctx.append(_link)
    app.router.add_get("/console/dlq", list_page)
    app.router.add_post("/console/dlq/confirm", confirm)
    app.router.add_post("/console/dlq/replay", replay)
    app.router.add_post("/console/dlq/purge", purge)
    app.router.add_get("/console/dlq/outcome", outcome_page)
    app.router.add_get("/console/dlq/outcome.json", outcome_json)
