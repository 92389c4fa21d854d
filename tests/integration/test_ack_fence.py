"""Acks of many held messages reach the quorum queue before the channel closes.

RabbitMQ 3.10 holds back a channel's settlements past 32 in flight and drops them when
the channel closes: a purge that acked 60 messages and closed left 25 dead-lettered
(qcare_ingest.ackfence). These tests read the queue's own count of messages (ready and
unacked together) with rabbitmqctl the moment the acks are said to be done: a held-back
ack is a message still counted.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid

import aio_pika
import pytest

from qcare_ingest import dlq
from qcare_ingest.ackfence import AckFence
from qcare_ingest.deadletter import H_REASON
from qcare_ingest.topology import DEAD_KEY, DLX, declare
from tests.conftest import RunEnv
from tests.support.queues import cli, dead_letters


def messages_in(vhost: str, queue: str) -> int:
    """Ready plus unacked, as the queue itself counts them."""
    done = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "-p", vhost, "--no-table-headers", "name",
         "messages"],
        check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    for line in done.stdout.splitlines():
        name, _, count = line.rpartition("\t")
        if name == queue:
            return int(count)
    raise AssertionError(f"no queue {queue} in {vhost}")


async def hold_all(
    queue: aio_pika.abc.AbstractQueue, n: int
) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """n messages delivered and left unacked, through consumers of 20 (as the console reads)."""
    arrived: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()
    held: list[aio_pika.abc.AbstractIncomingMessage] = []
    while len(held) < n:
        await queue.channel.set_qos(prefetch_count=20)
        tag = await queue.consume(arrived.put, no_ack=False)
        for _ in range(min(20, n - len(held))):
            held.append(await asyncio.wait_for(arrived.get(), 10))
        await queue.cancel(tag)
    return held


@pytest.mark.parametrize("n", [1, 16, 17, 300])
async def test_fenced_acks_are_applied_when_settle_returns(
    test_env: RunEnv, amqp: aio_pika.abc.AbstractConnection, n: int
) -> None:
    name = f"fence-{uuid.uuid4().hex[:8]}"
    channel = await amqp.channel(publisher_confirms=True)
    queue = await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
    try:
        for i in range(n):
            await channel.default_exchange.publish(
                aio_pika.Message(b"x" * 300, message_id=str(i)), name
            )
        reader = await amqp.channel()
        held = await hold_all(await reader.declare_queue(name, passive=True), n)
        acks = AckFence(await reader.declare_queue(name, passive=True))
        for message in held:
            await acks.ack(message)
        await acks.settle()
        assert await asyncio.to_thread(messages_in, test_env.name, name) == 0
        await reader.close()
        assert await asyncio.to_thread(messages_in, test_env.name, name) == 0
    finally:
        await queue.delete(if_unused=False, if_empty=False)
        await channel.close()


async def test_dlq_purge_deletes_every_message_it_names(
    test_env: RunEnv, amqp: aio_pika.abc.AbstractConnection
) -> None:
    """`dlq purge --reason R --all --yes` of 600 messages: none is left when it exits."""
    settings = test_env.settings()
    await (await declare(amqp, settings.delivery_limit, settings.retry_delays)).channel.close()
    reason = f"fence-{uuid.uuid4().hex[:6]}"
    ids = [f"{reason}-{i}" for i in range(600)]
    channel = await amqp.channel(publisher_confirms=True)
    dlx = await channel.get_exchange(DLX)
    for msg_id in ids:
        await dlx.publish(
            aio_pika.Message(b"{}", message_id=msg_id, headers={H_REASON: reason}), DEAD_KEY
        )
    await channel.close()
    done = await asyncio.to_thread(
        cli, test_env.env(), "dlq", "purge", "--all", "--reason", reason, "--yes"
    )
    assert done.returncode == 0, done.stderr
    assert "purged 600 message(s)" in done.stderr
    assert not set(ids) & set(await dead_letters(amqp))


async def test_purge_helper_reports_progress(
    test_env: RunEnv, amqp: aio_pika.abc.AbstractConnection
) -> None:
    """dlq.purge (the console's and the CLI's) acks what it is given and says how far it got."""
    settings = test_env.settings()
    await (await declare(amqp, settings.delivery_limit, settings.retry_delays)).channel.close()
    reason = f"fence-{uuid.uuid4().hex[:6]}"
    ids = [f"{reason}-{i}" for i in range(40)]
    channel = await amqp.channel(publisher_confirms=True)
    dlx = await channel.get_exchange(DLX)
    for msg_id in ids:
        await dlx.publish(
            aio_pika.Message(b"{}", message_id=msg_id, headers={H_REASON: reason}), DEAD_KEY
        )
    await channel.close()
    reader = await amqp.channel()
    try:
        ours = [d for d in await dlq.fetch_all(reader) if d.reason == reason]
        seen: list[tuple[int, int]] = []
        assert await dlq.purge(reader, ours, lambda i, t: seen.append((i, t))) == 40
        assert seen[-1] == (40, 40)
    finally:
        await reader.close()
    assert not set(ids) & set(await dead_letters(amqp))
