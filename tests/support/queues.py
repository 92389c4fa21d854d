"""Looking into the test vhost's queues without disturbing them."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import aio_pika

from qcare_ingest.topology import DLQ, QUEUE
from tests.support.procs import ROOT


async def queue_depth(amqp: aio_pika.abc.AbstractConnection, name: str = QUEUE) -> int:
    channel = await amqp.channel()
    try:
        queue = await channel.declare_queue(name, passive=True)
        return int(queue.declaration_result.message_count or 0)
    finally:
        await channel.close()


async def dead_letters(amqp: aio_pika.abc.AbstractConnection) -> dict[str, dict[str, Any]]:
    """msg_id -> headers of every message in the dead-letter queue (left in place)."""
    channel = await amqp.channel()
    found: dict[str, dict[str, Any]] = {}
    try:
        queue = await channel.declare_queue(DLQ, passive=True)
        while (message := await queue.get(no_ack=False, fail=False)) is not None:
            found[message.message_id or ""] = dict(message.headers or {})
    finally:
        await channel.close()  # unacked: all of them go back
    return found


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qcare_ingest.cli", *args],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
