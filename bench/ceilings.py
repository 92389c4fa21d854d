"""What the parts can do on their own, measured in the same run as the service."""

from __future__ import annotations

import asyncio
import time

import aio_pika
import asyncpg

from bench.load import message
from qcare_ingest.envelope import Envelope
from qcare_ingest.topology import EXCHANGE, QUEUE, ROUTING_KEY, declare


async def publish_rate(amqp_url: str, n: int, in_flight: int) -> float:
    """Confirmed persistent publishes of the canonical body, `in_flight` at a time."""
    body = message("ceiling", 0).body
    conn = await aio_pika.connect(amqp_url)
    try:
        topology = await declare(conn, 5)
        exchange = await topology.channel.get_exchange(EXCHANGE)
        limit = asyncio.Semaphore(in_flight)

        async def one() -> None:
            async with limit:
                await exchange.publish(
                    aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    ROUTING_KEY,
                )

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        return n / (time.perf_counter() - started)
    finally:
        await conn.close()


async def consume_rate(amqp_url: str, n: int, prefetch: int) -> float:
    """Consume and ack n messages (already queued), manual acks."""
    conn = await aio_pika.connect(amqp_url)
    try:
        channel = await conn.channel()
        await channel.set_qos(prefetch_count=prefetch)
        queue = await channel.declare_queue(QUEUE, passive=True)
        done = asyncio.Event()
        count = 0
        started = time.perf_counter()

        async def on_message(msg: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal count
            await msg.ack()
            count += 1
            if count >= n:
                done.set()

        tag = await queue.consume(on_message)
        await done.wait()
        elapsed = time.perf_counter() - started
        await queue.cancel(tag)
        return n / elapsed
    finally:
        await conn.close()


NAIVE = [
    """INSERT INTO inbox (msg_id, body_sha256, received_at, status, accession_no, patient_key)
       VALUES ($1, $2, $3, 'applied', $4, $5) ON CONFLICT DO NOTHING""",
    """INSERT INTO patients (patient_key, hkid_raw, hkid, name, gender_raw, gender, dob_raw,
                             version, last_msg_id)
       VALUES ($1, $2, $3, $4, 'M', 'M', '1980-02-29', $5, $6)
       ON CONFLICT (patient_key) DO UPDATE SET name = EXCLUDED.name, version = EXCLUDED.version,
           last_msg_id = EXCLUDED.last_msg_id, updated_at = now()""",
    """INSERT INTO orders (accession_no, patient_key, study_date_raw, location, modality,
                           version, last_msg_id)
       VALUES ($1, $2, '2025-10-26T15:51:31.8166249+08:00', 'Room 1', 'CR', $3, $4)
       ON CONFLICT (accession_no) DO UPDATE SET patient_key = EXCLUDED.patient_key,
           version = EXCLUDED.version, last_msg_id = EXCLUDED.last_msg_id, updated_at = now()""",
    "DELETE FROM order_services WHERE accession_no = $1",
    """INSERT INTO order_services (accession_no, line_no, study_desc, bodypart, no_of_images,
                                   warning_time) VALUES ($1, $2, 'CHEST PA', 'CHEST', 1, 3)""",
]


async def naive_db_rate(database_url: str, n: int, connections: int, run: str) -> float:
    """The worker's writes as separate statements, one transaction per message."""
    envs = [message(run, i) for i in range(n)]
    pool = await asyncpg.create_pool(database_url, min_size=connections, max_size=connections)
    assert pool is not None
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def loop() -> None:
        async with pool.acquire() as conn:
            while not queue.empty():
                env = envs[queue.get_nowait()]
                key = "HKID:" + (env.dto.hkid or "")
                acc = env.dto.accessionNo
                async with conn.transaction():
                    await conn.execute(NAIVE[0], env.msg_id, env.digest, env.received_at, acc, key)
                    await conn.execute(NAIVE[1], key, env.dto.hkid, env.dto.hkid, env.dto.name,
                                       env.version, env.msg_id)  # fmt: skip
                    await conn.execute(NAIVE[2], acc, key, env.version, env.msg_id)
                    await conn.execute(NAIVE[3], acc)
                    await conn.execute(NAIVE[4], acc, 0)
                    await conn.execute(NAIVE[4], acc, 1)

    try:
        started = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(connections)))
        return n / (time.perf_counter() - started)
    finally:
        await pool.close()


async def naive_worker_rate(amqp_url: str, database_url: str, n: int) -> float:
    """A worker as people write it: aio-pika's consume callback, prefetch 32, a pool of 4
    asyncpg connections, each message handled in its own task, in one transaction of
    separate statements (inbox row, patient upsert, order upsert, service lines replaced),
    acked one by one. Drains n messages already queued; first delivery to last ack."""
    pool = await asyncpg.create_pool(database_url, min_size=4, max_size=4)
    assert pool is not None
    conn = await aio_pika.connect(amqp_url)
    done = asyncio.Event()
    count = 0
    first: float | None = None
    tasks: set[asyncio.Task[None]] = set()
    failed: list[BaseException] = []

    async def handle(msg: aio_pika.abc.AbstractIncomingMessage) -> None:
        try:
            await apply(msg)
        except Exception as exc:  # a hung drain would hide it
            failed.append(exc)
            done.set()

    async def apply(msg: aio_pika.abc.AbstractIncomingMessage) -> None:
        nonlocal count
        env = Envelope.decode(msg.body, msg.message_id, msg.headers)
        key = "HKID:" + (env.dto.hkid or "")
        acc = env.dto.accessionNo
        async with pool.acquire() as db, db.transaction():
            await db.execute(NAIVE[0], env.msg_id, env.digest, env.received_at, acc, key)
            await db.execute(NAIVE[1], key, env.dto.hkid, env.dto.hkid, env.dto.name,
                             env.version, env.msg_id)  # fmt: skip
            await db.execute(NAIVE[2], acc, key, env.version, env.msg_id)
            await db.execute(NAIVE[3], acc)
            for line_no, _ in enumerate(env.dto.services or ()):
                await db.execute(NAIVE[4], acc, line_no)
        await msg.ack()
        count += 1
        if count >= n:
            done.set()

    async def on_message(msg: aio_pika.abc.AbstractIncomingMessage) -> None:
        nonlocal first
        if first is None:
            first = time.perf_counter()
        task = asyncio.ensure_future(handle(msg))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    try:
        channel = await conn.channel()
        await channel.set_qos(prefetch_count=32)
        queue = await channel.declare_queue(QUEUE, passive=True)
        tag = await queue.consume(on_message)
        await done.wait()
        elapsed = time.perf_counter() - (first or 0.0)
        await queue.cancel(tag)
        if failed:
            raise failed[0]
        return n / elapsed
    finally:
        await conn.close()
        await pool.close()
