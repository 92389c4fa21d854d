"""Search, message and order pages:

GET  /console/messages                      search (q, status, from, to, page)
GET  /console/messages/{msg_id}             one message, personal data masked
POST /console/messages/{msg_id}/reveal      audited (message_reveal), then unmasked
GET  /console/orders/{accession_no}         one order with the provenance of each field
POST /console/orders/{accession_no}/reveal  audited (order_read), then unmasked

A reveal writes its audit row first, on the connection that reads the data: no row, no
data (503). The database unavailable is a 503 page, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlencode

import asyncpg
from aiohttp import web

from qcare_ingest import audit, console_queries
from qcare_ingest.console_queries import STATUSES, Search, provenance
from qcare_ingest.dates import HONG_KONG
from qcare_ingest.normalize import mask_id
from qcare_ingest.store import ORDER_COLUMNS, PATIENT_COLUMNS

from ..views import POOL
from .render import USER, error_page, render
from .renditions import body_rendition, dto_table, mask_value, shown

log = logging.getLogger(__name__)

MESSAGE_REVEAL = "message_reveal"
MESSAGE_SEARCH = "message_search"
DB_TIMEOUT_S = 5.0
T = TypeVar("T")
HANDLE_S = 30 * 60  # a search's handle lasts as long as an idle session
RENDERS_AT_ONCE = 2  # message pages rendered at once (threads; the rest wait their turn)
_RENDERS = asyncio.Semaphore(RENDERS_AT_ONCE)
YEARS = (1970, 9999)  # a search's time bounds, in UTC
DB_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class Unavailable(Exception):
    """The database could not answer (the page says so: 503)."""


async def _db(
    request: web.Request,
    query: Callable[[Any], Awaitable[T]],
    audited: tuple[str, str] | None = None,
) -> T:
    """query(conn); with `audited` (action, subject), the audit row is written in one
    transaction with the read and committed before anything is returned (no row, no data)."""
    try:
        async with asyncio.timeout(DB_TIMEOUT_S), request.app[POOL].acquire() as conn:
            if audited is None:
                return await query(conn)
            async with conn.transaction():
                found = await query(conn)
                await audit.record(
                    conn,
                    who=request.get(USER) or audit.ANONYMOUS,
                    action=audited[0],
                    subject=audited[1],
                    client=request.remote,
                    outcome="not_found" if found is None else "shown",
                )
            return found
    except DB_ERRORS as exc:
        log.warning(
            "console read failed", extra={"action": "read_failed", "error": type(exc).__name__}
        )
        raise Unavailable from None


def _unavailable(request: web.Request, what: str = "This page") -> web.Response:
    response = error_page(
        request,
        503,
        "Database unavailable",
        f"{what} cannot be shown right now: the database did not answer. Try again shortly.",
    )
    response.headers["Retry-After"] = "5"
    return response


# --- search ---


def _when(text: str, label: str, errors: list[str]) -> datetime | None:
    """A datetime-local value (Hong Kong time unless it carries an offset)."""
    if not text.strip():
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        errors.append(f"{label}: not a date and time (use YYYY-MM-DD HH:MM).")
        return None
    value = value if value.tzinfo is not None else value.replace(tzinfo=HONG_KONG)
    try:  # year 1 in Hong Kong is year 0 in UTC: the database cannot take it (was a 503)
        year = value.astimezone(UTC).year
    except OverflowError:
        year = 0
    if not YEARS[0] <= year <= YEARS[1]:
        errors.append(f"{label}: out of range (years {YEARS[0]} to {YEARS[1]}).")
        return None
    return value


def _criteria(query: Any) -> tuple[Search, list[str]]:
    errors: list[str] = []
    status = query.get("status", "").strip() or None
    if status is not None and status not in STATUSES:
        errors.append("Status: choose one of the listed statuses.")
        status = None
    try:
        page = int(query.get("page", "1") or "1")
    except ValueError:
        page = 1
    q = query.get("q", "").strip()[:300]
    since = _when(query.get("from", ""), "Received from", errors)
    until = _when(query.get("to", ""), "Received to", errors)
    return Search(q=q, status=status, since=since, until=until, page=max(page, 1)), errors


class SearchTerms:
    """What was typed in the search box, kept in this process behind a random handle, so
    an HKID or passport number never goes into a URL (history, logs, `next=`, links).
    A handle belongs to the operator who searched and lasts as long as an idle session."""

    MAX = 10_000

    def __init__(self) -> None:
        self._terms: dict[str, tuple[str, str, float]] = {}  # handle -> (who, q, until)

    def keep(self, who: str, q: str, now: float) -> str:
        if len(self._terms) >= self.MAX:
            self._terms = {h: t for h, t in self._terms.items() if t[2] > now}
            while len(self._terms) >= self.MAX:  # still full: forget the oldest
                del self._terms[next(iter(self._terms))]
        handle = secrets.token_urlsafe(12)
        self._terms[handle] = (who, q, now + HANDLE_S)
        return handle

    def get(self, who: str, handle: str, now: float) -> str | None:
        found = self._terms.get(handle)
        if found is None or found[0] != who or found[2] < now:
            return None
        return found[1]


TERMS = SearchTerms()


def patient_label(patient_key: str | None) -> str:
    """`HKID:A1234563` -> `HKID A12****(3)`: the result list never shows an identifier."""
    if not patient_key:
        return "-"
    kind, _, value = patient_key.partition(":")
    return f"{kind} {mask_id(value)}"


async def _audited_search(
    request: web.Request, conn: Any, criteria: Search
) -> tuple[list[dict[str, Any]], bool]:
    """A search that may have found a person by HKID or passport is a read of personal
    data: its audit row (the identifier masked) is committed with the read, before any
    result is shown."""
    async with conn.transaction():
        rows, has_next = await console_queries.search(conn, criteria)
        if console_queries.by_identifier(criteria.q, rows):
            await audit.record(
                conn,
                who=request.get(USER) or audit.ANONYMOUS,
                action=MESSAGE_SEARCH,
                subject=mask_id(criteria.q),
                client=request.remote,
                outcome="shown" if rows else "not_found",
            )
    return rows, has_next


async def search_post(request: web.Request) -> web.StreamResponse:
    """The search form (POST, CSRF-checked): the term is kept behind a handle and the
    browser is sent to the results page (GET), whose URL holds the handle, not the term."""
    form = await request.post()
    params = {
        k: v.strip()
        for k in ("status", "from", "to")
        if isinstance(v := form.get(k, ""), str) and v.strip()
    }
    q = form.get("q", "")
    if isinstance(q, str) and q.strip():
        who = request.get(USER) or audit.ANONYMOUS
        params["h"] = TERMS.keep(who, q.strip()[:300], time.time())
    raise web.HTTPSeeOther("/console/messages?" + urlencode(params))


async def search(request: web.Request) -> web.Response:
    query: Any = request.query
    handle = request.query.get("h")
    if handle is not None:
        q = TERMS.get(request.get(USER) or audit.ANONYMOUS, handle, time.time())
        if q is None:
            return error_page(
                request,
                400,
                "Search expired",
                "This search is no longer known to the console (it is kept for 30 minutes, "
                "by the gateway that ran it). Search again.",
            )
        query = {**request.query, "q": q}
    criteria, errors = _criteria(query)
    if errors:
        return render(
            request,
            "messages.html",
            status=400,
            errors=errors,
            rows=[],
            form=query,
            statuses=STATUSES,
            searched=False,
        )
    try:
        rows, has_next = await _db(request, lambda c: _audited_search(request, c, criteria))
    except Unavailable:
        return _unavailable(request, "The search")
    for row in rows:
        row["patient"] = patient_label(row["patient_key"])
    params = {k: v for k, v in request.query.items() if k != "page" and v}  # h, not q

    def page_url(page: int) -> str:
        return "/console/messages?" + urlencode({**params, "page": str(page)})

    return render(
        request,
        "messages.html",
        rows=rows,
        form=query,
        statuses=STATUSES,
        errors=[],
        searched=bool(params),
        page=criteria.page,
        prev_url=page_url(criteria.page - 1) if criteria.page > 1 else None,
        next_url=page_url(criteria.page + 1) if has_next else None,
    )


# --- message ---


def _lag(received: datetime | None, processed: datetime | None) -> str:
    if received is None or processed is None:
        return "-"
    ms = (processed - received).total_seconds() * 1000
    return f"{ms:,.0f} ms" if ms < 10_000 else f"{ms / 1000:,.1f} s"


async def _message_page(request: web.Request, reveal: bool) -> web.Response:
    msg_id = request.match_info["msg_id"]
    audited = (MESSAGE_REVEAL, msg_id) if reveal else None
    try:
        msg = await _db(request, lambda c: console_queries.message(c, msg_id), audited)
    except Unavailable:
        return _unavailable(request, "This message")
    if msg is None:
        return error_page(
            request,
            404,
            "Message not found",
            "No message with that msg_id is known (it may still be queued, "
            "or it was never received, or it has been pruned).",
        )
    return await rendered_message(request, msg, reveal)


def _message_response(request: web.Request, msg: dict[str, Any], reveal: bool) -> web.Response:
    journal = msg["journal"]
    body = dto = None
    if journal is not None:
        # a message queued before the journal existed has its canonical JSON as its body
        ctype = journal["content_type"] if journal["as_received"] else "application/json"
        body = body_rendition(bytes(journal["body"]), ctype, reveal)
        dto = dto_table(journal["dto"], reveal)
    return render(
        request,
        "message.html",
        msg=msg,
        journal=journal,
        body=body,
        dto=dto,
        revealed=reveal,
        patient=(msg["patient_key"] or "-") if reveal else patient_label(msg["patient_key"]),
        lag=_lag(msg["received_at"], msg["processed_at"]),
    )


async def rendered_message(request: web.Request, msg: dict[str, Any], reveal: bool) -> web.Response:
    """Parsing, masking and rendering a body of up to a few MiB takes up to half a
    second: done in a thread, at most RENDERS_AT_ONCE at a time, so that views of big
    messages never hold up the intake on the event loop."""
    async with _RENDERS:
        return await asyncio.to_thread(_message_response, request, msg, reveal)


async def message(request: web.Request) -> web.Response:
    return await _message_page(request, reveal=False)


async def message_reveal(request: web.Request) -> web.Response:
    return await _message_page(request, reveal=True)


# --- order ---

ORDER_LABELS = {"patient": "patient (key)"}


def _field(
    name: str, value: Any, versions: dict[str, Any], reveal: bool, personal: bool
) -> dict[str, Any]:
    masked = not reveal and value not in (None, "") and (personal or not shown(name))
    if masked:
        if name == "patient" and isinstance(value, str):
            shown_value: Any = patient_label(value)
        else:
            shown_value = mask_value(name, value)
    else:
        shown_value = value
    return {
        "name": ORDER_LABELS.get(name, name),
        "value": "" if shown_value is None else str(shown_value),
        "masked": masked,
        "set_by": provenance(versions.get(name)),
    }


def order_fields(row: dict[str, Any], reveal: bool) -> tuple[list[Any], list[Any]]:
    """(order fields, patient fields), each with the message that set it."""
    versions = row["field_versions"]
    fields = [
        _field("accessionNo", row["accession_no"], {}, reveal, False),
        *(
            _field(name, row[column], versions, reveal, False)
            for name, column in ORDER_COLUMNS.items()
        ),
    ]
    p_versions = row["p_field_versions"]
    patient = [
        _field(name, row[column], p_versions, reveal, True)
        for name, column in PATIENT_COLUMNS.items()
    ]
    return fields, patient


async def _order_page(request: web.Request, reveal: bool) -> web.Response:
    accession = request.match_info["accession_no"]
    audited = (audit.ORDER_READ, accession) if reveal else None
    try:
        row = await _db(request, lambda c: console_queries.order(c, accession), audited)
    except Unavailable:
        return _unavailable(request, "This order")
    if row is None:
        return error_page(
            request, 404, "Order not found", "No order with that accession number is known."
        )
    fields, patient = order_fields(row, reveal)
    return render(
        request,
        "order.html",
        order=row,
        fields=fields,
        patient=patient,
        has_patient=row["p_key"] is not None,
        services_set_by=provenance(row["field_versions"].get("services")),
        revealed=reveal,
    )


async def order(request: web.Request) -> web.Response:
    return await _order_page(request, reveal=False)


async def order_reveal(request: web.Request) -> web.Response:
    return await _order_page(request, reveal=True)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/console/messages", search)
    app.router.add_post("/console/messages", search_post)
    app.router.add_get("/console/messages/{msg_id:.+}", message)
    app.router.add_post("/console/messages/{msg_id:.+}/reveal", message_reveal)
    app.router.add_get("/console/orders/{accession_no:.+}", order)
    app.router.add_post("/console/orders/{accession_no:.+}/reveal", order_reveal)
