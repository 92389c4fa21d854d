"""Defences at the gateway's edge against slow or hostile clients (issue 12)."""

from __future__ import annotations

import asyncio

from aiohttp import web

BODY_TIMEOUT = web.AppKey("body_timeout", float)


async def read_body(request: web.Request) -> bytes:
    """The whole body within the configured deadline: 408 when it passes; 413 above the
    application's client_max_size."""
    try:
        async with asyncio.timeout(request.app[BODY_TIMEOUT]):
            return await request.read()
    except TimeoutError:
        raise web.HTTPRequestTimeout(
            text='{"Message": "The request body did not arrive in time."}',
            content_type="application/json",
            headers={"Connection": "close"},
        ) from None
