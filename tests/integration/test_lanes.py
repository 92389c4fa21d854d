"""A worker's lanes: a moderate stream is batched on one lane, a backlog runs on all of them.

A worker holds `lanes` channels (QCARE_WORKER_CONCURRENCY / (2 x batch): 2 by default), each
with its own prefetch (two batches) and transaction. Lane i consumes with RabbitMQ consumer
priority lanes - i, so a lane only gets deliveries while the lanes before it have their
prefetch full. Without the priorities RabbitMQ round-robins every delivery over the lanes,
and a moderate stream becomes as many streams of one-message transactions.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from datetime import UTC, datetime

import aio_pika
import asyncpg

from qcare_ingest.dto import QCareDto
from qcare_ingest.envelope import Envelope
from qcare_ingest.topology import EXCHANGE, QUEUE, ROUTING_KEY
from tests.conftest import Procs
from tests.support.http import publish_as_gateway
from tests.support.payloads import order
from tests.support.procs import Worker, wait_for

DEFAULT_CONCURRENCY = 256  # the product's default: 2 lanes, prefetch 128, batches of 64


def lanes_used(worker: Worker, prefix: str) -> Counter[int]:
    """Messages of `prefix` committed, by the lane whose batch held them."""
    used: Counter[int] = Counter()
    for e in worker.events():
        if e.get("action") == "processed":
            used[e["lane"]] += sum(1 for msg_id, _ in e["results"] if msg_id.startswith(prefix))
    return +used


async def applied(db: asyncpg.Pool, prefix: str) -> int:
    return int(
        await db.fetchval(
            "SELECT count(*) FROM inbox WHERE msg_id LIKE $1 || '%' AND status = 'applied'",
            prefix,
        )
    )


async def queue_empty(amqp: aio_pika.abc.AbstractConnection) -> bool:
    channel = await amqp.channel()
    try:
        queue = await channel.declare_queue(QUEUE, passive=True)
        return queue.declaration_result.message_count == 0
    finally:
        await channel.close()


def batch_sizes(worker: Worker, prefix: str) -> list[int]:
    return [
        len(e["results"])
        for e in worker.events()
        if e.get("action") == "processed" and e["results"][0][0].startswith(prefix)
    ]


async def test_a_moderate_stream_is_batched_on_the_first_lane(
    procs: Procs, amqp: aio_pika.abc.AbstractConnection, db: asyncpg.Pool
) -> None:
    worker = procs.worker(concurrency=512)  # 4 lanes: round robin would spread widest
    await worker.consuming()
    started = [e for e in worker.events() if e.get("action") == "consuming"]
    assert started[-1]["lanes"] == 4, started
    # nothing left over by earlier tests (the vhost is the run's): it would fill lane 0
    await wait_for(lambda: queue_empty(amqp), 30, what="queue empty")
    prefix = f"ln{uuid.uuid4().hex[:6]}-"
    n = 40
    for i in range(n):  # one at a time, each confirmed: never more than one in flight
        msg_id = f"{prefix}{i}"
        dto = json.loads(order(msg_id, f"ACC-{msg_id}"))
        await publish_as_gateway(amqp, dto, datetime.now(UTC))

    async def all_applied() -> bool:
        return await applied(db, prefix) == n

    await wait_for(all_applied, 30, what="all applied")
    # round-robin over four lanes would have put about 30 of the 40 on lanes 1-3
    assert lanes_used(worker, prefix) == {0: n}


async def test_a_backlog_runs_on_several_lanes_at_once(
    procs: Procs, amqp: aio_pika.abc.AbstractConnection, db: asyncpg.Pool
) -> None:
    prefix = f"lb{uuid.uuid4().hex[:6]}-"
    n = 600  # more than one lane's prefetch (128): the next lanes get the rest
    channel = await amqp.channel()  # publisher confirms: all queued before the worker starts
    try:
        exchange = await channel.get_exchange(EXCHANGE)

        async def publish(i: int) -> None:
            msg_id = f"{prefix}{i}"
            model = QCareDto.model_validate(json.loads(order(msg_id, f"ACC-{msg_id}")))
            env = Envelope(msg_id, datetime.now(UTC), model.encode(), model)
            await exchange.publish(
                aio_pika.Message(env.body, message_id=msg_id, headers=env.headers(),
                                 delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                ROUTING_KEY,
            )  # fmt: skip

        await asyncio.gather(*(publish(i) for i in range(n)))
    finally:
        await channel.close()
    worker = procs.worker(concurrency=DEFAULT_CONCURRENCY)
    await worker.consuming()

    async def all_applied() -> bool:
        return await applied(db, prefix) == n

    await wait_for(all_applied, 60, what="backlog applied")

    async def all_logged() -> bool:  # a batch's line is written after its commit
        return sum(lanes_used(worker, prefix).values()) == n

    await wait_for(all_logged, 10, interval=0.1, what="every batch logged")
    used = lanes_used(worker, prefix)
    assert len(used) >= 2, used
    # each lane holds two batches, so the next one is there when a transaction ends: most
    # messages go in full batches (with a prefetch of one batch they averaged half of one)
    sizes = batch_sizes(worker, prefix)
    assert sum(size for size in sizes if size == 64) >= n // 2, sizes
