"""A tiny HTTP server for a worker: /healthz, /readyz and /metrics on its own port."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from . import metrics

ReadyCheck = Callable[[], Awaitable[dict[str, Any]]]
READY: web.AppKey[ReadyCheck] = web.AppKey("ready")


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    checks = await request.app[READY]()
    ready = all(bool(v) for v in checks.values())
    body = {"status": "ready" if ready else "unavailable", **checks}
    return web.json_response(body, status=200 if ready else 503)


async def _metrics(request: web.Request) -> web.Response:
    body, ctype = metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": ctype})


async def serve_probes(host: str, port: int, ready: ReadyCheck) -> tuple[web.AppRunner, int]:
    """Start the probe server; returns the runner (to clean up) and the bound port."""
    app = web.Application()
    app[READY] = ready
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    return runner, int(bound)
