"""HTTP load from its own process: closed loop (saturation) or open loop (a fixed rate).

    python -m bench.http_load URL --mode closed --concurrency 64 --duration 10
    python -m bench.http_load URL --mode open --rate 800 --duration 10

Each request posts the help-page sample with its own msg_id and accessionNo. Open-loop
latency counts from the moment a request was due, so a stalled server is not hidden by
the generator waiting for it (coordinated omission). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import aiohttp

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


async def run(args: argparse.Namespace) -> dict[str, object]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int, due: float) -> None:
            nonlocal errors
            try:
                async with session.post(args.url, data=body(args.prefix, i), headers=headers) as r:
                    await r.read()
                    statuses[r.status] = statuses.get(r.status, 0) + 1
            except (aiohttp.ClientError, OSError):
                errors += 1
                return
            latencies.append(time.perf_counter() - due)

        started = time.perf_counter()
        end = started + args.duration
        if args.mode == "closed":
            counter = iter(range(10**9))

            async def loop() -> None:
                while time.perf_counter() < end:
                    await one(next(counter), time.perf_counter())

            await asyncio.gather(*(loop() for _ in range(args.concurrency)))
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
    ok = statuses.get(200, 0)
    return {
        "mode": args.mode,
        "offered_rps": args.rate if args.mode == "open" else None,
        "concurrency": args.concurrency,
        "duration_s": round(elapsed, 3),
        "ok": ok,
        "statuses": statuses,
        "errors": errors,
        "rps": round(ok / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 2) if latencies else None,
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
