"""The operations console at /console (issue 15): server-rendered pages on the gateway.

`setup(app)` registers the console's routes and static files. `console_middleware`, which
the gateway's one middleware calls for every /console path: adds the security headers; in
dev mode (no keys) answers only a loopback Host; lets the sign-in page and the static files
through; sends anyone without a session to the sign-in page (302); renews the session
cookie on use (not on a script's poll); checks the CSRF token and the origin of every
POST; and turns a missing route, a refusal by aiohttp or an unexpected error into a plain
page, never a traceback.

Modules: session.py (sign-in/out, cookie, CSRF), render.py (Jinja2), pages.py (search,
message, order), deadletters.py (DLQ pages), dashboard.py (dashboard). A module adds its
routes with `add_routes(app)`; a handler renders with `render(request, "x.html", **ctx)`
and each form carries `<input type="hidden" name="csrf_token" value="{{ csrf_token }}">`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from urllib.parse import quote

from aiohttp import web
from aiohttp.typedefs import Handler

from . import dashboard, deadletters, pages, session
from .render import AUTH_OFF, CSRF, USER, error_page
from .session import KEYRING

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
PUBLIC = ("/console/sign-in", "/console/static/")
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; frame-ancestors 'none'; form-action 'self'; "
        "base-uri 'none'; object-src 'none'"  # base-uri does not fall back to default-src
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
HSTS = "max-age=31536000"  # sent when the browser reaches the console over TLS
RENEW_AFTER_S = 60  # the cookie is re-issued (idle timer renewed) at most once a minute
# sent by the console's own polling scripts: a poll is not an operator's action, so it
# never renews the session (a dashboard left open still times out after 30 min idle)
POLL_HEADER = "X-Console-Poll"


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def loopback_host(host: str) -> bool:
    """`Host` names this machine's loopback (any port): `127.0.0.1:8080`, `[::1]`, ..."""
    host = host.strip().lower()
    if host.startswith("["):
        name = host[: host.find("]") + 1]
        rest = host[len(name) :]
    else:
        name, _, rest = host.partition(":")
        rest = ":" + rest if rest else ""
    return name in LOOPBACK_HOSTS and (rest == "" or (rest[:1] == ":" and rest[1:].isdigit()))


def is_console(path: str) -> bool:
    return path == "/console" or path.startswith("/console/")


async def _guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    keyring = request.app[KEYRING]
    public = any(request.path.startswith(p) for p in PUBLIC)
    now = time.time()
    renewed = None
    if not keyring.auth:
        # dev mode is for this machine only: a page on another site that rebinds its own
        # name to 127.0.0.1 (DNS rebinding) would be same-origin with an open console
        if not loopback_host(request.host):
            log.warning(
                "console request with a non-loopback Host refused (authentication is off)",
                extra={"action": "host_refused", "remote": request.remote},
            )
            return error_page(
                request,
                403,
                "Request refused",
                "Authentication is off, so the console answers only on this machine: "
                "open it as http://127.0.0.1:<port>/console or http://localhost:<port>/console.",
            )
        request[USER] = session.DEV_USER
        request[AUTH_OFF] = True
        request[CSRF] = keyring.csrf_token(None)
    else:
        current = session.current(request)
        if current is not None:
            request[USER] = current.name
            request[CSRF] = keyring.csrf_token(current)
            polled = request.headers.get(POLL_HEADER) == "1"
            if now - current.seen >= RENEW_AFTER_S and not polled:
                renewed = keyring.issue(current.name, current.issued, now, current.sid)
        elif not public:
            target = request.path_qs if request.method == "GET" else "/console"
            raise web.HTTPFound(f"/console/sign-in?next={quote(target, safe='')}")
    if request.method == "POST" and request.path != "/console/sign-in":
        refusal = await session.check_csrf(request)
        if refusal is not None:
            return refusal
    response = await handler(request)
    if renewed is not None and session.COOKIE not in response.cookies:
        session.set_cookie(response, keyring, renewed)
    return response


async def console_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Around every console page (the gateway's one middleware calls it for `is_console`
    paths): sign-in, CSRF, error pages and security headers."""
    try:
        response = await _guarded(request, handler)
    except web.HTTPException as exc:
        if exc.status == 404:
            response = error_page(request, 404, "Not found", "There is no such console page.")
        elif exc.status == 405:
            response = error_page(request, 405, "Not allowed", "This page does not take that.")
        elif exc.status == 413:  # aiohttp's own: too many form fields, or too many bytes
            response = error_page(
                request,
                413,
                "Too much sent",
                "The form was too large for the console (too many fields or too much data). "
                "Select fewer items and try again.",
            )
        elif exc.status >= 400:  # aiohttp's or a handler's plain-text refusal: a page
            message = (exc.text or "")[:300]
            if not message or message.startswith(f"{exc.status}:"):
                message = "The console could not take this request."
            response = error_page(request, exc.status, exc.reason, message)
        else:
            response = exc
    except Exception:
        log.exception("console page failed", extra={"action": "console_error"})
        response = error_page(
            request,
            500,
            "Something went wrong",
            "The page could not be shown. The error has been logged.",
        )
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    if request.app[KEYRING].secure:  # every console cookie (flash too) only over TLS
        response.headers["Strict-Transport-Security"] = HSTS
        for morsel in response.cookies.values():
            morsel["secure"] = True
    if isinstance(response, web.HTTPException):
        raise response
    return response


def setup(app: web.Application) -> None:
    """The console's routes and static files (call once, in create_app)."""
    session.add_routes(app)
    dashboard.add_routes(app)
    pages.add_routes(app)
    deadletters.add_routes(app)
    app.router.add_static("/console/static/", STATIC, name="console_static")
