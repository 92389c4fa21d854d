"""Jinja2 rendering for the console: autoescape on, the CSRF token, the signed-in name,
the "Authentication is off" banner and flash messages in every page's context."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import jinja2
from aiohttp import web

from qcare_ingest.dates import HONG_KONG, stored_instant
from qcare_ingest.normalize import mask_id
from qcare_ingest.textsafe import safe_text

TEMPLATES = Path(__file__).parent / "templates"
FLASH_COOKIE = "qcare_flash"
FLASH_MAX = 300  # characters of a flash message
# flashes are signed: cookies are not isolated by port, so another site on this host
# could otherwise set one and put its own text on a console page. Per process, like the
# sessions; a flash lives for one redirect.
_FLASH_SECRET = secrets.token_bytes(32)

USER = "console.user"  # request keys set by the console middleware
CSRF = "console.csrf"
AUTH_OFF = "console.auth_off"


def utc(value: datetime | None) -> str:
    value = stored_instant(value)
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def hkt(value: datetime | None) -> str:
    value = stored_instant(value)
    if value is None:
        return "-"
    return value.astimezone(HONG_KONG).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " HKT"


SHOWN_ID_MAX = 1000  # characters: ids are at most 200, order values rarely near this


def shown_id(value: object) -> str:
    """An id (or value) as text with bidi overrides and other controls escaped
    (`\\u202e`), as the DLQ pages show them: two ids never look alike."""
    return "" if value is None else safe_text(str(value), SHOWN_ID_MAX)


SHOWN_TEXT_MAX = 1_100_000  # above the renditions' own cut (1,000,000 characters)


def shown_text(value: object) -> str:
    """A body or a field's value: controls escaped like `shown_id`, newlines kept."""
    return "" if value is None else safe_text(str(value), SHOWN_TEXT_MAX, newlines=True)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # every template, whatever its name
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["utc"] = utc
    env.filters["hkt"] = hkt
    env.filters["mask_id"] = mask_id
    env.filters["shown_id"] = shown_id
    env.filters["shown_text"] = shown_text
    env.filters["urlpart"] = lambda value: quote(str(value), safe="")
    return env


ENV = _environment()


def _flash_sig(quoted: str) -> str:
    digest = hmac.new(_FLASH_SECRET, quoted.encode("ascii"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _flashed(cookie: str | None) -> str | None:
    """The text of a flash cookie this process signed, else None (ignored)."""
    if not cookie:
        return None
    quoted, _, sig = cookie.rpartition(".")
    if not quoted or not hmac.compare_digest(_flash_sig(quoted).encode(), sig.encode()):
        return None
    return unquote(quoted)[:FLASH_MAX]


def flash(response: web.StreamResponse, text: str) -> None:
    """A one-line message shown on the next page this browser renders (after a redirect)."""
    quoted = quote(text[:FLASH_MAX])  # the signature (no `.` in it) follows the last `.`
    response.set_cookie(
        FLASH_COOKIE,
        f"{quoted}.{_flash_sig(quoted)}",
        path="/console",
        httponly=True,
        samesite="Strict",
        max_age=60,
    )


def render(request: web.Request, template: str, status: int = 200, **ctx: Any) -> web.Response:
    flashed = request.cookies.get(FLASH_COOKIE)
    context = {
        "user": request.get(USER),
        "csrf_token": request.get(CSRF, ""),
        "auth_off": request.get(AUTH_OFF, False),
        "flash": _flashed(flashed),
        "path": request.path,
        **ctx,
    }
    body = ENV.get_template(template).render(context)
    response = web.Response(text=body, status=status, content_type="text/html", charset="utf-8")
    if flashed:
        response.del_cookie(FLASH_COOKIE, path="/console")
    return response


def error_page(request: web.Request, status: int, title: str, message: str) -> web.Response:
    """A plain page for refusals and failures (never a traceback)."""
    return render(request, "error.html", status=status, title=title, message=message)
