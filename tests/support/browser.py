"""The console's browser tests: Debian's chromium driven by Playwright (async API), and what
a page did wrong while a test ran (console errors, uncaught exceptions, failed requests,
requests to any host but the gateway's).

Playwright never downloads a browser here: it launches $QCARE_CHROMIUM (/usr/bin/chromium,
installed by scripts/bootstrap.sh).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Error,
    Page,
    Playwright,
    Request,
    Route,
)

from qcare_ingest.config import key_weakness
from tests.support.payloads import UPDATE
from tests.support.procs import Gateway, Worker, wait_for

CHROMIUM = Path(os.environ.get("QCARE_CHROMIUM", "/usr/bin/chromium"))
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}
# Playwright's waits, in ms: long enough for a loaded CI machine, short enough to fail fast
TIMEOUT_MS = 15_000


async def launch(playwright: Playwright) -> Browser:
    return await playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS
    )


def new_secret() -> str:
    """A random API key secret the gateway accepts (long enough, no placeholder word)."""
    while True:
        secret = secrets.token_urlsafe(24)  # 32 characters
        if key_weakness(secret) is None:
            return secret


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


@dataclass
class PageWatch:
    """Everything that went wrong in a browser context, by the gateway's origin.

    Requests to any other origin are aborted before they leave (no CDN, no beacon) and
    counted as problems. `allow(text)` accepts console errors containing `text`, for a test
    that opens an error page on purpose (chromium logs its 4xx/5xx as a console error)."""

    gateway_url: str
    problems: list[str] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)

    def allow(self, text: str) -> None:
        self.allowed.append(text)

    async def attach(self, context: BrowserContext) -> None:
        await context.route("**/*", self._route)
        context.on("page", self._watch_page)
        context.on("requestfailed", self._request_failed)

    def _watch_page(self, page: Page) -> None:
        page.on("console", self._console)
        page.on("pageerror", self._page_error)

    async def _route(self, route: Route) -> None:
        url = route.request.url
        if _origin(url) == _origin(self.gateway_url) or url.startswith(("data:", "blob:")):
            await route.continue_()
        else:
            self.problems.append(f"request to another host: {route.request.method} {url}")
            await route.abort("blockedbyclient")

    def _console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        where = message.location.get("url", "")
        text = f"console error: {message.text} ({where})"
        if not any(allowed in text for allowed in self.allowed):
            self.problems.append(text)

    def _page_error(self, error: Error) -> None:
        self.problems.append(f"uncaught JavaScript error: {error.name}: {error.message}")

    def _request_failed(self, request: Request) -> None:
        failure = request.failure or ""
        # a fetch or event stream cut short by leaving the page is not a fault of the page;
        # requests to other hosts are already counted in _route
        if "ERR_ABORTED" in failure or _origin(request.url) != _origin(self.gateway_url):
            return
        self.problems.append(f"request failed: {request.method} {request.url}: {failure}")


@dataclass
class ConsoleStack:
    """A live gateway (with API keys) and two workers, for the console's tests."""

    gateway: Gateway
    workers: list[Worker]
    admin_key: str  # `ops`: post+status+read+admin, signs in to the console
    post_key: str  # `clinic`: post only, must not sign in
    http: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return self.gateway.url

    @property
    def console(self) -> str:
        return self.gateway.url + "/console"

    async def post(self, body: bytes | str, content_type: str = "application/json") -> Any:
        """POSTs a body to the intake with the post-only key; it must be accepted (200)."""
        data = body.encode() if isinstance(body, str) else body
        headers = {"Content-Type": content_type, "Authorization": f"Bearer {self.post_key}"}
        async with self.http.post(self.url + UPDATE, data=data, headers=headers) as resp:
            text = await resp.text()
            assert resp.status == 200, f"intake answered {resp.status}: {text[:500]}"
            return await resp.json(content_type=None)

    async def message(self, msg_id: str) -> tuple[int, Any]:
        """The status API's view of a message (admin key)."""
        headers = {"Authorization": f"Bearer {self.admin_key}"}
        url = f"{self.url}/api/v1/qcare/messages/{msg_id}"
        async with self.http.get(url, headers=headers) as resp:
            return resp.status, await resp.json(content_type=None)

    async def processed(
        self, msg_id: str, statuses: tuple[str, ...] = ("applied", "stale"), timeout: float = 30
    ) -> Any:
        """Waits until the workers have processed `msg_id` into one of `statuses`."""

        async def done() -> Any:
            status, view = await self.message(msg_id)
            return view if status == 200 and view.get("status") in statuses else None

        return await wait_for(done, timeout, what=f"message {msg_id} in {statuses}")


def api_keys(admin_key: str, post_key: str) -> str:
    return f"ops:{admin_key}:post+status+read+admin,clinic:{post_key}:post"
