"""HTTP load from its own process: closed loop (saturation) or open loop (a fixed rate).

    python -m bench.http_load URL --mode closed --concurrency 64 --duration 10
    python -m bench.http_load URL --mode open --rate 800 --duration 10

Each request posts the help-page sample with its own msg_id and accessionNo over
keep-alive HTTP/1.1 connections. The client is a bare asyncio protocol (pre-built
request bytes, status line and Content-Length parsing only): on a 2-core machine every
cycle the generator spends is taken from the server it measures, and aiohttp's client
cost about as much CPU per request as the gateway's own work. Open-loop latency counts
from the moment a request was due, so a stalled server is not hidden by the generator
waiting for it (coordinated omission). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

SAMPLE = (Path(__file__).resolve().parents[1] / "tests" / "vectors"
          / "json_01_help_page_sample.json").read_bytes()  # fmt: skip


def body(prefix: str, i: int) -> bytes:
    return SAMPLE.replace(b'"sample string 1","name"', f'"{prefix}-{i}","name"'.encode()).replace(
        b'"sample string 16"', f'"{prefix}-ACC-{i}"'.encode()
    )


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Conn(asyncio.Protocol):
    """One keep-alive connection, one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.waiter: asyncio.Future[int] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection lost"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end].decode("latin-1").lower()
        length = 0
        for line in head.split("\r\n")[1:]:
            if line.startswith("content-length:"):
                length = int(line.split(":", 1)[1])
        if len(self.buffer) < end + 4 + length:
            return
        self.buffer = self.buffer[end + 4 + length :]
        status = int(head[9:12])
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(status)

    async def request(self, data: bytes) -> int:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter


async def run(args: argparse.Namespace) -> dict[str, object]:
    url = urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    head = (
        f"POST {url.path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Content-Type: application/json\r\nContent-Length: "
    ).encode()
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    idle: list[Conn] = []
    opened = 0
    slots = asyncio.Semaphore(args.concurrency)

    async def one(i: int, due: float) -> None:
        nonlocal errors, opened
        payload = body(args.prefix, i)
        async with slots:
            conn = None
            while idle and conn is None:
                candidate = idle.pop()
                conn = None if candidate.closed else candidate
            try:
                if conn is None:
                    _, conn = await loop.create_connection(Conn, host, port)
                    opened += 1
                status = await conn.request(head + b"%d\r\n\r\n" % len(payload) + payload)
            except OSError:
                errors += 1
                return
            idle.append(conn)
        statuses[status] = statuses.get(status, 0) + 1
        latencies.append(time.perf_counter() - due)

    cpu_started = time.process_time()
    started = time.perf_counter()
    end = started + args.duration
    if args.mode == "closed":
        counter = iter(range(10**9))

        async def closed_loop() -> None:
            while time.perf_counter() < end:
                await one(next(counter), time.perf_counter())

        await asyncio.gather(*(closed_loop() for _ in range(args.concurrency)))
    else:
        tasks: set[asyncio.Task[None]] = set()
        interval = 1.0 / args.rate
        i = 0
        while (due := started + i * interval) < end:
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.ensure_future(one(i, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        if tasks:
            await asyncio.wait(tasks, timeout=30)
    elapsed = time.perf_counter() - started
    for conn in idle:
        if conn.transport is not None:
            conn.transport.close()
    ok = statuses.get(200, 0)
    return {
        "mode": args.mode,
        "offered_rps": args.rate if args.mode == "open" else None,
        "concurrency": args.concurrency,
        "connections": opened,
        "duration_s": round(elapsed, 3),
        "ok": ok,
        "statuses": statuses,
        "errors": errors,
        "rps": round(ok / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 2) if latencies else None,
        "cpu_s": round(time.process_time() - cpu_started, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--mode", choices=["closed", "open"], default="closed")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--prefix", default="load")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
