"""The console's dead letters and dashboard in a real browser (issue 15): replay a
dead-lettered message once its cause is fixed and see it applied, purge one through its
confirmation, watch the dashboard's counters move while updates are posted; the pages
used from the keyboard.

The dead letters are real: this module's gateway starts with one worker that has a bug for
this test's msg_ids (tests/support/inject); "fixing the cause" is stopping it and starting
a worker without the bug.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

import aiohttp
import pytest
from playwright.async_api import Page, expect

from tests.conftest import Procs
from tests.support import console_data
from tests.support.browser import ConsoleStack, api_keys, new_secret
from tests.support.keyboard import keyboard_problems
from tests.support.procs import ROOT

INJECT = str(ROOT / "tests" / "support" / "inject")
LANDS_MS = 30_000  # a replay lands, a sample shows the traffic (samples every 5 s)


@dataclass
class OpsStack(ConsoleStack):
    tag: str = ""
    procs: Procs | None = None

    async def dead_letter(self, n: int) -> str:
        """Posts this test's n-th order; the buggy worker dead-letters it."""
        dto = console_data.order(n, self.tag)
        await self.post(console_data.as_json(dto))
        await self.processed(dto["msg_id"], statuses=("dead_lettered",))
        return str(dto["msg_id"])

    async def fix(self) -> None:
        """The bug's cause goes: its worker stops, one without the bug starts."""
        assert self.procs is not None
        for worker in self.workers:
            assert worker.terminate(15) == 0
        good = self.procs.worker()
        await good.consuming()
        self.workers = [good]


@pytest.fixture
async def console_stack(procs: Procs, http: aiohttp.ClientSession) -> OpsStack:
    """A gateway with an admin key and a post-only key, and one worker with a bug for this
    test's msg_ids (every other message it applies)."""
    admin_key, post_key = new_secret(), new_secret()
    tag = console_data.run_tag()
    gw = procs.gateway(QCARE_API_KEYS=api_keys(admin_key, post_key))
    buggy = procs.worker(PYTHONPATH=INJECT, QCARE_TEST_BUG_PREFIX=f"QC-{tag}-")
    await asyncio.gather(gw.ready(http), buggy.consuming())
    return OpsStack(gw, [buggy], admin_key, post_key, http, tag=tag, procs=procs)


async def keyboard_usable(page: Page, what: str) -> None:
    problems = await keyboard_problems(page)
    assert not problems, f"{what} ({page.url}):\n" + "\n".join(problems)


async def open_dead_letters(page: Page) -> None:
    await page.get_by_role("link", name="Dead letters", exact=True).click()
    await expect(page.get_by_role("heading", level=1, name="Dead letters")).to_be_visible()
    await page.get_by_label("Reason").select_option("bug")
    await page.get_by_role("button", name="Filter", exact=True).click()
    await expect(page.get_by_label("Reason")).to_have_value("bug")


async def test_replay_a_dead_lettered_message_and_see_it_applied(
    signed_in_page: Page, console_stack: OpsStack
) -> None:
    page = signed_in_page
    msg_id = await console_stack.dead_letter(0)
    await console_stack.fix()
    await open_dead_letters(page)
    row = page.get_by_role("row", name=re.compile(re.escape(msg_id)))
    await expect(row).to_contain_text("RuntimeError")
    await expect(row.get_by_role("link", name=msg_id)).to_have_attribute(
        "href", f"/console/messages/{msg_id}"
    )
    await keyboard_usable(page, "the dead-letter list")

    await page.get_by_label(f"Select {msg_id}").check()
    await page.get_by_role("button", name="Replay selected").click()
    await expect(page.get_by_role("heading", level=1, name="Replay 1 message?")).to_be_visible()
    await expect(page.get_by_role("list", name="Messages to replay")).to_contain_text(msg_id)
    await keyboard_usable(page, "the replay confirmation")
    await page.get_by_role("button", name="Confirm: replay 1 message").click()

    await expect(page.get_by_role("heading", level=1, name="Replay outcome")).to_be_visible()
    outcome = page.get_by_role("row", name=re.compile(re.escape(msg_id)))
    await expect(outcome.get_by_role("cell").first).to_have_text("applied", timeout=LANDS_MS)
    await expect(page.get_by_role("status")).to_have_text("Every message has its outcome.")
    await keyboard_usable(page, "the outcome page")
    _, view = await console_stack.message(msg_id)
    assert view["status"] == "applied"


async def test_purge_with_confirmation(signed_in_page: Page, console_stack: OpsStack) -> None:
    page = signed_in_page
    msg_id = await console_stack.dead_letter(1)
    await open_dead_letters(page)
    await page.get_by_label(f"Select {msg_id}").check()
    await page.get_by_role("button", name="Purge selected").click()
    await expect(page.get_by_role("heading", level=1, name="Purge 1 message?")).to_be_visible()
    await expect(page.get_by_text("This cannot be undone.")).to_be_visible()

    # Cancel first: nothing moves
    await page.get_by_role("link", name="Cancel").click()
    await expect(page.get_by_label(f"Select {msg_id}")).to_be_visible()

    await page.get_by_label(f"Select {msg_id}").check()
    await page.get_by_role("button", name="Purge selected").click()
    await page.get_by_role("button", name="Confirm: purge 1 message").click()
    outcome = page.get_by_role("row", name=re.compile(re.escape(msg_id)))
    await expect(outcome.get_by_role("cell").first).to_have_text("purged")

    await page.get_by_role("link", name="Back to the dead letters").click()
    await expect(page.get_by_role("heading", level=1, name="Dead letters")).to_be_visible()
    await expect(page.get_by_label(f"Select {msg_id}")).to_have_count(0)


async def test_the_dashboards_counters_move_while_updates_are_posted(
    signed_in_page: Page, console_stack: OpsStack
) -> None:
    page = signed_in_page
    await console_stack.fix()  # a worker that applies everything
    accepted = page.get_by_role("row", name=re.compile("^Accepted per second")).get_by_role("cell")
    applied = page.get_by_role("row", name=re.compile("^Applied per second")).get_by_role("cell")
    lag = page.get_by_role("row", name=re.compile(r"^Lag p99")).get_by_role("cell")
    main = page.get_by_role("row", name=re.compile(r"^qcare\.ingest \(main\)"))
    await expect(main.get_by_role("cell").nth(1)).to_have_text("1", timeout=LANDS_MS)  # consumers
    await expect(page.get_by_role("img", name=re.compile("^Throughput"))).to_be_visible()
    idle = re.compile(r"^(0|unavailable)$")
    tag = console_data.run_tag()
    stop = asyncio.Event()

    async def keep_posting() -> None:
        n = 0
        while not stop.is_set():
            await console_stack.post(console_data.as_json(console_data.order(n, tag)))
            n += 1

    poster = asyncio.create_task(keep_posting())
    try:
        # no reload: dashboard.js redraws from the JSON
        await expect(accepted).not_to_have_text(idle, timeout=LANDS_MS)
        await expect(applied).not_to_have_text(idle, timeout=LANDS_MS)
        await expect(lag).not_to_have_text("unavailable", timeout=LANDS_MS)
    finally:
        stop.set()
        await poster
    value = float(await accepted.inner_text())
    assert value > 0
    desc = page.locator("#chart-rate-desc")
    await expect(desc).to_contain_text("Accepted per second: now")
    await keyboard_usable(page, "the dashboard")


async def test_the_outcome_pages_poll_says_it_is_a_poll(
    signed_in_page: Page, console_stack: OpsStack
) -> None:
    """The outcome page's polling carries X-Console-Poll: 1, so it does not renew the
    session (an unattended outcome page must not keep it alive). A replay never moved is
    "still queued": the page keeps polling."""
    page = signed_in_page
    async with page.expect_request(lambda r: "/console/dlq/outcome.json" in r.url) as polled:
        await page.goto(
            f"{console_stack.gateway.url}/console/dlq/outcome?action=replay&ids=not-moved-1"
        )
    request = await polled.value
    assert await request.header_value("X-Console-Poll") == "1"
