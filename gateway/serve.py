"""Running the gateway: web.run_app's life cycle, with the edge's limits on the listener.

`web.run_app` offers no way to choose the protocol factory of its listening socket, so this
does what it does with public APIs only: an `AppRunner` (application start-up, shutdown and
cleanup, the low-level `web.Server`), and `loop.create_server` with a `ConnectionLimit` in
front of that server as the protocol factory. SIGINT/SIGTERM: stop accepting, close idle
connections, let in-flight requests finish within QCARE_SHUTDOWN_GRACE, then the application's
cleanup (the publisher's own grace) - the order `run_app` uses.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from qcare_ingest.config import Settings
from qcare_ingest.signals import on_stop
from qcare_ingest.tls import server_context

from .edge import ConnectionLimit

log = logging.getLogger(__name__)

BACKLOG = 128  # run_app's


def handler_options(settings: Settings) -> dict[str, Any]:
    """aiohttp's per-connection options. keepalive_timeout is also the request head's
    deadline: aiohttp closes a connection waiting for a head (idle, or a head still
    dripping in) that long after it opened or answered last."""
    return {"access_log": None, "keepalive_timeout": settings.body_timeout}


async def serve(app: web.Application, settings: Settings) -> None:
    """Serve `app` until SIGINT or SIGTERM, then shut down gracefully."""
    stop = asyncio.Event()
    options = handler_options(settings)
    runner = web.AppRunner(app, shutdown_timeout=settings.shutdown_grace, **options)
    with on_stop(stop.set):
        await runner.setup()
        listener: asyncio.Server | None = None
        try:
            assert runner.server is not None
            limit = ConnectionLimit(runner.server, settings.max_connections, **options)
            tls: dict[str, Any] = {}
            if settings.tls_cert is not None and settings.tls_key is not None:
                # a handshake gets the same deadline as a request head (slow clients)
                tls = {
                    "ssl": server_context(settings.tls_cert, settings.tls_key),
                    "ssl_handshake_timeout": settings.body_timeout,
                }
            listener = await asyncio.get_running_loop().create_server(
                limit, settings.http_host, settings.http_port, backlog=BACKLOG, **tls
            )
            host, port = listener.sockets[0].getsockname()[:2]
            log.info(
                "gateway listening",
                extra={
                    "action": "listening",
                    "url": f"{'https' if tls else 'http'}://{host}:{port}",
                    "tls": "on" if tls else ("proxy" if settings.behind_tls_proxy else "off"),
                    "auth": "on" if settings.api_keys else "off",
                    "max_connections": settings.max_connections,
                    "body_timeout": settings.body_timeout,
                },
            )
            if not settings.api_keys:
                log.warning(
                    "AUTHENTICATION IS OFF: QCARE_API_KEYS is empty, so anyone who can reach "
                    "this port reads and writes patient data; allowed on loopback only",
                    extra={"action": "auth_off", "auth": "off"},
                )
            await stop.wait()
            log.info(
                "gateway stopping",
                extra={"action": "stopping", "connections": limit.open, "refused": limit.refused},
            )
        finally:
            if listener is not None:
                listener.close()  # stop accepting; open connections are the runner's to end
            await runner.cleanup()
            if listener is not None:
                await listener.wait_closed()
