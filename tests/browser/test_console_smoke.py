"""The console's sign-in page in a real browser: it renders, whole and without errors."""

from __future__ import annotations

from playwright.async_api import Page, expect

from tests.support.browser import ConsoleStack


async def test_sign_in_page_renders_without_errors(page: Page, console_stack: ConsoleStack) -> None:
    await page.goto(console_stack.console)  # signed out: anything leads to the sign-in page
    await expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    await expect(page.get_by_label("API key")).to_be_visible()
    await expect(page.get_by_role("button", name="Sign in")).to_be_enabled()
    stylesheet = await page.evaluate("() => document.styleSheets.length")
    assert stylesheet >= 1  # console.css came from the gateway (a CDN would have failed)


async def test_admin_key_signs_in(signed_in_page: Page) -> None:
    await expect(signed_in_page.get_by_role("button", name="Sign out")).to_be_visible()
