"""Search, message and order pages in a real browser (issue 15): sign in, search by accession
and by HKID, open a message and reveal its personal data, open an order and follow a field
to the message that set it, and back. Controls are found by role and label only.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest
from playwright.async_api import Page, expect

from tests.conftest import IN_CI
from tests.support import console_data
from tests.support.browser import ConsoleStack
from tests.support.keyboard import AXE_SCRIPT, axe_violations, keyboard_problems

SEARCH_LABEL = "msg_id, accession number, HKID or passport"


async def posted(
    stack: ConsoleStack, db: asyncpg.Pool, dto: dict[str, Any], ctype: str = "application/json"
) -> None:
    body = {
        "application/json": console_data.as_json,
        "application/xml": console_data.as_xml,
        "application/x-www-form-urlencoded": console_data.as_form,
    }[ctype](dto)
    await stack.post(body, ctype)
    await stack.processed(dto["msg_id"])
    stored = await db.fetchval("SELECT body FROM journal WHERE msg_id = $1", dto["msg_id"])
    assert stored == body  # the worker's journal row: the request's own bytes


async def search(page: Page, text: str) -> None:
    await page.get_by_role("link", name="Messages", exact=True).click()
    await expect(page.get_by_role("heading", level=1, name="Messages")).to_be_visible()
    await page.get_by_label(SEARCH_LABEL).fill(text)
    await page.get_by_role("button", name="Search").click()


async def keyboard_usable(page: Page, what: str) -> None:
    problems = await keyboard_problems(page)
    assert not problems, f"{what} is not usable from the keyboard:\n" + "\n".join(problems)
    if AXE_SCRIPT is None:
        if IN_CI:
            pytest.fail("axe-core is not installed")
        return
    violations = await axe_violations(page)
    assert not violations, f"{what}:\n" + "\n".join(violations)


async def test_search_open_a_message_and_reveal(
    signed_in_page: Page, console_stack: ConsoleStack, db: asyncpg.Pool
) -> None:
    page = signed_in_page
    tag = console_data.run_tag()
    dto = console_data.order(0, tag)  # CHAN Siu Ming, K350192(?)
    await posted(console_stack, db, dto)
    msg_id, accession, name, hkid = dto["msg_id"], dto["accessionNo"], dto["name"], dto["hkid"]

    await search(page, accession)
    results = page.get_by_role("table")
    await expect(results.get_by_role("link", name=msg_id, exact=True)).to_be_visible()
    await expect(results).not_to_contain_text(hkid)

    # an HKID typed with spaces, brackets and lower case finds the same message
    await search(page, " " + hkid.lower().replace("(", " (") + " ")
    await results.get_by_role("link", name=msg_id, exact=True).click()

    await expect(page.get_by_role("heading", level=1, name=f"Message {msg_id}")).to_be_visible()
    main = page.get_by_role("main")
    await expect(main).to_contain_text("applied")
    await expect(main).not_to_contain_text(name)
    await expect(main).not_to_contain_text(hkid)
    await expect(main).not_to_contain_text(dto["address"])
    await expect(page.get_by_label("Body as received")).to_contain_text(dto["location"])
    await keyboard_usable(page, "the message page")

    before = await db.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'message_reveal' AND subject = $1", msg_id
    )
    await page.get_by_role("button", name="Reveal personal data").click()
    await expect(
        page.get_by_role("status").filter(has_text="Personal data revealed")
    ).to_be_visible()
    dto_name = page.get_by_role("row").filter(
        has=page.get_by_role("rowheader", name="name", exact=True)
    )
    await expect(dto_name).to_contain_text(name)
    await expect(page.get_by_label("Body as received")).to_contain_text(dto["address"])
    after = await db.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'message_reveal' AND subject = $1", msg_id
    )
    assert after == before + 1


async def test_open_an_order_and_follow_a_field_to_its_message(
    signed_in_page: Page, console_stack: ConsoleStack, db: asyncpg.Pool
) -> None:
    page = signed_in_page
    tag = console_data.run_tag()
    first = console_data.order(1, tag)  # WONG Mei Ling, X-RAY ROOM 2
    await posted(console_stack, db, first, "application/xml")
    later = {
        "msg_id": first["msg_id"] + "-B",
        "accessionNo": first["accessionNo"],
        "location": "X-RAY ROOM 5",
    }
    await console_stack.post(json.dumps(later).encode())
    await console_stack.processed(later["msg_id"])
    accession = first["accessionNo"]

    await search(page, accession)
    await page.get_by_role("table").get_by_role("link", name=accession).first.click()
    await expect(page.get_by_role("heading", level=1, name=f"Order {accession}")).to_be_visible()
    main = page.get_by_role("main")
    await expect(main).not_to_contain_text(first["name"])
    await expect(main).not_to_contain_text(first["hkid"])
    await keyboard_usable(page, "the order page")

    def field(name: str) -> Any:
        return page.get_by_role("row").filter(
            has=page.get_by_role("rowheader", name=name, exact=True)
        )

    await expect(field("location")).to_contain_text("X-RAY ROOM 5")
    await expect(field("location")).to_contain_text("HKT")
    await expect(field("ref_doctor").get_by_role("link")).to_have_text(first["msg_id"])
    await field("location").get_by_role("link", name=later["msg_id"]).click()

    await expect(
        page.get_by_role("heading", level=1, name=f"Message {later['msg_id']}")
    ).to_be_visible()
    await page.get_by_role("link", name=f"Order {accession}").click()
    await expect(page.get_by_role("heading", level=1, name=f"Order {accession}")).to_be_visible()

    await page.get_by_role("button", name="Reveal personal data").click()
    await expect(field("name")).to_contain_text(first["name"])
    await expect(field("name").get_by_role("link")).to_have_text(first["msg_id"])
    await field("name").get_by_role("link").click()
    await expect(
        page.get_by_role("heading", level=1, name=f"Message {first['msg_id']}")
    ).to_be_visible()
    await expect(page.get_by_role("main")).not_to_contain_text(first["name"])  # masked again
    await expect(page.get_by_label("Body as received")).to_contain_text("<location>")
