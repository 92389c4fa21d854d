"""The gateway's ceiling: a bare aiohttp handler that publishes the raw body with confirms.

python -m bench.bare_gateway --port 8099 --amqp amqp://…/vhost [--publish frames]

`--publish aio-pika` (the default, the ceiling of the target): aio-pika's
`Exchange.publish`, as a handler is usually written. `--publish frames`: the frame writer
our gateway uses (qcare_ingest/amqp_publish.py), so that the comparison shows what the
gateway's own work costs beyond the fastest publish we have.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import AsyncIterator

import aio_pika
from aiohttp import web

from qcare_ingest.amqp_publish import ConfirmedPublisher
from qcare_ingest.broker import connect, frame_publisher
from qcare_ingest.topology import EXCHANGE, ROUTING_KEY

EXCHANGE_KEY = web.AppKey("exchange", aio_pika.abc.AbstractExchange)
FRAMES_KEY = web.AppKey("frames", ConfirmedPublisher)
COUNTER = itertools.count()


async def post(request: web.Request) -> web.Response:
    body = await request.read()
    # the receipt time, as our gateway sends it: the bare pipeline's lag counts from it
    headers = {"received_at": time.time_ns() // 1000}  # µs (a float header is 32-bit)
    await request.app[EXCHANGE_KEY].publish(
        aio_pika.Message(body, headers=headers, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
        ROUTING_KEY,
    )
    return web.json_response({"status": "queued"})


async def post_frames(request: web.Request) -> web.Response:
    body = await request.read()
    headers = {"received_at": time.time_ns() // 1000}  # µs (a float header is 32-bit)
    await request.app[FRAMES_KEY].send(body, str(next(COUNTER)), headers, "application/json")
    return web.json_response({"status": "queued"})


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--amqp", required=True)
    parser.add_argument("--publish", choices=["aio-pika", "frames"], default="aio-pika")
    args = parser.parse_args()

    async def broker(app: web.Application) -> AsyncIterator[None]:
        conn = await aio_pika.connect(args.amqp)
        channel = await conn.channel(publisher_confirms=True)
        app[EXCHANGE_KEY] = await channel.get_exchange(EXCHANGE)
        yield
        await conn.close()

    async def frames(app: web.Application) -> AsyncIterator[None]:
        conn = await connect(args.amqp, 10, coalesce=True)
        channel = await conn.channel(publisher_confirms=True, on_return_raises=True)
        app[FRAMES_KEY] = await frame_publisher(conn, channel)
        yield
        await conn.close()

    app = web.Application(client_max_size=4 * 1024 * 1024)
    if args.publish == "frames":
        app.cleanup_ctx.append(frames)
        app.router.add_post("/api/v1/qcare/updateXRayOrder", post_frames)
    else:
        app.cleanup_ctx.append(broker)
        app.router.add_post("/api/v1/qcare/updateXRayOrder", post)
    app.router.add_get("/healthz", lambda _: web.json_response({"status": "ok"}))  # type: ignore[arg-type,return-value]
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
