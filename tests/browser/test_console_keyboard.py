"""Every console page used from the keyboard alone (issue 15), checked by hand in chromium
(tests/support/keyboard.py: Tab order, accessible names, visible focus, no trap, a skip
link) and by axe-core (serious and critical violations); forms are submitted with Enter.

One gateway and two workers serve the whole module; the data is this module's own orders
(fictitious patients), one of them dead-lettered as a conflict.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Page, expect

from tests.conftest import IN_CI, Procs, RunEnv
from tests.support import console_data
from tests.support.browser import ConsoleStack, api_keys, new_secret
from tests.support.keyboard import AXE_SCRIPT, axe_violations, keyboard_problems
from tests.support.procs import wait_for


@pytest.fixture(scope="module")
async def console_stack(test_env: RunEnv) -> AsyncIterator[ConsoleStack]:
    """This module's stack: the pages are only read, so one serves every test."""
    procs = Procs(test_env)
    admin_key, post_key = new_secret(), new_secret()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        try:
            gw = procs.gateway(QCARE_API_KEYS=api_keys(admin_key, post_key))
            workers = [procs.worker(), procs.worker()]
            await asyncio.gather(gw.ready(http), *(w.consuming() for w in workers))
            yield ConsoleStack(gw, workers, admin_key, post_key, http)
        finally:
            procs.close()


@pytest.fixture(scope="module")
async def orders(console_stack: ConsoleStack) -> list[dict[str, Any]]:
    """Three applied orders (JSON, XML, form), and the first one's msg_id reused with other
    content: a conflict, dead-lettered."""
    tag = console_data.run_tag()
    made = [console_data.order(n, tag) for n in range(3)]
    await console_stack.post(console_data.as_json(made[0]))
    await console_stack.post(console_data.as_xml(made[1]), "application/xml")
    await console_stack.post(console_data.as_form(made[2]), "application/x-www-form-urlencoded")
    for dto in made:
        await console_stack.processed(dto["msg_id"])
    conflict = {**made[0], "address": "Flat 3C, 8 Tin Hau Temple Road, North Point"}
    await console_stack.post(console_data.as_json(conflict))
    return made


async def assert_keyboard_usable(page: Page, what: str) -> None:
    problems = await keyboard_problems(page)
    assert not problems, f"{what} ({page.url}) is not usable from the keyboard:\n" + "\n".join(
        problems
    )
    if AXE_SCRIPT is None:
        message = "axe-core is not installed (pip install -r requirements-test.lock)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(f"{message}; the hand checks of {what} passed")
    violations = await axe_violations(page)
    assert not violations, f"{what} ({page.url}):\n" + "\n".join(violations)


async def test_sign_in_page(page: Page, console_stack: ConsoleStack) -> None:
    await page.goto(console_stack.console + "/sign-in")
    await assert_keyboard_usable(page, "the sign-in page")
    await page.get_by_label("API key").focus()
    await page.keyboard.type(console_stack.admin_key)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", level=1, name="Dashboard")).to_be_visible()


# Records every change inside a live region (what a screen reader would announce).
_WATCH_LIVE = """() => {
  window.qcareAnnounced = [];
  const live = '[role=status],[role=alert],[role=log],[aria-live]:not([aria-live=off])';
  new MutationObserver((records) => {
    for (const r of records) {
      const node = r.target.nodeType === 1 ? r.target : r.target.parentElement;
      const region = node && node.closest(live);
      if (region) window.qcareAnnounced.push(`#${region.id}: ${region.textContent.trim()}`);
    }
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


async def test_dashboard(signed_in_page: Page) -> None:
    page = signed_in_page
    await assert_keyboard_usable(page, "the dashboard")
    # its updates are not announced: two polls with nothing wrong change no live region
    await page.evaluate(_WATCH_LIVE)
    for _ in range(2):
        async with page.expect_response("**/console/dashboard.json"):
            pass
    announced = await page.evaluate("() => window.qcareAnnounced")
    assert announced == [], f"a screen reader would announce every poll: {announced[:3]}"
    await page.get_by_role("button", name="Sign out").focus()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", level=1, name="Sign in")).to_be_visible()


async def search(page: Page, text: str) -> None:
    """Types `text` into the search box and submits it with Enter."""
    await page.get_by_role("link", name="Messages", exact=True).click()
    await page.get_by_role("searchbox").focus()
    await page.keyboard.type(text)
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/console/messages?*")


async def test_messages_search_with_results(
    signed_in_page: Page, orders: list[dict[str, Any]]
) -> None:
    page = signed_in_page
    await search(page, orders[1]["accessionNo"])
    await expect(page.get_by_role("link", name=orders[1]["msg_id"])).to_be_visible()
    await assert_keyboard_usable(page, "the search results")


async def test_message_page_and_reveal(signed_in_page: Page, orders: list[dict[str, Any]]) -> None:
    page = signed_in_page
    await page.goto(page.url.split("/console")[0] + "/console/messages/" + orders[1]["msg_id"])
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        f"Message {orders[1]['msg_id']}"
    )
    await assert_keyboard_usable(page, "the message page")
    await page.get_by_role("button", name="Reveal personal data").focus()
    await page.keyboard.press("Enter")
    await expect(page.get_by_text("Personal data revealed")).to_be_visible()
    await assert_keyboard_usable(page, "the message page, revealed")


async def test_order_page(signed_in_page: Page, orders: list[dict[str, Any]]) -> None:
    page = signed_in_page
    accession = orders[2]["accessionNo"]
    await search(page, accession)
    await page.get_by_role("link", name=accession).first.focus()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Order {accession}")
    await assert_keyboard_usable(page, "the order page")


async def test_dead_letters_confirmation_and_outcome(
    signed_in_page: Page, console_stack: ConsoleStack, orders: list[dict[str, Any]]
) -> None:
    page = signed_in_page
    conflict = orders[0]["msg_id"]
    select = page.get_by_role("checkbox", name=f"Select {conflict}")

    async def listed() -> bool:
        await page.goto(console_stack.console + "/dlq?reason=conflict")
        return await select.count() == 1

    await wait_for(listed, 30, interval=0.5, what=f"{conflict} in the dead-letter list")
    await assert_keyboard_usable(page, "the dead-letter list")
    await select.focus()
    await page.keyboard.press("Space")
    await expect(select).to_be_checked()
    await page.get_by_role("button", name="Replay selected").focus()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Replay 1 message?")
    await assert_keyboard_usable(page, "the confirmation page")
    await page.get_by_role("button", name="Confirm: replay 1 message").focus()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Replay outcome")
    await assert_keyboard_usable(page, "the outcome page")
