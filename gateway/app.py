"""create_app(settings): state under typed AppKeys, resources in cleanup_ctx, routes."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import ipaddress
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from qcare_ingest import heap, metrics
from qcare_ingest.broker import Publisher
from qcare_ingest.config import ApiKey, Network, Settings
from qcare_ingest.db import create_pool
from qcare_ingest.openapi import document
from qcare_ingest.store import init_connection

from . import console, fhir, views
from .accepted_log import AcceptedLog
from .edge import BODY_BUDGET, BODY_TIMEOUT, BUDGET_BYTES, MAX_BODY, BodyBudget, expect_continue
from .views import CLIENT, POOL, PUBLISHER, SETTINGS

log = logging.getLogger(__name__)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _key_digest(value: str) -> bytes:
    """SHA-256 of a key's bytes. aiohttp decodes header bytes as UTF-8 with surrogateescape (and
    Python the environment likewise), so encoding back the same way gives exactly the bytes sent,
    whatever they are: bytes that are not UTF-8 are a wrong key, not an error. Comparing
    fixed-size digests keeps the comparison's time independent of the key's length too."""
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).digest()


# the configured keys' digests, computed once (a supplied key is hashed per request, never cached)
_secret_digest = functools.lru_cache(maxsize=256)(_key_digest)


def _authenticate(keys: dict[str, ApiKey], request: web.Request) -> ApiKey | None:
    """The key, comparing against every key in constant time."""
    supplied = request.headers.get("X-Api-Key", "")
    auth = request.headers.get("Authorization", "")
    if not supplied and auth[:7].lower() == "bearer ":
        supplied = auth[7:].strip()
    digest = _key_digest(supplied)
    found = None
    for secret, key in keys.items():
        if hmac.compare_digest(_secret_digest(secret), digest):
            found = key
    return found


def _allowed(networks: tuple[Network, ...], remote: str | None) -> bool:
    if not networks:
        return True
    try:
        address = ipaddress.ip_address(remote or "")
    except ValueError:
        return False
    return any(address in network for network in networks)


# What each /api/ route needs (SPEC §1): a route not listed needs a valid key only.
ROUTE_SCOPES: dict[str, str] = {
    "/api/v1/qcare/updateXRayOrder": "post",
    "/api/v1/qcare/messages/{msg_id}": "status",
    "/api/v1/qcare/orders/{accession_no}": "read",
    **fhir.ROUTE_SCOPES,
}


def _guard(settings: Settings, request: web.Request, route: str) -> web.Response | None:
    """A refusal for /api/ requests from outside the allowed networks, without a key (401)
    or with a key that lacks the route's scope (403)."""
    if not _allowed(settings.allowed_networks, request.remote):
        log.warning(
            "client network refused", extra={"action": "forbidden", "remote": request.remote}
        )
        return web.json_response({"Message": "Your network is not allowed."}, status=403)
    if settings.api_keys:
        key = _authenticate(settings.api_keys, request)
        if key is None:
            log.warning(
                "unauthorized request", extra={"action": "unauthorized", "remote": request.remote}
            )
            return web.json_response(
                {"Message": "Authorization has been denied for this request."},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="qcare-ingest"'},
            )
        request[CLIENT] = key.name
        scope = ROUTE_SCOPES.get(route)
        if scope is not None and scope not in key.scopes:
            log.warning(
                "scope refused",
                extra={"action": "scope_refused", "client": key.name, "scope": scope,
                       "route": route, "remote": request.remote},
            )  # fmt: skip
            return web.json_response(
                {"Message": f"This key does not have the '{scope}' scope this request needs."},
                status=403,
            )
    return None


@web.middleware
async def edge_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The application's one middleware (each layer costs every intake request): on /fhir/
    paths errors become OperationOutcomes around the checks below; /console pages get the
    console's guard inside them."""
    path = request.path
    if path.startswith(fhir.PREFIX):
        return await fhir.as_outcomes(request, functools.partial(_checked, handler=handler))
    if console.is_console(path):
        handler = functools.partial(console.console_middleware, handler=handler)
    return await _checked(request, handler)


async def _checked(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Metrics for every request; network allow-list and API key for /api/ and /fhir/."""
    started = time.perf_counter()
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    status = 500
    try:
        refusal = (
            _guard(request.app[SETTINGS], request, route)
            if request.path.startswith(("/api/", fhir.PREFIX))
            else None
        )
        response = await handler(request) if refusal is None else refusal
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        metrics.http_request(route, request.method, status, time.perf_counter() - started)


async def _resources(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    publisher = Publisher(
        settings.amqp_url,
        settings.delivery_limit,
        timeout=settings.publish_timeout,
        delays=settings.retry_delays,
        ca_file=settings.amqp_ca_file,
    )
    await publisher.ping()  # connect now if we can; failing is fine, requests retry
    pool = await create_pool(settings.gateway_dsn, size=8, init=init_connection)
    app[PUBLISHER] = publisher
    app[POOL] = pool
    yield
    await publisher.close(grace=settings.shutdown_grace)
    app[views.ACCEPTED].flush()
    await pool.close()


async def _settle_heap(app: web.Application) -> None:
    heap.settle()


def create_app(settings: Settings) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY, middlewares=[edge_middleware])
    app[SETTINGS] = settings
    app[BODY_TIMEOUT] = settings.body_timeout
    app[views.ACCEPTED] = AcceptedLog()
    app[views.BIG_BINDS] = asyncio.Semaphore(1)  # the GIL runs one at a time anyway
    app[BODY_BUDGET] = BodyBudget(BUDGET_BYTES)
    app.cleanup_ctx.append(_resources)
    app.on_startup.append(_settle_heap)  # after the resources: their objects are kept
    app.router.add_post(
        "/api/v1/qcare/updateXRayOrder", views.update_xray_order, expect_handler=expect_continue
    )
    app.router.add_get("/api/v1/qcare/messages/{msg_id}", views.get_message)
    app.router.add_get("/api/v1/qcare/orders/{accession_no}", views.get_order)
    app.router.add_get("/healthz", views.healthz)
    app.router.add_get("/readyz", views.readyz)
    app.router.add_get("/metrics", views.metrics_view)
    app[views.OPENAPI] = json.dumps(document(auth=bool(settings.api_keys))).encode()
    app.router.add_get("/openapi.json", views.openapi_view)
    console.setup(app)
    fhir.add_routes(app)
    return app
