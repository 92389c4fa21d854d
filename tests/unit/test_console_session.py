"""Console session cookies: signing, expiry, revocation, key changes; CSRF tokens."""

from __future__ import annotations

import asyncio
import threading
import time
from urllib.parse import quote

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from gateway.console import console_middleware, pages
from gateway.console.render import FLASH_COOKIE, flash, render
from gateway.console.session import (
    ABSOLUTE_S,
    COOKIE,
    IDLE_S,
    KEYRING,
    Keyring,
    _next_url,
    same_origin,
)
from qcare_ingest.config import Settings

ADMIN = "k-ops-456-Hn4Tb7Jc1Md6Ks-unit"
POSTER = "k-qcare-123-Zp8Qw2Lx5Rv9-unit"
T0 = 1_800_000_000.0
# the console keeps per-request state under string keys: aiohttp warns once per key
pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")


def keyring(keys: str = f"ops:{ADMIN}:admin,qcare:{POSTER}") -> Keyring:
    return Keyring(Settings.from_env({"QCARE_API_KEYS": keys}))


def test_a_cookie_verifies_until_idle_or_absolute_expiry() -> None:
    ring = keyring()
    cookie = ring.issue("ops", int(T0), T0)
    session = ring.verify(cookie, T0 + 5)
    assert session is not None
    assert session.name == "ops"
    sid = session.sid
    assert ring.verify(cookie, T0 + IDLE_S - 1) is not None
    assert ring.verify(cookie, T0 + IDLE_S + 1) is None  # idle
    # renewed on use: still valid while used, until the absolute limit
    t = T0
    renewed = cookie
    while t + IDLE_S / 2 < T0 + ABSOLUTE_S:
        t += IDLE_S / 2
        assert ring.verify(renewed, t) is not None, t - T0
        renewed = ring.issue("ops", int(T0), t, sid)
    assert ring.verify(renewed, T0 + ABSOLUTE_S + 1) is None
    assert ring.verify(ring.issue("ops", int(T0 + 3600), T0), T0) is None  # issued in the future


def test_tampering_and_other_keys() -> None:
    ring = keyring()
    cookie = ring.issue("ops", int(T0), T0)
    payload, sig = cookie.split(".")
    assert ring.verify(payload + "." + sig[::-1], T0) is None
    assert ring.verify("", T0) is None
    assert ring.verify("a.b.c", T0) is None
    assert ring.verify("%%%.%%%", T0) is None
    # a key without admin has no sessions; a removed or changed key ends them
    assert keyring(f"ops:{ADMIN}:post,qcare:{POSTER}").verify(cookie, T0) is None
    assert keyring(f"qcare:{POSTER}").verify(cookie, T0) is None
    assert keyring(f"ops:{ADMIN}-changed:admin").verify(cookie, T0) is None


def test_a_restart_ends_every_session() -> None:
    """Sign-outs are remembered per process: a new process (same keys) must not accept
    the old cookies, or a signed-out cookie would come back after a restart."""
    ring = keyring()
    cookie = ring.issue("ops", int(T0), T0)
    session = ring.verify(cookie, T0)
    assert session is not None
    ring.revoke(session, T0 + 1)
    assert ring.verify(cookie, T0 + 2) is None
    restarted = keyring()
    assert restarted.verify(cookie, T0 + 2) is None
    assert restarted.verify(restarted.issue("ops", int(T0), T0), T0 + 2) is not None


def test_revoked_session_and_csrf_token() -> None:
    ring = keyring()
    cookie = ring.issue("ops", int(T0), T0)
    session = ring.verify(cookie, T0)
    assert session is not None
    token = ring.csrf_token(session)
    later = ring.verify(ring.issue("ops", int(T0), T0 + 100, session.sid), T0 + 100)
    assert later is not None
    assert ring.csrf_token(later) == token  # stable across renewal
    other = ring.verify(ring.issue("ops", int(T0) + 1, T0 + 1), T0 + 1)
    assert other is not None
    assert ring.csrf_token(other) != token  # per session
    same_second = ring.verify(ring.issue("ops", int(T0), T0), T0)
    assert same_second is not None
    assert ring.csrf_token(same_second) != token  # F3: same second, another session
    ring.revoke(session, T0 + 10)
    assert ring.verify(cookie, T0 + 11) is None
    again = ring.issue("ops", int(T0), T0 + 11, same_second.sid)
    assert ring.verify(again, T0 + 11) is not None  # signing one out leaves the other
    assert ring.verify(ring.issue("ops", int(T0) + 1, T0 + 12), T0 + 12) is not None


def test_authenticate_and_throttle() -> None:
    ring = keyring()
    assert ring.authenticate(ADMIN) is not None
    assert ring.authenticate(ADMIN + "x") is None
    assert ring.authenticate("") is None
    for i in range(10):
        assert not ring.throttled("10.0.0.1", T0 + i)
        ring.failed("10.0.0.1", T0 + i)
    assert ring.throttled("10.0.0.1", T0 + 20)
    assert not ring.throttled("10.0.0.2", T0 + 20)
    assert not ring.throttled("10.0.0.1", T0 + 400)


def test_next_url_stays_in_the_console() -> None:
    assert _next_url("/console/messages?q=A") == "/console/messages?q=A"
    for bad in ("https://evil.example/", "//evil.example/console", "/console//evil", None, "/x"):
        assert _next_url(bad) == "/console"


def origin_request(headers: dict[str, str], secure: bool = False) -> web.Request:
    app = web.Application()
    keys = f"ops:{ADMIN}:admin"
    env = {"QCARE_API_KEYS": keys, "QCARE_BEHIND_TLS_PROXY": "1" if secure else "0"}
    app[KEYRING] = Keyring(Settings.from_env(env))
    return make_mocked_request(
        "POST", "/console/sign-out", headers={"Host": "127.0.0.1:8080", **headers}, app=app
    )


def test_same_origin() -> None:
    here = "http://127.0.0.1:8080"
    assert same_origin(origin_request({"Origin": here}))
    assert same_origin(origin_request({"Origin": here + "/"}))
    assert not same_origin(origin_request({"Origin": "http://evil.example"}))
    assert not same_origin(origin_request({"Origin": "http://127.0.0.1:8081"}))
    assert same_origin(origin_request({"Origin": here, "Sec-Fetch-Site": "same-origin"}))
    # Referrer-Policy no-referrer: Chromium sends Origin: null, and Sec-Fetch-Site
    assert same_origin(origin_request({"Origin": "null", "Sec-Fetch-Site": "same-origin"}))
    assert not same_origin(origin_request({"Origin": "null", "Sec-Fetch-Site": "cross-site"}))
    assert not same_origin(origin_request({"Origin": "null"}))
    assert same_origin(origin_request({"Referer": here + "/console/messages"}))
    assert not same_origin(origin_request({"Referer": "http://evil.example/console"}))
    assert not same_origin(origin_request({}))  # nothing shows where it came from
    # behind a TLS proxy the browser's origin is https
    assert same_origin(origin_request({"Origin": "https://127.0.0.1:8080"}, secure=True))


async def _through_middleware(
    headers: dict[str, str], env: dict[str, str] | None = None, path: str = "/console/x"
) -> web.StreamResponse:
    """One request through the console middleware, to a handler that answers 200."""
    app = web.Application()
    ring = Keyring(
        Settings.from_env(env if env is not None else {"QCARE_API_KEYS": f"ops:{ADMIN}:admin"})
    )
    app[KEYRING] = ring
    request = make_mocked_request("GET", path, headers=headers, app=app)

    async def handler(_: web.Request) -> web.StreamResponse:
        return web.Response(text="ok")

    try:
        return await console_middleware(request, handler)
    except web.HTTPException as exc:
        return exc


async def test_a_poll_does_not_renew_the_session() -> None:
    """The dashboard's polls must not keep an unattended session alive (idle timeout)."""
    now = time.time()
    env = {"QCARE_API_KEYS": f"ops:{ADMIN}:admin"}
    for polled, renewed in ((False, True), (True, False)):
        # a fresh Keyring per request would change the salt: build the cookie from the
        # middleware's own keyring
        app = web.Application()
        ring = Keyring(Settings.from_env(env))
        app[KEYRING] = ring
        cookie = ring.issue("ops", int(now - 3600), now - 20 * 60)
        headers = {"Host": "127.0.0.1:8080", "Cookie": f"{COOKIE}={cookie}"}
        if polled:
            headers["X-Console-Poll"] = "1"
        request = make_mocked_request("GET", "/console/dashboard.json", headers=headers, app=app)

        async def handler(_: web.Request) -> web.StreamResponse:
            return web.Response(text="{}")

        response = await console_middleware(request, handler)
        assert response.status == 200
        assert (COOKIE in response.cookies) is renewed, polled


async def test_without_keys_only_a_loopback_host_is_served() -> None:
    """Dev mode (no keys): DNS rebinding would make another site same-origin with the
    console; only a loopback Host is answered."""
    for host in ("127.0.0.1:8080", "localhost", "LOCALHOST:1", "[::1]:18556", "[::1]"):
        response = await _through_middleware({"Host": host}, env={})
        assert response.status == 200, host
    for host in (
        "rebind.evil.example:18556",
        "127.0.0.1.evil.example",
        "localhost.evil.example:80",
        "127.0.0.1:80@evil",
        "[::1]evil",
        "10.0.0.5:8080",
    ):
        response = await _through_middleware({"Host": host}, env={})
        assert response.status == 403, host
        assert isinstance(response, web.Response)
        assert "only on this machine" in (response.text or "")
    # with keys the Host is not what protects the console (the key and CSRF do)
    cookie_free = await _through_middleware({"Host": "gateway.example"}, path="/console/sign-in")
    assert cookie_free.status == 200


async def test_security_headers_and_hsts_under_tls() -> None:
    plain = await _through_middleware({"Host": "127.0.0.1:8080"}, path="/console/sign-in")
    csp = plain.headers["Content-Security-Policy"]
    for directive in ("default-src 'self'", "base-uri 'none'", "object-src 'none'"):
        assert directive in csp
    assert "Strict-Transport-Security" not in plain.headers  # plain HTTP: meaningless
    env = {"QCARE_API_KEYS": f"ops:{ADMIN}:admin", "QCARE_BEHIND_TLS_PROXY": "1"}
    for path in ("/console/sign-in", "/console/messages"):  # a page, and a redirect
        tls = await _through_middleware({"Host": "console.example"}, env=env, path=path)
        assert tls.headers["Strict-Transport-Security"] == "max-age=31536000", path


def test_only_a_flash_this_console_signed_is_shown() -> None:
    """F15: another site on this host (any port) can set a cookie for /console."""
    sent = web.Response()
    flash(sent, "Replayed 3 message(s). 100% done.")
    signed = sent.cookies[FLASH_COOKIE].value

    def page(cookie: str) -> str:
        request = make_mocked_request(
            "GET", "/console", headers={"Cookie": f"{FLASH_COOKIE}={cookie}"}
        )
        return render(request, "error.html", title="t", message="m").text or ""

    assert "Replayed 3 message(s). 100% done." in page(signed)
    forged = quote("Replay failed: call +852 5555 0000")
    for cookie in (forged, forged + ".", forged + "." + signed.rpartition(".")[2]):
        assert "+852" not in page(cookie), cookie


async def test_message_pages_render_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """F7: a big body's rendition and template ran on the event loop, delaying the intake."""
    loop_thread = threading.get_ident()
    seen: list[int] = []
    running = [0, 0]  # now, most at once
    lock = threading.Lock()

    def fake_render(request: web.Request, template: str, **ctx: object) -> web.Response:
        with lock:
            running[0] += 1
            running[1] = max(running)
        seen.append(threading.get_ident())
        time.sleep(0.05)  # the work a big body takes
        with lock:
            running[0] -= 1
        return web.Response(text=template)

    monkeypatch.setattr(pages, "render", fake_render)
    msg = {"journal": None, "patient_key": None, "received_at": None, "processed_at": None}
    request = make_mocked_request("GET", "/console/messages/x")
    await asyncio.gather(*(pages.rendered_message(request, msg, False) for _ in range(6)))
    assert len(seen) == 6
    assert loop_thread not in seen
    assert running[1] == pages.RENDERS_AT_ONCE
