"""HTTP handlers: the legacy intake (bind -> confirmed publish -> 200) and the reads."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
from aiohttp import web

from qcare_ingest import audit, metrics
from qcare_ingest.answers import error_json, error_xml, message_xml, problems
from qcare_ingest.api_models import MessageView, OrderView
from qcare_ingest.binding import BindResult, Format, UnsupportedMediaTypeError, bind, select_format
from qcare_ingest.broker import Publisher
from qcare_ingest.config import Settings
from qcare_ingest.envelope import Envelope, now_utc
from qcare_ingest.errors import PublishError, UnpublishableError
from qcare_ingest.heap import release_free_memory
from qcare_ingest.limits import MAX_MESSAGE_BYTES
from qcare_ingest.views import message_view, order_view

from .accepted_log import AcceptedLog
from .edge import SMALL_BODY, big_body, read_body

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
PUBLISHER = web.AppKey("publisher", Publisher)
POOL = web.AppKey("pool", asyncpg.Pool)
ACCEPTED = web.AppKey("accepted", AcceptedLog)
CLIENT = "qcare.client"

BIG_BINDS = web.AppKey("big_binds", asyncio.Semaphore)
LOGGED_FIELDS = 20  # ModelState keys named in a refusal's log line
RETRY_AFTER_S = "5"
Bound = tuple[Format | None, BindResult | web.Response, bytes]


def _wants_xml(request: web.Request, fmt: Format | None) -> bool:
    """Web API content negotiation for errors: Accept, then the request's own type."""
    accept = request.headers.get("Accept", "").lower()
    for part in accept.split(","):
        media = part.split(";")[0].strip()
        if media in ("application/xml", "text/xml"):
            return True
        if media in ("application/json", "text/json"):
            return False
    return fmt is Format.XML


def _refuse(
    request: web.Request,
    fmt: Format | None,
    status: int,
    model_state: dict[str, list[str]] | None,
    message: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    if _wants_xml(request, fmt):
        text = error_xml(model_state) if model_state is not None else message_xml(message or "")
        return web.Response(
            text=text, status=status, content_type="application/xml", headers=headers
        )
    body: dict[str, Any] = (
        error_json(model_state) if model_state is not None else {"Message": message}
    )
    return web.json_response(body, status=status, headers=headers)


def _bind_big(fmt: Format, charset: str | None, body: bytes) -> BindResult:
    """bind(), then a young-generation collection: an XML parser lives in a reference
    cycle with its input buffer (megabytes here), which the gateway's relaxed GC
    thresholds (heap.py) would otherwise keep for several requests. The megabytes freed
    go back to the system, or the next big bodies pile up on top of them."""
    try:
        return bind(fmt, charset, body)
    finally:
        gc.collect(1)
        release_free_memory()


@contextlib.asynccontextmanager
async def _bound(request: web.Request) -> AsyncIterator[Bound]:
    """Read and bind the body: (format, result or a refusal (415), the body's bytes); 408,
    413 and 503 are raised. A big body stays counted against the body budget until the
    `async with` ends, that is, until its journal copy is published too."""
    length = request.content_length
    if length is not None and length <= SMALL_BODY:
        body = await read_body(request)
        yield (*_dispatch(request, body, bind), body)
        return
    async with big_body(request) as body:
        if len(body) <= SMALL_BODY:
            yield (*_dispatch(request, body, bind), body)
            return
        async with request.app[BIG_BINDS]:  # about 4 x the body each while it is bound
            fmt, result = await _dispatch_async(request, body)
        yield fmt, result, body


def _dispatch(
    request: web.Request, body: bytes, binder: Callable[[Format, str | None, bytes], BindResult]
) -> tuple[Format | None, BindResult | web.Response]:
    if not body:
        return None, BindResult(None)  # Content-Length: 0, any type: null model (c04)
    try:
        fmt, charset = select_format(request.headers.get("Content-Type"))
    except UnsupportedMediaTypeError as exc:
        return None, _refuse(request, None, 415, None, exc.message)
    return fmt, binder(fmt, charset, body)


async def _dispatch_async(
    request: web.Request, body: bytes
) -> tuple[Format | None, BindResult | web.Response]:
    try:
        fmt, charset = select_format(request.headers.get("Content-Type"))
    except UnsupportedMediaTypeError as exc:
        return None, _refuse(request, None, 415, None, exc.message)
    return fmt, await asyncio.to_thread(_bind_big, fmt, charset, body)


async def update_xray_order(request: web.Request) -> web.Response:
    started = time.perf_counter()
    async with _bound(request) as (fmt, result, body):  # 408 past the deadline, 413 above 4 MiB
        return await _accept(request, fmt, result, body, started)


async def _accept(
    request: web.Request,
    fmt: Format | None,
    result: BindResult | web.Response,
    body: bytes,
    started: float,
) -> web.Response:
    """Refuse what did not bind; else publish the update (canonical JSON + the request's
    bytes for the journal) and answer 200 once RabbitMQ confirmed it."""
    if isinstance(result, web.Response):
        return result
    model_state = problems(result)
    if model_state is not None or result.model is None:
        fields = sorted(model_state or {})
        log.info(
            "request refused",
            extra={"action": "refused", "status": 400, "fields": fields[:LOGGED_FIELDS],
                   "field_count": len(fields)},
        )  # fmt: skip
        return _refuse(request, fmt, 400, model_state)
    dto = result.model
    assert dto.msg_id is not None
    client = request.get(CLIENT)
    env = Envelope(
        msg_id=dto.msg_id,
        received_at=now_utc(),
        body=dto.encode(),
        dto=dto,
        content_type=request.headers.get("Content-Type"),
        warnings=tuple(result.warnings),
        raw=body,
        client=client,
    )
    if len(env.body) > MAX_MESSAGE_BYTES:  # the limits make this impossible; never publish it
        log.error(
            "message over the size bound", extra={"action": "oversize", "bytes": len(env.body)}
        )
        return _refuse(request, fmt, 400, {"dto": ["The update is larger than a message may be."]})
    publish_started = time.perf_counter()
    try:
        await request.app[PUBLISHER].publish(env.payload(), env.msg_id, env.headers())
    except UnpublishableError as exc:  # the limits and escaped headers should make it impossible
        log.error(
            "update could not be framed", extra={"action": "unpublishable", "error": str(exc)}
        )
        return _refuse(
            request, fmt, 400, {"dto": ["The update could not be encoded as a message."]}
        )
    except PublishError as exc:
        metrics.PUBLISH_FAILURES.inc()
        log.warning(
            "publish failed",
            extra={"action": "publish_failed", "msg_id": env.msg_id, "error": str(exc)},
        )
        return _refuse(
            request,
            fmt,
            503,
            None,
            "The update could not be queued right now. Retry later with the same msg_id: "
            "an update is applied once, however often it is sent.",
            headers={"Retry-After": RETRY_AFTER_S},
        )
    done = time.perf_counter()
    metrics.PUBLISH_LATENCY.observe(done - publish_started)
    request.app[ACCEPTED].add(
        env.msg_id,
        dto.accessionNo,
        client,
        (done - publish_started) * 1e3,
        (done - started) * 1e3,
    )
    return web.json_response({"msg_id": env.msg_id, "status": "queued"})


async def _read(
    request: web.Request,
    query: Any,
    key: str,
    what: str,
    model: type[MessageView | OrderView],
    audited: str | None = None,
) -> web.Response:
    """One read; `audited`: the audit action a read of personal data records (the row
    written before the answer, on the read's connection: no row, no data)."""
    if "\x00" in key:  # no id holds NUL (PostgreSQL text cannot): 503 + Retry-After before
        return web.json_response({"Message": f"No {what} with that id is known."}, status=404)
    try:
        async with asyncio.timeout(5):
            async with request.app[POOL].acquire() as conn:
                view = await query(conn, key)
                if audited is not None:
                    await audit.record(
                        conn,
                        who=request.get(CLIENT) or audit.ANONYMOUS,
                        action=audited,
                        subject=key,
                        client=request.remote,
                        outcome="not_found" if view is None else "shown",
                    )
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.warning("read failed", extra={"action": "read_failed", "error": type(exc).__name__})
        return web.json_response(
            {"Message": "The database is unavailable; retry later."},
            status=503,
            headers={"Retry-After": RETRY_AFTER_S},
        )
    if view is None:
        return web.json_response({"Message": f"No {what} with that id is known."}, status=404)
    return web.json_response(model.model_validate(view).model_dump(mode="json"))


async def get_message(request: web.Request) -> web.Response:
    return await _read(request, message_view, request.match_info["msg_id"], "message", MessageView)


async def get_order(request: web.Request) -> web.Response:
    return await _read(
        request,
        order_view,
        request.match_info["accession_no"],
        "order",
        OrderView,
        audited=audit.ORDER_READ,
    )


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    publisher = request.app[PUBLISHER]
    broker = await publisher.ping()  # False too while an alarm blocks publishes
    alarm = publisher.blocked  # (RabbitMQ says so when the gateway next publishes)
    database = True
    try:
        async with asyncio.timeout(3):
            async with request.app[POOL].acquire() as conn:
                await conn.fetchval("SELECT 1")
    except Exception:
        database = False
    ready = broker and database
    return web.json_response(
        {
            "status": "ready" if ready else "unavailable",
            "broker": broker,
            "broker_alarm": alarm,
            "database": database,
            "auth": "on" if request.app[SETTINGS].api_keys else "off",
        },
        status=200 if ready else 503,
    )


async def metrics_view(request: web.Request) -> web.Response:
    body, ctype = metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": ctype})


OPENAPI = web.AppKey("openapi", bytes)


async def openapi_view(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI], content_type="application/json")
