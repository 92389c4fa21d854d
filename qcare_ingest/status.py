"""`qcare-ingest status`: queue depths, consumers, the oldest waiting message, inbox counts."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any, TextIO

import aio_pika
import asyncpg

from .broker import connect, republish
from .config import Settings
from .envelope import H_RECEIVED_AT
from .topology import DLQ, EXCHANGE, QUEUE, ROUTING_KEY, declare, delay_queue


async def oldest_waiting(channel: aio_pika.abc.AbstractChannel) -> datetime | None:
    """Receipt time of the message at the head of the main queue.

    It is read by taking it, republishing a copy (confirmed) and acking the
    original: the message moves to the tail and its delivery count is not
    touched, so looking never pushes it toward the delivery limit. Order does
    not matter to the workers (every field carries its version), and a crash
    in between leaves a duplicate, which the inbox absorbs.
    """
    queue = await channel.declare_queue(QUEUE, passive=True)
    message = await queue.get(no_ack=False, fail=False)
    if message is None:
        return None
    exchange = await channel.get_exchange(EXCHANGE)
    await republish(exchange, ROUTING_KEY, message)
    await message.ack()
    raw = (message.headers or {}).get(H_RECEIVED_AT)
    try:
        return datetime.fromisoformat(raw.decode() if isinstance(raw, bytes) else str(raw))
    except ValueError:
        return None


async def collect(settings: Settings) -> dict[str, Any]:
    report: dict[str, Any] = {"queues": [], "oldest_waiting_s": None, "inbox": None}
    conn = await connect(settings.amqp_url, timeout=10, ca_file=settings.amqp_ca_file)
    try:
        topology = await declare(conn, settings.delivery_limit, settings.retry_delays)
        names = [QUEUE, *(delay_queue(s) for s in settings.retry_delays), DLQ]
        for name in names:
            queue = await topology.channel.declare_queue(name, passive=True)
            result = queue.declaration_result
            report["queues"].append(
                {
                    "queue": name,
                    "messages": result.message_count,
                    "consumers": result.consumer_count,
                }
            )
        oldest = await oldest_waiting(topology.channel)
        if oldest is not None:
            report["oldest_waiting_s"] = round((datetime.now(UTC) - oldest).total_seconds(), 3)
    finally:
        await conn.close()
    with contextlib.suppress(OSError, asyncpg.PostgresError, TimeoutError):
        async with asyncio.timeout(5):
            db = await asyncpg.connect(settings.database_url)
            try:
                rows = await db.fetch(
                    """SELECT status, count(*) AS n, max(processed_at) AS last
                         FROM inbox GROUP BY status ORDER BY status"""
                )
            finally:
                await db.close()
        report["inbox"] = {r["status"]: {"count": r["n"], "last": r["last"]} for r in rows}
    return report


def render(report: dict[str, Any], out: TextIO) -> None:
    out.write(f"{'queue':<32} {'messages':>9} {'consumers':>9}\n")
    for q in report["queues"]:
        out.write(f"{q['queue']:<32} {q['messages']:>9} {q['consumers']:>9}\n")
    age = report["oldest_waiting_s"]
    out.write(f"oldest waiting message: {'none' if age is None else f'{age:.1f} s old'}\n")
    inbox = report["inbox"]
    if inbox is None:
        out.write("inbox: database unreachable\n")
        return
    for status, row in inbox.items():
        last = row["last"].isoformat(timespec="seconds") if row["last"] else "-"
        out.write(f"inbox {status:<14} {row['count']:>9}   last {last}\n")


async def run(settings: Settings, out: TextIO) -> int:
    render(await collect(settings), out)
    return 0
