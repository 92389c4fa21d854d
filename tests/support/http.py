"""Talking to a test gateway, and publishing as the gateway would."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import aio_pika
import aiohttp

from qcare_ingest.dto import QCareDto
from qcare_ingest.envelope import Envelope
from qcare_ingest.topology import EXCHANGE, ROUTING_KEY
from tests.support.payloads import UPDATE
from tests.support.procs import Gateway, wait_for


async def post(
    http: aiohttp.ClientSession,
    gw: Gateway,
    body: bytes | dict[str, Any],
    ctype: str = "application/json",
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    async with http.post(gw.url + UPDATE, data=data, headers={"Content-Type": ctype}) as resp:
        return resp.status, await resp.json(content_type=None)


async def get(http: aiohttp.ClientSession, gw: Gateway, path: str) -> tuple[int, Any]:
    async with http.get(gw.url + "/api/v1/qcare" + path) as resp:
        return resp.status, await resp.json(content_type=None)


async def wait_processed(
    http: aiohttp.ClientSession,
    gw: Gateway,
    msg_id: str,
    timeout: float = 30,
    statuses: tuple[str, ...] = ("applied", "stale"),
) -> Any:
    async def done() -> Any:
        status, view = await get(http, gw, f"/messages/{msg_id}")
        return view if status == 200 and view["status"] in statuses else None

    return await wait_for(done, timeout, what=f"message {msg_id} in {statuses}")


async def publish_as_gateway(
    amqp: aio_pika.abc.AbstractConnection, dto: dict[str, Any], received_at: datetime
) -> None:
    """A message exactly as the gateway publishes it, with a chosen receipt time."""
    model = QCareDto.model_validate(dto)
    env = Envelope(model.msg_id or "", received_at, model.encode(), model)
    channel = await amqp.channel()
    try:
        exchange = await channel.get_exchange(EXCHANGE)
        await exchange.publish(
            aio_pika.Message(
                env.body,
                message_id=env.msg_id,
                headers=env.headers(),
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            ROUTING_KEY,
        )
    finally:
        await channel.close()
