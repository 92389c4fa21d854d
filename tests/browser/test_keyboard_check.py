"""The keyboard check itself (tests/support/keyboard.py) finds each defect it is meant to find,
on small pages written for it, and passes a page that has none."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page

from tests.support.browser import VIEWPORT
from tests.support.keyboard import AXE_SCRIPT, axe_violations, keyboard_problems

STYLE = """<style>
  :focus-visible { outline: 3px solid #1f6feb; }
  .skip { position: absolute; left: -9999px; } .skip:focus { left: 8px; }
  .flat:focus-visible { outline: none; }
</style>"""
GOOD = f"""<!doctype html><html lang="en"><head><title>t</title>{STYLE}</head><body>
<a class="skip" href="#main">Skip to content</a>
<nav aria-label="Site"><a href="/a">One</a> <a href="/b">Two</a></nav>
<main id="main" tabindex="-1"><h1>Page</h1>
  <form><label for="q">Search</label><input id="q" name="q">
  <select aria-label="Status"><option>any</option></select>
  <button>Search</button></form>
</main></body></html>"""


@pytest.fixture
async def bare_page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    page = await context.new_page()
    yield page
    await context.close()


async def problems_of(page: Page, html: str) -> list[str]:
    await page.set_content(html)
    return await keyboard_problems(page)


async def test_a_good_page_passes(bare_page: Page) -> None:
    assert await problems_of(bare_page, GOOD) == []
    if AXE_SCRIPT is not None:
        assert await axe_violations(bare_page) == []


TRAP = (
    "<script>document.getElementById('q').addEventListener('keydown',"
    " e => { if (e.key === 'Tab') e.preventDefault(); });</script></body>"
)
DEFECTS = [
    pytest.param("<button>Search</button>", "<button></button>", "no accessible name (button)",
                 id="no-name"),
    pytest.param('<input id="q" name="q">', '<input id="q" name="q" class="flat">',
                 "focus not visible", id="no-focus-ring"),
    pytest.param('<a href="/b">Two</a>', '<a href="/b" tabindex="2">Two</a>', "tabindex 2 changes",
                 id="positive-tabindex"),
    pytest.param('<a class="skip" href="#main">Skip to content</a>', "", "no skip link",
                 id="no-skip-link"),
    pytest.param('href="#main"', 'href="#nowhere"', "nothing has the id #nowhere",
                 id="skip-to-nowhere"),
    pytest.param(".skip:focus { left: 8px; }", "", "off screen", id="off-screen"),
    pytest.param("solid #1f6feb", "solid #f0a000", "focus outline contrast 2.16:1",
                 id="faint-focus-ring"),
    pytest.param("</body>", TRAP, "keyboard trap", id="trap"),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "found"), DEFECTS)
async def test_each_defect_is_found(bare_page: Page, old: str, new: str, found: str) -> None:
    assert old in GOOD
    problems = await problems_of(bare_page, GOOD.replace(old, new))
    assert any(found in p for p in problems), problems
