"""The gateway's ceiling: a bare aiohttp handler that publishes the raw body with confirms.

python -m bench.bare_gateway --port 8099 --amqp amqp://…/vhost
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator

import aio_pika
from aiohttp import web

from qcare_ingest.topology import EXCHANGE, ROUTING_KEY

EXCHANGE_KEY = web.AppKey("exchange", aio_pika.abc.AbstractExchange)


async def post(request: web.Request) -> web.Response:
    body = await request.read()
    await request.app[EXCHANGE_KEY].publish(
        aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), ROUTING_KEY
    )
    return web.json_response({"status": "queued"})


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--amqp", required=True)
    args = parser.parse_args()

    async def broker(app: web.Application) -> AsyncIterator[None]:
        conn = await aio_pika.connect(args.amqp)
        channel = await conn.channel(publisher_confirms=True)
        app[EXCHANGE_KEY] = await channel.get_exchange(EXCHANGE)
        yield
        await conn.close()

    app = web.Application(client_max_size=4 * 1024 * 1024)
    app.cleanup_ctx.append(broker)
    app.router.add_post("/api/v1/qcare/updateXRayOrder", post)
    app.router.add_get("/healthz", lambda _: web.json_response({"status": "ok"}))  # type: ignore[arg-type,return-value]
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
