"""Building blocks of the benchmark: messages, prefill, counting what was applied."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta

import aio_pika
import asyncpg

from qcare_ingest.dto import QCareDto
from qcare_ingest.envelope import Envelope, now_utc
from qcare_ingest.topology import EXCHANGE, ROUTING_KEY, declare

SAMPLE = {
    "hkid": "A123456(3)", "name": "CHAN TAI MAN", "gender": "M", "dob": "1980-02-29",
    "studyDate": "2025-10-26T15:51:31.8166249+08:00", "location": "Room 1", "modality": "CR",
    "services": [
        {"studyDesc": "CHEST PA", "bodypart": "CHEST", "noOfImages": 1, "warningTime": 3},
        {"studyDesc": "CHEST LAT", "bodypart": "CHEST", "noOfImages": 1, "warningTime": 3},
    ],
}  # fmt: skip


def message(run: str, i: int, patients: int = 5000) -> Envelope:
    """Message i: its own order, one of `patients` patients (so patients are shared)."""
    dto = QCareDto.model_validate(
        {**SAMPLE, "msg_id": f"{run}-{i}", "accessionNo": f"{run}-ACC-{i}",
         "hkid": f"B{i % patients:06d}(0)"}
    )  # fmt: skip
    return Envelope(dto.msg_id or "", now_utc() + timedelta(microseconds=i), dto.encode(), dto)


async def prefill(amqp_url: str, n: int, run: str, in_flight: int = 128) -> float:
    """Publish n messages as the gateway would (confirmed, persistent); returns msgs/s."""
    conn = await aio_pika.connect(amqp_url)
    try:
        topology = await declare(conn, 5)
        exchange = await topology.channel.get_exchange(EXCHANGE)
        limit = asyncio.Semaphore(in_flight)

        async def one(i: int) -> None:
            async with limit:
                env = message(run, i)
                await exchange.publish(
                    aio_pika.Message(env.body, message_id=env.msg_id, headers=env.headers(),
                                     delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    ROUTING_KEY,
                )  # fmt: skip

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return n / (time.perf_counter() - started)
    finally:
        await conn.close()


async def count_applied(db: asyncpg.Pool | asyncpg.Connection, run: str) -> int:
    n = await db.fetchval("SELECT count(*) FROM inbox WHERE msg_id LIKE $1 || '-%'", run)
    return int(n)


def new_run() -> str:
    return "b" + uuid.uuid4().hex[:8]
