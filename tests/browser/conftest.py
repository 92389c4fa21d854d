"""The console in a real browser: Debian's headless chromium (Playwright, async API) against a
live gateway with API keys and two workers, on this run's vhost and database.

Every test's page fails the test on a JavaScript error, a console error, a failed request or
a request to any host but the gateway. Locally a missing chromium skips these tests; in CI
(CI=true) it fails them.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import aiohttp
import pytest
from playwright.async_api import Browser, BrowserContext, Page, Playwright, async_playwright

from tests.conftest import IN_CI, Procs
from tests.support.browser import (
    CHROMIUM,
    TIMEOUT_MS,
    VIEWPORT,
    ConsoleStack,
    PageWatch,
    api_keys,
    launch,
    new_secret,
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser/" in item.nodeid:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
async def playwright() -> AsyncIterator[Playwright]:
    if not os.access(CHROMIUM, os.X_OK):
        message = (
            f"no chromium at {CHROMIUM} (scripts/bootstrap.sh installs Debian's; "
            "QCARE_CHROMIUM names another)"
        )
        if IN_CI:
            pytest.fail(f"browser unavailable in CI: {message}")
        pytest.skip(f"browser unavailable: {message}")
    async with async_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
async def browser(playwright: Playwright) -> AsyncIterator[Browser]:
    browser = await launch(playwright)
    yield browser
    await browser.close()


@pytest.fixture
async def console_stack(procs: Procs, http: aiohttp.ClientSession) -> ConsoleStack:
    """A gateway whose keys are an admin key (`ops`) and a post-only key (`clinic`), and
    two workers, all ready."""
    admin_key, post_key = new_secret(), new_secret()
    gw = procs.gateway(QCARE_API_KEYS=api_keys(admin_key, post_key))
    workers = [procs.worker(), procs.worker()]
    await asyncio.gather(gw.ready(http), *(w.consuming() for w in workers))
    return ConsoleStack(gw, workers, admin_key, post_key, http)


@pytest.fixture
async def watch(console_stack: ConsoleStack) -> PageWatch:
    return PageWatch(console_stack.url)


@pytest.fixture
async def context(browser: Browser, watch: PageWatch) -> AsyncIterator[BrowserContext]:
    context = await browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    context.set_default_timeout(TIMEOUT_MS)
    await watch.attach(context)
    yield context
    await context.close()
    if watch.problems:
        pytest.fail("the page misbehaved:\n" + "\n".join(watch.problems))


@pytest.fixture
async def page(context: BrowserContext) -> Page:
    return await context.new_page()


@pytest.fixture
async def signed_in_page(page: Page, console_stack: ConsoleStack) -> Page:
    """The console's dashboard, signed in through the sign-in form with the admin key."""
    await page.goto(console_stack.console + "/sign-in")
    await page.get_by_label("API key").fill(console_stack.admin_key)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("heading", level=1, name="Dashboard").wait_for()
    return page
