"""Console sessions: sign-in with an `admin` key, a stateless signed cookie, CSRF.

The cookie holds the key's name, when the session began and when it was last used,
signed with HMAC-SHA256 under a secret derived from that key's own secret and a random
salt drawn when the gateway process starts. A session ends 30 minutes after its last use
or 8 hours after sign-in, whichever comes first; removing or changing the key ends its
sessions; sign-out remembers the session until it would have expired anyway, so a
copied cookie cannot come back.

Console sessions belong to one gateway process: sign-outs are remembered in memory, so
the salt makes a restart end every session (operators sign in again) rather than revive
signed-out cookies. Several gateway processes behind one address need sticky routing
of /console to one of them.

CSRF: a token per session (an HMAC of the session) in a hidden field of every form,
checked on every POST, and the request must come from this origin (Origin, else
Sec-Fetch-Site, else Referer).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from aiohttp import web

from qcare_ingest import audit
from qcare_ingest.config import ApiKey, Settings

from ..views import POOL, SETTINGS
from .render import CSRF, error_page, render

log = logging.getLogger(__name__)

COOKIE = "qcare_console"
PATH = "/console"
IDLE_S = 30 * 60
ABSOLUTE_S = 8 * 3600
CSRF_FIELD = "csrf_token"
SIGN_IN_ACTION = "console_sign_in"
SIGN_OUT_ACTION = "console_sign_out"
DEV_USER = audit.ANONYMOUS
# failed sign-ins allowed per client address in the window, then 429 until it passes
FAILURES_ALLOWED = 10
FAILURE_WINDOW_S = 300.0
SID_BYTES = 16
_PURPOSE = b"qcare-console-session-v1"


@dataclass(frozen=True)
class Session:
    name: str
    issued: int  # seconds since the epoch
    seen: int
    sid: str  # random: two sign-ins in the same second are two sessions

    def expired(self, now: float) -> bool:
        return now - self.seen > IDLE_S or now - self.issued > ABSOLUTE_S or self.issued > now + 60


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).digest()


class Keyring:
    """The admin keys by name, each with its session-signing secret; failed sign-ins."""

    def __init__(self, settings: Settings) -> None:
        self.auth = bool(settings.api_keys)
        self.secure = settings.tls or settings.behind_tls_proxy
        self._by_digest = {_digest(secret): key for secret, key in settings.api_keys.items()}
        # per process: a restart forgets the sign-outs, so it must end every session too
        salt = secrets.token_bytes(32)
        self._signing: dict[str, tuple[ApiKey, bytes]] = {
            key.name: (
                key,
                hmac.new(
                    secret.encode("utf-8", "surrogateescape"), _PURPOSE + salt, hashlib.sha256
                ).digest(),
            )
            for secret, key in settings.api_keys.items()
        }
        # dev mode (no keys): a per-process secret for the CSRF token
        self._dev_secret = secrets.token_bytes(32)
        self._revoked: dict[tuple[str, str], float] = {}
        self._failures: dict[str, deque[float]] = {}

    # --- keys ---
    def authenticate(self, supplied: str) -> ApiKey | None:
        """The key `supplied` is, compared against every key in constant time."""
        digest = _digest(supplied)
        found = None
        for known, key in self._by_digest.items():
            if hmac.compare_digest(known, digest):
                found = key
        return found

    def _secret(self, name: str) -> bytes | None:
        entry = self._signing.get(name)
        if entry is None or "admin" not in entry[0].scopes:
            return None
        return entry[1]

    # --- cookies ---
    def issue(self, name: str, issued: int, now: float, sid: str | None = None) -> str:
        """A new session's cookie (`sid` None), or a session's renewed one."""
        secret = self._secret(name)
        assert secret is not None
        sid = sid if sid is not None else _b64(secrets.token_bytes(SID_BYTES))
        payload = _b64(json.dumps({"n": name, "i": issued, "s": int(now), "r": sid}).encode())
        sig = hmac.new(secret, payload.encode(), hashlib.sha256).digest()
        return f"{payload}.{_b64(sig)}"

    def verify(self, cookie: str | None, now: float) -> Session | None:
        if not cookie or cookie.count(".") != 1 or len(cookie) > 2048:
            return None
        payload, sig = cookie.split(".")
        try:
            data: Any = json.loads(_unb64(payload))
            given = _unb64(sig)
        except (ValueError, binascii.Error):
            return None
        if not isinstance(data, dict):
            return None
        name, issued, seen, sid = data.get("n"), data.get("i"), data.get("s"), data.get("r")
        if not isinstance(name, str) or not isinstance(issued, int) or not isinstance(seen, int):
            return None
        if not isinstance(sid, str) or not sid:
            return None
        secret = self._secret(name)
        if secret is None:
            return None
        if not hmac.compare_digest(
            hmac.new(secret, payload.encode(), hashlib.sha256).digest(), given
        ):
            return None
        session = Session(name, issued, seen, sid)
        if session.expired(now) or (name, sid) in self._revoked:
            return None
        return session

    def csrf_token(self, session: Session | None) -> str:
        if session is None:
            return _b64(hmac.new(self._dev_secret, b"csrf|dev", hashlib.sha256).digest())
        secret = self._secret(session.name) or b""
        msg = f"csrf|{session.name}|{session.sid}".encode()
        return _b64(hmac.new(secret, msg, hashlib.sha256).digest())

    def revoke(self, session: Session, now: float) -> None:
        self._revoked = {k: t for k, t in self._revoked.items() if t > now}
        self._revoked[(session.name, session.sid)] = session.issued + ABSOLUTE_S

    # --- failed sign-ins ---
    def throttled(self, remote: str, now: float) -> bool:
        failures = self._failures.get(remote)
        while failures and failures[0] < now - FAILURE_WINDOW_S:
            failures.popleft()
        return bool(failures) and len(failures or ()) >= FAILURES_ALLOWED

    def failed(self, remote: str, now: float) -> None:
        if len(self._failures) > 10_000:  # a flood of addresses: forget the quiet ones
            self._failures = {k: v for k, v in self._failures.items() if v and v[-1] > now - 60}
        self._failures.setdefault(remote, deque(maxlen=FAILURES_ALLOWED)).append(now)


KEYRING = web.AppKey("console_keyring", Keyring)


def set_cookie(response: web.StreamResponse, keyring: Keyring, value: str) -> None:
    response.set_cookie(
        COOKIE,
        value,
        path=PATH,
        httponly=True,
        samesite="Strict",
        secure=keyring.secure,
        max_age=ABSOLUTE_S,
    )


def clear_cookie(response: web.StreamResponse, keyring: Keyring) -> None:
    response.del_cookie(COOKIE, path=PATH, secure=keyring.secure, samesite="Strict")


def current(request: web.Request) -> Session | None:
    keyring = request.app[KEYRING]
    return keyring.verify(request.cookies.get(COOKIE), time.time())


def _expected_origins(request: web.Request) -> set[str]:
    host = request.host
    schemes = {request.scheme}
    if request.app[KEYRING].secure:
        schemes.add("https")
    return {f"{scheme}://{host}" for scheme in schemes}


def same_origin(request: web.Request) -> bool:
    """The request came from a page of this origin: Origin if the browser sent a real one,
    else the browser's Sec-Fetch-Site (Referrer-Policy no-referrer makes Chromium send
    `Origin: null` on a form's POST), else Referer."""
    origin = request.headers.get("Origin")
    if origin and origin != "null":
        return origin.rstrip("/") in _expected_origins(request)
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site == "same-origin"
    referer = request.headers.get("Referer")
    if referer:
        parts = urlsplit(referer)
        return f"{parts.scheme}://{parts.netloc}" in _expected_origins(request)
    return False


def _refused(request: web.Request, why: str, text: str) -> web.Response:
    log.warning(
        "console request refused",
        extra={"action": "csrf_refused", "why": why, "remote": request.remote},
    )
    return error_page(request, 403, "Request refused", text)


async def check_csrf(request: web.Request) -> web.Response | None:
    """A 403 page unless the POST carries this session's token and comes from this origin."""
    if not same_origin(request):
        return _refused(
            request,
            "origin",
            "This form was not sent from a page of this console. "
            "Go back, reload the page and try again.",
        )
    form = await request.post()  # a script's POST may send the token as X-CSRF-Token
    token = form.get(CSRF_FIELD) or request.headers.get("X-CSRF-Token")
    expected = request.get(CSRF, "")  # none without a session (a public path)
    if (
        not expected
        or not isinstance(token, str)
        or not hmac.compare_digest(token.encode(), expected.encode())
    ):
        return _refused(
            request,
            "token",
            "This form's security token is missing or out of date "
            "(the session may have changed). Reload the page and try again.",
        )
    return None


def _next_url(raw: object) -> str:
    """Where to go after sign-in: a console path, never another site."""
    if isinstance(raw, str) and raw.startswith("/console") and "//" not in raw and "\\" not in raw:
        return raw
    return "/console"


async def sign_in_page(request: web.Request) -> web.StreamResponse:
    keyring = request.app[KEYRING]
    if not keyring.auth or current(request) is not None:
        raise web.HTTPFound(_next_url(request.query.get("next")))
    return render(request, "sign_in.html", next=_next_url(request.query.get("next")))


async def _audit(request: web.Request, who: str, action: str) -> bool:
    try:
        await audit.record(
            request.app[POOL],
            who=who,
            action=action,
            subject=who,
            client=request.remote,
            outcome="ok",
        )
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.warning(
            "console audit failed", extra={"action": "audit_failed", "error": type(exc).__name__}
        )
        return False
    return True


async def sign_in(request: web.Request) -> web.StreamResponse:
    keyring = request.app[KEYRING]
    if not keyring.auth:
        raise web.HTTPFound("/console")
    if not same_origin(request):
        return error_page(
            request, 403, "Request refused", "The sign-in form was not sent from this console."
        )
    now = time.time()
    remote = request.remote or "?"
    form = await request.post()
    target = _next_url(form.get("next"))
    supplied = form.get("key")
    key = keyring.authenticate(supplied if isinstance(supplied, str) else "")
    # a correct admin key always signs in: only refusals are counted and throttled, so
    # wrong keys sent from an address (or a proxy's) cannot lock the operators out
    if key is None or "admin" not in key.scopes:
        if keyring.throttled(remote, now):
            log.warning(
                "console sign-in throttled", extra={"action": "sign_in_throttled", "remote": remote}
            )
            page = render(
                request,
                "sign_in.html",
                status=429,
                next=target,
                error="Too many failed sign-ins from this address. Wait a few minutes.",
            )
            page.headers["Retry-After"] = str(int(FAILURE_WINDOW_S))
            return page
        keyring.failed(remote, now)
        log.warning(
            "console sign-in refused",
            extra={
                "action": "sign_in_refused",
                "remote": remote,
                "why": "unknown key" if key is None else "no admin scope",
                "client": key.name if key is not None else None,
            },
        )
        if key is None:
            return render(
                request, "sign_in.html", status=401, next=target, error="That key is not valid."
            )
        return render(
            request,
            "sign_in.html",
            status=403,
            next=target,
            error="That key does not have the admin scope the console needs.",
        )
    if not await _audit(request, key.name, SIGN_IN_ACTION):
        return error_page(
            request,
            503,
            "Cannot sign in right now",
            "The sign-in could not be recorded in the audit trail "
            "(the database is unavailable). Try again shortly.",
        )
    log.info(
        "console sign-in", extra={"action": SIGN_IN_ACTION, "client": key.name, "remote": remote}
    )
    response = web.HTTPFound(target)
    set_cookie(response, keyring, keyring.issue(key.name, int(now), now))
    raise response


async def sign_out(request: web.Request) -> web.StreamResponse:
    """POST (the middleware has checked the session and the CSRF token)."""
    keyring = request.app[KEYRING]
    response = web.HTTPFound("/console/sign-in" if keyring.auth else "/console")
    session = current(request)
    if session is not None:
        keyring.revoke(session, time.time())
        await _audit(request, session.name, SIGN_OUT_ACTION)  # signed out even if not recorded
        log.info(
            "console sign-out",
            extra={"action": SIGN_OUT_ACTION, "client": session.name, "remote": request.remote},
        )
    clear_cookie(response, keyring)
    raise response


def add_routes(app: web.Application) -> None:
    app[KEYRING] = Keyring(app[SETTINGS])
    app.router.add_get("/console/sign-in", sign_in_page)
    app.router.add_post("/console/sign-in", sign_in)
    app.router.add_post("/console/sign-out", sign_out)
