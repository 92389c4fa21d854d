"""FHIR R4 read views (issue 16): /fhir/metadata, ServiceRequest and Patient, read and search.

Answers are application/fhir+json. The edge middleware guards /fhir/ like /api/ (every
route needs the `read` scope: ROUTE_SCOPES); `as_outcomes`, around its checks, turns any
refusal or error on a /fhir/ path (401, 403, 404, 405, ...) into an OperationOutcome.
Every read of a Patient or ServiceRequest, found or not, writes one audit row before it
answers, naming the id or the search with identifiers masked (no row, no data).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import asyncpg
from aiohttp import web

from qcare_ingest import audit
from qcare_ingest.fhir_capability import capability_statement
from qcare_ingest.fhir_queries import (
    Conn,
    order_by_ref,
    patient_by_ref,
    search_orders,
    search_patients,
)
from qcare_ingest.fhir_resources import (
    MEDIA_TYPE,
    Json,
    operation_outcome,
    patient,
    searchset,
    service_request,
)
from qcare_ingest.fhir_search import Paging, SearchError, patient_search, request_search
from qcare_ingest.identifiers import (
    ACCESSION_SYSTEM,
    CHIT_SYSTEM,
    HKID_SYSTEM,
    PASSPORT_SYSTEM,
    patient_ref_from_fhir_id,
    request_ref_from_fhir_id,
)
from qcare_ingest.normalize import mask_id

from .views import CLIENT, POOL, SETTINGS

log = logging.getLogger(__name__)

PREFIX = "/fhir/"
FHIR_READ = "fhir_read"  # audit actions
FHIR_SEARCH = "fhir_search"
READ_TIMEOUT_S = 5
RETRY_AFTER_S = "5"
SUBJECT_MAX = 500  # characters of a search kept in its audit row

ROUTE_SCOPES: dict[str, str] = {
    "/fhir/metadata": "read",
    "/fhir/ServiceRequest": "read",
    "/fhir/ServiceRequest/{id}": "read",
    "/fhir/Patient": "read",
    "/fhir/Patient/{id}": "read",
    "/fhir/{tail}": "read",  # anything else under /fhir/: 404, to a key that may read
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def fhir_json(body: Json, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=json.dumps(body, ensure_ascii=False),
        status=status,
        content_type=MEDIA_TYPE,
        charset="utf-8",
        headers=headers,
    )


def outcome(status: int, code: str, diagnostics: str, **headers: str) -> web.Response:
    return fhir_json(operation_outcome(code, diagnostics), status, headers or None)


_CODES = {
    400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported",
    408: "timeout", 413: "too-costly", 415: "not-supported", 503: "transient",
}  # fmt: skip
_NO_SUCH = "No such FHIR endpoint: this server serves metadata, ServiceRequest and Patient."
_KEPT_HEADERS = ("WWW-Authenticate", "Retry-After", "Allow")


def _as_outcome(status: int, body: bytes | None, headers: Any) -> web.Response:
    """A refusal the edge or aiohttp wrote ({"Message": ...} or text) as an OperationOutcome,
    its status and its WWW-Authenticate / Retry-After / Allow kept."""
    diagnostics = f"HTTP {status}"
    try:
        message = json.loads(body or b"")["Message"]
        if isinstance(message, str):
            diagnostics = message
    except (ValueError, KeyError, TypeError):
        if status == 404:
            diagnostics = _NO_SUCH
        elif status == 405:
            diagnostics = "This FHIR server is read-only: GET only."
    kept = {h: headers[h] for h in _KEPT_HEADERS if h in headers}
    return outcome(status, _CODES.get(status, "exception"), diagnostics, **kept)


async def as_outcomes(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Errors on /fhir/ paths as OperationOutcomes (the gateway's middleware calls it around
    its own checks, so their 401/403 are rewritten too)."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _as_outcome(
            exc.status, exc.body if isinstance(exc.body, bytes) else None, exc.headers
        )
    if (
        response.status >= 400
        and isinstance(response, web.Response)
        and response.content_type != MEDIA_TYPE
    ):
        body = response.body if isinstance(response.body, bytes) else None
        return _as_outcome(response.status, body, response.headers)
    return response


def base_url(request: web.Request) -> str:
    return str(request.url.origin()) + PREFIX.rstrip("/")


async def metadata(request: web.Request) -> web.Response:
    auth = bool(request.app[SETTINGS].api_keys)
    return fhir_json(capability_statement(base_url(request), auth))


def _unavailable(exc: BaseException) -> web.Response:
    log.warning("fhir read failed", extra={"action": "read_failed", "error": type(exc).__name__})
    return outcome(
        503,
        "transient",
        "The database is unavailable; retry later.",
        **{"Retry-After": RETRY_AFTER_S},
    )


_DB_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


async def _audited(
    request: web.Request,
    read: Callable[[Conn], Awaitable[Any]],
    action: str,
    subject: str,
    found: Callable[[Any], bool],
) -> Any:
    """The read, then its audit row on the same connection (raises: nothing is shown)."""
    async with asyncio.timeout(READ_TIMEOUT_S):
        async with request.app[POOL].acquire() as conn:
            result = await read(conn)
            await audit.record(
                conn,
                who=request.get(CLIENT) or audit.ANONYMOUS,
                action=action,
                subject=subject[:SUBJECT_MAX],
                client=request.remote,
                outcome="shown" if found(result) else "not_found",
            )
    return result


def masked_patient_id(fhir_id: str) -> str:
    """A Patient id for the audit trail and logs: `hkid-A12****(3)`."""
    ref = patient_ref_from_fhir_id(fhir_id)
    if ref is None:
        return "(not a Patient id)"
    kind = fhir_id.split("-", 1)[0]
    if ref.value is not None:
        return f"{kind}-{mask_id(ref.value.split(':', 1)[1])}"
    return f"{kind}-sha-{(ref.digest or '')[:8]}..."


_SYSTEMS = frozenset((ACCESSION_SYSTEM, CHIT_SYSTEM, HKID_SYSTEM, PASSPORT_SYSTEM))


def _masked_token(value: str) -> str:
    """An identifier token with its value masked; an accession number is kept (it is no
    personal data: GET /orders audits it whole). A system that is not one of ours is
    masked too: `A1234563|urn:qcare:id:hkid` (system and value swapped) is an HKID."""
    system, sep, code = value.rpartition("|")
    if not sep:
        return mask_id(code)
    shown = system if system in _SYSTEMS else mask_id(system)
    return f"{shown}|{code if system == ACCESSION_SYSTEM else mask_id(code)}"


def masked_search(resource: str, pairs: list[tuple[str, str]]) -> str:
    """`Patient?identifier=urn:qcare:id:hkid|A12****(3)`: identifiers and patient ids masked."""
    shown = []
    for name, value in pairs:
        if name == "identifier":
            value = ",".join(_masked_token(v) for v in value.split(","))
        elif name == "patient" or (resource == "Patient" and name == "_id"):
            value = ",".join(masked_patient_id(v.rsplit("/", 1)[-1]) for v in value.split(","))
        shown.append((name, value))
    return f"{resource}?{urlencode(shown, safe='|:,/()*')}"


def _links(request: web.Request, paging: Paging, total: int) -> dict[str, str]:
    kept = [(k, v) for k, v in request.query.items() if k not in ("_count", "_offset")]
    url = str(request.url.origin()) + request.path

    def at(offset: int) -> str:
        query = [*kept, ("_count", str(paging.count)), ("_offset", str(offset))]
        return f"{url}?{urlencode(query, safe=':/,')}"

    links = {"self": at(paging.offset)}
    if paging.count > 0 and paging.offset + paging.count < total:
        links["next"] = at(paging.offset + paging.count)
    if paging.offset > 0 and paging.count > 0:
        links["previous"] = at(max(paging.offset - paging.count, 0))
    return links


async def read_service_request(request: web.Request) -> web.Response:
    fhir_id = request.match_info["id"]
    ref = request_ref_from_fhir_id(fhir_id)
    subject = f"ServiceRequest/{fhir_id if ref is not None else '(not an id)'}"
    try:
        order = await _audited(
            request,
            lambda conn: order_by_ref(conn, ref) if ref is not None else _none(),
            FHIR_READ,
            subject,
            lambda o: o is not None,
        )
    except _DB_ERRORS as exc:
        return _unavailable(exc)
    if order is None:
        return outcome(404, "not-found", "No ServiceRequest with that id is known.")
    return fhir_json(service_request(order.row, order.services))


async def _none() -> None:
    return None


async def _search_view(
    request: web.Request,
    parse: Callable[[list[tuple[str, str]]], Any],
    query: Callable[[Conn, Any], Awaitable[Any]],
    resource: str,
    render: Callable[[Any], Json],
) -> web.Response:
    """A search: parse the query (400 OperationOutcome), read one page (audited), bundle."""
    pairs = list(request.query.items())
    try:
        search = parse(pairs)
    except SearchError as exc:
        return outcome(400, exc.code, exc.diagnostics)
    try:
        page = await _audited(
            request,
            lambda conn: query(conn, search),
            FHIR_SEARCH,
            masked_search(resource, pairs),
            lambda p: bool(p.items),
        )
    except _DB_ERRORS as exc:
        return _unavailable(exc)
    entries = [render(item) for item in page.items]
    links = _links(request, search.paging, page.total)
    return fhir_json(searchset(base_url(request), entries, page.total, links))


async def search_service_requests(request: web.Request) -> web.Response:
    return await _search_view(
        request,
        request_search,
        search_orders,
        "ServiceRequest",
        lambda o: service_request(o.row, o.services),
    )


async def read_patient(request: web.Request) -> web.Response:
    fhir_id = request.match_info["id"]
    ref = patient_ref_from_fhir_id(fhir_id)
    try:
        row = await _audited(
            request,
            lambda conn: patient_by_ref(conn, ref) if ref is not None else _none(),
            FHIR_READ,
            f"Patient/{masked_patient_id(fhir_id)}",
            lambda r: r is not None,
        )
    except _DB_ERRORS as exc:
        return _unavailable(exc)
    if row is None:
        return outcome(404, "not-found", "No Patient with that id is known.")
    return fhir_json(patient(row))


async def search_patients_view(request: web.Request) -> web.Response:
    return await _search_view(request, patient_search, search_patients, "Patient", patient)


async def unknown(request: web.Request) -> web.Response:
    return outcome(404, "not-found", _NO_SUCH)


def add_routes(app: web.Application) -> None:
    """The FHIR routes (call once, in create_app)."""
    app.router.add_get("/fhir/metadata", metadata)
    app.router.add_get("/fhir/ServiceRequest", search_service_requests)
    app.router.add_get("/fhir/ServiceRequest/{id}", read_service_request)
    app.router.add_get("/fhir/Patient", search_patients_view)
    app.router.add_get("/fhir/Patient/{id}", read_patient)
    app.router.add_get("/fhir/{tail:.*}", unknown)
