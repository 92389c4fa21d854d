"""The workers' ceiling in the bare pipeline: consume, write each batch of up to 64
messages with ONE statement (INSERT ... SELECT FROM unnest), one `multiple` ack per batch.
It only parses the msg_id out of the body and writes the inbox row: no merge, no patient
or order rows, so it is what the broker, the database and the client library cost alone.

python -m bench.bare_consumer --amqp amqp://…/vhost --database postgresql://…/db
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys

import aio_pika
import asyncpg

from qcare_ingest.topology import QUEUE

BATCH = 64
# received_at is the bare gateway's receipt time (a header) and processed_at the time of
# the write, as in our worker's transaction: the bench reads the lag of both the same way
INSERT = """INSERT INTO inbox (msg_id, body_sha256, received_at, status, processed_at)
            SELECT m, d, to_timestamp(r / 1e6), 'applied', clock_timestamp()
              FROM unnest($1::text[], $2::bytea[], $3::int8[]) AS t (m, d, r)
            ON CONFLICT DO NOTHING"""


async def run(amqp_url: str, database_url: str) -> None:
    db = await asyncpg.connect(database_url)
    conn = await aio_pika.connect(amqp_url)
    channel = await conn.channel()
    await channel.set_qos(prefetch_count=4 * BATCH)
    queue = await channel.declare_queue(QUEUE, passive=True)
    pending: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()

    async def on_message(msg: aio_pika.abc.AbstractIncomingMessage) -> None:
        pending.put_nowait(msg)

    await queue.consume(on_message)
    print("consuming", flush=True)
    while True:
        batch = [await pending.get()]
        while len(batch) < BATCH and not pending.empty():
            batch.append(pending.get_nowait())
        ids = [json.loads(m.body)["msg_id"] for m in batch]
        digests = [hashlib.sha256(m.body).digest() for m in batch]
        # every bare-gateway message has the header; one without it (none is expected) gets
        # 1970, a lag nobody can mistake for a measurement (received_at is NOT NULL)
        received = [int((m.headers or {}).get("received_at") or 0) for m in batch]  # type: ignore[call-overload]
        await db.execute(INSERT, ids, digests, received)
        await batch[-1].ack(multiple=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--amqp", required=True)
    parser.add_argument("--database", required=True)
    args = parser.parse_args()
    asyncio.run(run(args.amqp, args.database))
    return 0


if __name__ == "__main__":
    sys.exit(main())
