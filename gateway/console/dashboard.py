"""The live dashboard at GET /console and its data at GET /console/dashboard.json (issue 15).

A sampler task (qcare_ingest.dashboard_data.Sampler), started with the gateway and
cancelled at shutdown, takes a sample every 5 s into a ring of one hour. The page is
rendered with the numbers and the charts (inline SVG) of the latest samples; dashboard.js
fetches the JSON every 2 s and redraws them. Every open page reads the sampler's memory:
more pages cost no more RabbitMQ or PostgreSQL work.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from qcare_ingest.console_dlq import BrokerLink
from qcare_ingest.dashboard_data import (
    HOUR,
    Sampler,
    chart_path,
    nice_ceiling,
    series_summary,
)

from ..views import POOL, SETTINGS
from .render import render

SAMPLER = web.AppKey("console_sampler", Sampler)
WIDTH, HEIGHT = 720.0, 160.0


@dataclass(frozen=True)
class Chart:
    key: str
    title: str
    unit: str
    series: tuple[tuple[str, str], ...]  # (series name in the JSON, label)


CHARTS = (
    Chart("depth", "Queue depth", "messages",
          (("main", "Main queue"), ("delay", "Delay queues"), ("dead", "Dead-letter queue"))),
    Chart("rate", "Throughput", "per second",
          (("accepted", "Accepted per second"), ("applied", "Applied per second"))),
    Chart("lag", "End-to-end lag", "seconds", (("lag_p50", "Lag p50"), ("lag_p99", "Lag p99"))),
)  # fmt: skip


def _number(value: float | None) -> str:
    if value is None:
        return "unavailable"
    return f"{value:g}" if float(value).is_integer() else f"{value:.3g}"


def chart_view(chart: Chart, data: dict[str, Any]) -> dict[str, Any]:
    """What the template draws for one chart: the scale, a path per series, and the text
    alternative (each series' latest and highest value over the hour)."""
    series = data["series"]
    times: list[float] = series["t"]
    known = [v for name, _ in chart.series for v in series[name] if v is not None]
    top = nice_ceiling(max(known, default=0.0))
    end = times[-1] if times else 0.0
    lines = []
    summary = []
    for index, (name, label) in enumerate(chart.series):
        latest, highest = series_summary(series[name])
        lines.append(
            {
                "name": name,
                "label": label,
                "index": index,
                "d": chart_path(times, series[name], end, top, WIDTH, HEIGHT),
            }
        )
        summary.append(f"{label}: now {_number(latest)}, highest {_number(highest)}")
    return {
        "key": chart.key,
        "title": chart.title,
        "unit": chart.unit,
        "top": _number(top),
        "lines": lines,
        "desc": f"{chart.title} over the last hour ({chart.unit}). " + "; ".join(summary) + ".",
    }


async def dashboard(request: web.Request) -> web.Response:
    data = request.app[SAMPLER].snapshot()
    return render(
        request,
        "dashboard.html",
        data=data,
        charts=[chart_view(c, data) for c in CHARTS],
        number=_number,
        width=int(WIDTH),
        height=int(HEIGHT),
        hour_minutes=int(HOUR / 60),
    )


async def dashboard_json(request: web.Request) -> web.Response:
    return web.Response(
        body=request.app[SAMPLER].snapshot_json(),
        content_type="application/json",
    )


async def _sampler(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    link = BrokerLink(settings.amqp_url, settings.amqp_ca_file)
    sampler = Sampler(link, lambda: app.get(POOL), settings.retry_delays)
    app[SAMPLER] = sampler
    task = asyncio.create_task(sampler.run(), name="console-dashboard-sampler")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await sampler.close()
    await link.close()


def add_routes(app: web.Application) -> None:
    app.cleanup_ctx.append(_sampler)
    app.router.add_get("/console", dashboard)
    app.router.add_get("/console/dashboard.json", dashboard_json)
