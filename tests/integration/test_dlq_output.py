"""Issue 12: `dlq list` and `dlq show` never write a raw control character to the terminal.

Messages are put straight into the test vhost's dead-letter queue with ESC sequences, C1
controls (8-bit CSI), bidirectional controls and lone surrogates in their msg_id,
accessionNo, headers and DTO, and the real commands are run as an operator would.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import pytest

from qcare_ingest.deadletter import H_ERROR, H_LAST_FAILURE, H_REASON
from qcare_ingest.topology import DEAD_KEY, DLQ, DLX, declare
from tests.conftest import RunEnv
from tests.support.queues import cli, dead_letters

# Anything a terminal would act on: C0 but the newline, DEL, C1, bidi controls, separators,
# lone surrogates (which cannot even be written as UTF-8).
RAW = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
# Clears the screen, turns text red, sets the window title, 8-bit CSI, reverses the line,
# DEL.
EVIL = "\x1b[2J\x1b[31m\x1b]0;owned\x07\x9b1m\x85\u202edcba\u2066\x7f"
EVIL_SHOWN = "\\x1b[2J\\x1b[31m\\x1b]0;owned\\x07\\x9b1m\\x85\\u202edcba\\u2066\\x7f"

Publish = Callable[[str, dict[str, Any], dict[str, Any]], Awaitable[None]]


def raw_characters(text: str) -> list[str]:
    return sorted({f"U+{ord(c):04X}" for c in RAW.findall(text)})


@pytest.fixture
async def dead_letter(
    test_env: RunEnv, amqp: aio_pika.abc.AbstractConnection
) -> AsyncIterator[Publish]:
    """Publishes (msg_id, body, headers) into the dead-letter queue; removes them after."""
    settings = test_env.settings()
    await declare(amqp, settings.delivery_limit, settings.retry_delays)  # idempotent
    channel = await amqp.channel(publisher_confirms=True)
    dlx = await channel.get_exchange(DLX)
    published: set[str] = set()

    async def publish(msg_id: str, body: dict[str, Any], headers: dict[str, Any]) -> None:
        message = aio_pika.Message(
            json.dumps(body).encode(),  # lone surrogates as \ud83d, the way .NET writes them
            message_id=msg_id,
            headers=headers,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await dlx.publish(message, DEAD_KEY)  # confirmed
        published.add(msg_id)

    try:
        yield publish
    finally:
        await channel.close()
        await _remove(amqp, published)


async def _remove(amqp: aio_pika.abc.AbstractConnection, ids: set[str]) -> None:
    """Ack this test's messages in the dead-letter queue; the others go back untouched."""
    channel = await amqp.channel()
    try:
        queue = await channel.declare_queue(DLQ, passive=True)
        while (message := await queue.get(no_ack=False, fail=False)) is not None:
            if message.message_id in ids:
                await message.ack()
    finally:
        await channel.close()


@pytest.fixture
async def evil_id(dead_letter: Publish) -> str:
    msg_id = f"dlqout-{uuid.uuid4().hex[:8]}-{EVIL}"
    body = {
        "msg_id": msg_id,
        "accessionNo": f"ACC-{EVIL}",
        "hkid": "A123456(3)",
        "name": f"CHAN {EVIL} TAI MAN",
        "address": f"Flat {EVIL}",
    }
    headers = {
        H_REASON: f"data_refused{EVIL}",
        H_ERROR: f"refused {EVIL}",
        "x-custom": f"raw {EVIL}",
    }
    await dead_letter(msg_id, body, headers)
    return msg_id


async def run(test_env: RunEnv, *args: str) -> subprocess.CompletedProcess[str]:
    done = await asyncio.to_thread(cli, test_env.env(), "dlq", *args)
    assert raw_characters(done.stdout) == []
    assert raw_characters(done.stderr) == []
    assert done.returncode == 0, done.stderr
    return done


async def test_dlq_list_escapes_control_characters(
    test_env: RunEnv, amqp: aio_pika.abc.AbstractConnection, evil_id: str
) -> None:
    assert evil_id in await dead_letters(amqp)
    listing = await run(test_env, "list")
    row = next(r for r in listing.stdout.splitlines() if EVIL_SHOWN in r)
    assert row.startswith(evil_id.replace(EVIL, EVIL_SHOWN) + " ")  # the whole msg_id
    assert f" ACC-{EVIL_SHOWN} " in row
    assert " data_refused\\x1b[2J\\x1b[31m" in row  # the reason, cut to its column


async def test_dlq_show_escapes_control_characters_and_keeps_the_values(
    test_env: RunEnv, evil_id: str
) -> None:
    shown = await run(test_env, "show", evil_id)
    for escape in ("\\u001b[2J", "\\u009b", "\\u0085", "\\u202e", "\\u2066", "\\u007f"):
        assert escape in shown.stdout
    message = json.loads(shown.stdout)  # still JSON, and it decodes to the message's own text
    assert message["msg_id"] == evil_id
    assert message["reason"] == f"data_refused{EVIL}"
    assert message["error"] == f"refused {EVIL}"
    assert message["headers"]["x-custom"] == f"raw {EVIL}"
    assert message["dto"]["accessionNo"] == f"ACC-{EVIL}"
    assert message["dto"]["address"] == "***"  # masked unless --reveal (issue 14)
    assert message["dto"]["hkid"] == "A12****(3)"
    assert message["dto"]["name"] == "***"
    revealed = json.loads((await run(test_env, "show", evil_id, "--reveal", "--as", "t")).stdout)
    assert revealed["dto"]["address"] == f"Flat {EVIL}"  # whole, and still escaped
    assert revealed["dto"]["name"] == f"CHAN {EVIL} TAI MAN"
    # the operator may also copy the msg_id from `dlq list`, escapes and all
    copied = await run(test_env, "show", evil_id.replace(EVIL, EVIL_SHOWN))
    assert json.loads(copied.stdout)["msg_id"] == evil_id


async def test_dlq_list_and_show_take_lone_surrogates_and_a_numeric_accession(
    test_env: RunEnv, dead_letter: Publish
) -> None:
    tag = uuid.uuid4().hex[:8]
    odd, number = f"dlqout-{tag}-surrogate", f"dlqout-{tag}-number"
    await dead_letter(
        odd,
        {"msg_id": odd, "accessionNo": "ACC-\ud83d", "address": "CHAN \udfff\ud83d"},
        {H_REASON: "data_refused"},
    )
    await dead_letter(number, {"msg_id": number, "accessionNo": 12345}, {H_REASON: "bug"})
    listing = await run(test_env, "list")
    rows = {r.split(" ", 1)[0]: r for r in listing.stdout.splitlines()}
    assert " ACC-\\ud83d " in rows[odd]
    assert " 12345 " in rows[number]
    shown = json.loads((await run(test_env, "show", odd, "--reveal")).stdout)
    assert shown["dto"] == {
        "msg_id": odd,
        "accessionNo": "ACC-\ud83d",
        "address": "CHAN \udfff\ud83d",
    }


async def test_dlq_purge_older_than_is_the_dead_letter_retention(
    test_env: RunEnv, amqp: aio_pika.abc.AbstractConnection, dead_letter: Publish
) -> None:
    """Issue 14: `purge --older-than DAYS` deletes what was dead-lettered longer ago, and
    keeps the recent messages and those whose failure time is unknown."""
    tag = uuid.uuid4().hex[:8]
    now = datetime.now(UTC)
    ages = {"old": now - timedelta(days=40), "recent": now - timedelta(days=2), "unknown": None}
    for name, failed in ages.items():
        headers: dict[str, Any] = {H_REASON: "data_refused"}
        if failed is not None:
            headers[H_LAST_FAILURE] = failed.isoformat()
        await dead_letter(f"retain-{tag}-{name}", {"msg_id": f"retain-{tag}-{name}"}, headers)
    dry = await run(test_env, "purge", "--older-than", "30", "--dry-run")
    assert f"would purge retain-{tag}-old " in dry.stdout
    assert f"retain-{tag}-recent" not in dry.stdout
    assert f"retain-{tag}-unknown" not in dry.stdout
    await run(test_env, "purge", "--older-than", "30", "--yes")
    left = {m for m in await dead_letters(amqp) if m.startswith(f"retain-{tag}-")}
    assert left == {f"retain-{tag}-recent", f"retain-{tag}-unknown"}
