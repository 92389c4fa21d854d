"""The gateway's publisher writes its frames itself (qcare_ingest/amqp_publish.py): what
RabbitMQ receives, confirms and returns is what aiormq's publish gave. Each test has a vhost
of its own, so nothing else consumes its queue."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aio_pika
import pytest

from qcare_ingest.broker import Publisher
from qcare_ingest.errors import PublishError, UnpublishableError
from qcare_ingest.topology import EXCHANGE, QUEUE, ROUTING_KEY
from tests.conftest import AMQP_BASE, RunEnv
from tests.support.isolation import rabbitmqctl

HEADERS = {
    "x-qcare-received-at": "2026-12-03T10:00:00.123456+00:00",
    "x-qcare-content-type": "application/json; charset=utf-8",
    "x-qcare-client": "clinic-\u4e2d",
    "x-qcare-raw-bytes": 300_000,
}


@pytest.fixture
async def publisher(test_env: RunEnv) -> AsyncIterator[tuple[Publisher, str]]:
    name = f"qcare_pub_{uuid.uuid4().hex[:10]}"
    rabbitmqctl("add_vhost", name)
    rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    url = AMQP_BASE.rstrip("/") + "/" + quote(name, safe="")
    pub = Publisher(url, delivery_limit=5, timeout=5)
    try:
        assert await pub.ping()
        yield pub, url
    finally:
        await pub.close(grace=1)
        rabbitmqctl("delete_vhost", name)


@contextlib.asynccontextmanager
async def main_queue(url: str) -> AsyncIterator[aio_pika.abc.AbstractQueue]:
    """The main queue, on a connection of its own (as an operator would reach it)."""
    conn = await aio_pika.connect(url)
    try:
        channel = await conn.channel()
        yield await channel.declare_queue(QUEUE, passive=True)
    finally:
        await conn.close()


async def take(url: str, count: int) -> list[aio_pika.abc.AbstractIncomingMessage]:
    async with main_queue(url) as queue:
        got = []
        async with asyncio.timeout(20):
            while len(got) < count:
                message = await queue.get(no_ack=True, fail=False)
                if message is None:
                    await asyncio.sleep(0.02)
                else:
                    got.append(message)
        assert await queue.get(no_ack=True, fail=False) is None  # nothing more arrived
        return got


async def test_messages_arrive_whole_with_their_properties(
    publisher: tuple[Publisher, str],
) -> None:
    pub, url = publisher
    small = b'{"msg_id": "small"}'
    large = bytes(i % 251 for i in range(300_000))  # three body frames at frame_max 128 KiB
    await pub.publish(small, "small", HEADERS)
    await pub.publish(large, "large", {**HEADERS, "x-qcare-warnings": '["w"]'})
    first, second = await take(url, 2)
    assert (first.body, first.message_id, second.body, second.message_id) == (
        small, "small", large, "large"
    )  # fmt: skip
    for message in (first, second):
        assert message.content_type == "application/json"
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    headers: dict[str, Any] = dict(first.headers)
    assert headers.pop("x-delivery-count", 0) == 0  # the quorum queue's own
    assert headers == HEADERS
    assert second.headers["x-qcare-warnings"] == '["w"]'


async def test_many_concurrent_publishes_are_each_confirmed_once(
    publisher: tuple[Publisher, str],
) -> None:
    pub, url = publisher
    ids = [f"m-{i}" for i in range(400)]
    await asyncio.gather(*(pub.publish(i.encode(), i, HEADERS) for i in ids))
    got = await take(url, len(ids))
    assert sorted(m.message_id or "" for m in got) == sorted(ids)
    assert all(m.body == (m.message_id or "").encode() for m in got)


async def test_an_unroutable_message_is_refused_and_the_next_one_goes(
    publisher: tuple[Publisher, str],
) -> None:
    """mandatory: with the main queue unbound RabbitMQ returns the message, and the publish
    fails (503 at the gateway) instead of a 200 for a message that went nowhere."""
    pub, url = publisher
    async with main_queue(url) as queue:
        await queue.unbind(EXCHANGE, ROUTING_KEY)
        with pytest.raises(PublishError):
            await pub.publish(b"{}", "lost", HEADERS)
        await queue.bind(EXCHANGE, ROUTING_KEY)
    await pub.publish(b"{}", "found", HEADERS)
    assert [m.message_id for m in await take(url, 1)] == ["found"]


async def test_one_msg_id_twice_in_flight_to_an_unbound_queue_gets_no_200(
    publisher: tuple[Publisher, str],
) -> None:
    """RabbitMQ names a returned message by its message_id alone: a client's retry sent
    while the first post still waits for its confirm must not be answered by the first
    one's ack (before, one of the two got a 200 and neither was queued)."""
    pub, url = publisher
    async with main_queue(url) as queue:
        await queue.unbind(EXCHANGE, ROUTING_KEY)
        outcomes = await asyncio.gather(
            *(pub.publish(b"{}", "same", HEADERS) for _ in range(3)), return_exceptions=True
        )
        assert [type(o) for o in outcomes] == [PublishError] * 3
        await queue.bind(EXCHANGE, ROUTING_KEY)
    await asyncio.gather(*(pub.publish(b"{}", "twice", HEADERS) for _ in range(2)))
    assert [m.message_id for m in await take(url, 2)] == ["twice", "twice"]


async def test_every_confirmed_publish_is_in_the_queue_when_the_broker_refuses_some(
    publisher: tuple[Publisher, str],
) -> None:
    """A queue over its length limit nacks (reject-publish): acks and nacks mixed on one
    channel, each answering its own publish. Every publish that returned is queued."""
    pub, url = publisher
    vhost = url.rsplit("/", 1)[1]
    rabbitmqctl("set_policy", "-p", vhost, "one", "^qcare\\.ingest$", '{"max-length":3}',
                "--apply-to", "queues")  # fmt: skip

    async def confirmed(msg_id: str) -> bool:
        try:
            await pub.publish(b"{}", msg_id, HEADERS)
        except PublishError:
            return False
        return True

    outcomes = await asyncio.gather(*(confirmed(f"n-{i}") for i in range(60)))
    outcomes += [await confirmed(f"s-{i}") for i in range(10)]
    assert not all(outcomes)  # the limit was reached: nacks happened
    async with main_queue(url) as queue:
        assert queue.declaration_result.message_count == sum(outcomes)


async def test_a_header_that_cannot_be_encoded_costs_only_its_own_request(
    publisher: tuple[Publisher, str],
) -> None:
    pub, url = publisher
    before = pub._conn
    with pytest.raises(UnpublishableError):
        await pub.publish(b"{}", "bad", {**HEADERS, "x-qcare-client": "\udc80"})
    await pub.publish(b"{}", "good", HEADERS)
    assert pub._conn is before  # the connection stayed
    assert [m.message_id for m in await take(url, 1)] == ["good"]
