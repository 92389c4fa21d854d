"""The README's screenshots of the console, from a live stack and fictitious patients.

`scripts/console-screenshots` sets QCARE_SCREENSHOTS to docs/console and the PNGs land
there; in an ordinary run they go to a temporary directory, so the run still checks that
the main pages render with data, and that personal data stays masked until revealed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from playwright.async_api import Page, expect

from qcare_ingest.normalize import normalise_hkid
from tests.support import console_data
from tests.support.browser import ConsoleStack
from tests.support.procs import wait_for

SHOT_DIR = os.environ.get("QCARE_SCREENSHOTS")


async def seed(stack: ConsoleStack) -> list[dict[str, Any]]:
    """Eight orders from three clinics (JSON, XML and form bodies), a later correction of
    one patient's address and the room of their study, and a msg_id reused with other
    content (dead-lettered)."""
    tag = console_data.run_tag()
    made = [console_data.order(n, tag) for n in range(8)]
    for n, dto in enumerate(made):
        if n % 3 == 1:
            await stack.post(console_data.as_xml(dto), "application/xml")
        elif n % 3 == 2:
            await stack.post(console_data.as_form(dto), "application/x-www-form-urlencoded")
        else:
            await stack.post(console_data.as_json(dto))
    for dto in made:
        await stack.processed(dto["msg_id"])
    correction = {  # the patient moved, and the study was moved to another room
        "msg_id": f"QC-{tag}-0100",
        "accessionNo": made[0]["accessionNo"],
        "hkid": made[0]["hkid"],
        "address": "Flat 21D, Block 5, Kornhill, Quarry Bay",
        "location": "X-RAY ROOM 3",
    }
    await stack.post(console_data.as_json(correction))
    await stack.processed(correction["msg_id"])
    conflict = {**made[5], "name": "WONG Mei Ling", "gender": "F"}
    await stack.post(console_data.as_json(conflict))
    return [*made, correction]


async def shoot(page: Page, directory: Path, name: str, height: int = 800) -> None:
    """The top `height` pixels of the page, 1280 wide (taller than the window: the page
    scrolls on, the picture stops there)."""
    await page.evaluate("() => document.activeElement && document.activeElement.blur()")
    whole = await page.evaluate("() => document.documentElement.scrollHeight")
    clip = {"x": 0, "y": 0, "width": 1280, "height": min(height, whole)}
    await page.screenshot(
        path=directory / f"{name}.png", full_page=True, clip=clip, animations="disabled"
    )


async def test_screenshots_of_the_main_pages(
    signed_in_page: Page, console_stack: ConsoleStack, tmp_path: Path
) -> None:
    directory = Path(SHOT_DIR) if SHOT_DIR else tmp_path
    directory.mkdir(parents=True, exist_ok=True)
    page, console = signed_in_page, console_stack.console
    orders = await seed(console_stack)
    first, correction = orders[0], orders[-1]
    patient = console_data.PATIENTS[0]

    # the dashboard once the sampler has seen the updates applied
    async def applied() -> bool:
        await page.goto(console)
        text = await page.locator("#applied_per_s").inner_text()
        return text.strip() not in ("", "0", "0.0", "0.00", "-")

    await wait_for(applied, 60, interval=1.0, what="the dashboard counting applied updates")
    await shoot(page, directory, "dashboard")

    # search by HKID, typed as the clinic wrote it: every message of that patient
    await page.get_by_role("link", name="Messages", exact=True).click()
    await page.get_by_role("searchbox").fill(str(patient.hkid))
    await page.get_by_role("button", name="Search").click()
    await expect(page.get_by_role("link", name=correction["msg_id"])).to_be_visible()
    await shoot(page, directory, "messages")

    # the message, masked: neither the HKID nor the name is on the page
    await page.get_by_role("link", name=first["msg_id"]).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Message {first['msg_id']}")
    text = await page.locator("main").inner_text()
    assert patient.hkid is not None
    for secret in (patient.name, patient.hkid, normalise_hkid(patient.hkid), patient.address):
        assert secret not in text, f"{secret!r} shown before reveal"
    await shoot(page, directory, "message", height=1300)

    # the order: its fields, each with the message that set it
    await page.get_by_role("link", name=f"Order {first['accessionNo']}").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Order {first['accessionNo']}")
    await expect(page.get_by_role("link", name=correction["msg_id"]).first).to_be_visible()
    await shoot(page, directory, "order", height=1300)

    # the dead letters, with the conflict listed
    conflict = orders[5]["msg_id"]

    async def listed() -> bool:
        await page.goto(console + "/dlq?reason=conflict")
        return await page.get_by_role("checkbox", name=f"Select {conflict}").count() == 1

    await wait_for(listed, 30, interval=0.5, what=f"{conflict} in the dead-letter list")
    await shoot(page, directory, "dead-letters")
    await page.get_by_role("checkbox", name=f"Select {conflict}").check()
    await page.get_by_role("button", name="Replay selected").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Replay 1 message?")
    await shoot(page, directory, "dead-letters-confirm")
