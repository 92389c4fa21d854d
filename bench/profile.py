"""`python -m bench.profile`: where each process's CPU goes per message, under a fixed load.

Starts a gateway and two workers (as `scripts/bench` does, in their own vhost and
database), offers `--rate` requests per second for `--seconds` with the benchmark's load
generator, and samples the gateway and both workers with py-spy (`py-spy record --format
raw`, non-blocking) meanwhile. Prints, per process, CPU µs per message from /proc and the
share of py-spy's samples by area (leaf frame's package: asyncpg, aiormq, our code, ...),
and the functions with the most samples, self and inclusive. `--raw DIR` keeps py-spy's
collapsed stacks (for flamegraph.pl or speedscope).

    python -m bench.profile --rate 600 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import asyncpg

from bench.__main__ import lag_stats, open_loop, sampled_load, wait_http
from bench.load import new_run
from tests.support import isolation
from tests.support.procs import Gateway, Worker

# the leaf frame's file decides its area: first match wins
AREAS = (
    ("asyncpg", "asyncpg"),
    ("aiormq", "aiormq/pamqp"),
    ("pamqp", "aiormq/pamqp"),
    ("aio_pika", "aio-pika"),
    ("aiohttp", "aiohttp"),
    ("pydantic", "pydantic"),
    ("json/", "json"),
    ("logging", "logging"),
    ("qcare_ingest/binding", "ours: binding"),
    ("qcare_ingest/", "ours: qcare_ingest"),
    ("gateway/", "ours: gateway"),
    ("worker/", "ours: worker"),
    ("asyncio", "asyncio"),
    ("prometheus_client", "prometheus"),
    ("selectors", "asyncio"),
    ("socket", "asyncio"),
)


def area(frame: str) -> str:
    for needle, name in AREAS:
        if needle in frame:
            return name
    return "other"


def summarise(raw: Path, top: int) -> dict[str, Any]:
    """py-spy's raw format: `frame;frame;...;leaf count` per line, root first."""
    areas: collections.Counter[str] = collections.Counter()
    selfs: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if not f.startswith("process ")]
        frames = [f for f in frames if not f.startswith("thread ")]
        if not frames:
            continue
        total += n
        leaf = frames[-1]
        areas[area(leaf)] += n
        selfs[leaf] += n
        for f in set(frames):
            inclusive[f] += n
    pct = (lambda n: round(100 * n / total, 1)) if total else (lambda n: 0.0)
    return {
        "samples": total,
        "areas": {k: pct(v) for k, v in areas.most_common()},
        "self": [(f, pct(n)) for f, n in selfs.most_common(top)],
        "inclusive": [(f, pct(n)) for f, n in inclusive.most_common(top) if "(" in f],
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    pyspy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if pyspy is None:
        raise SystemExit("py-spy not found: pip install py-spy")
    raw_dir = Path(args.raw) if args.raw else Path(tempfile.mkdtemp(prefix="qcare-profile-"))
    raw_dir.mkdir(parents=True, exist_ok=True)
    iso = await isolation.create("qcare_profile")
    gw = Gateway(iso.env())
    workers = [Worker(iso.env(), concurrency=args.concurrency) for _ in range(2)]
    db = await asyncpg.connect(iso.database_url)
    try:
        await wait_http(gw.url)
        await asyncio.gather(*(w.consuming() for w in workers))
        url = gw.url + "/api/v1/qcare/updateXRayOrder"
        await open_loop(url, args.rate, 3, new_run())  # warm up
        procs = {"gateway": gw.pid, **{f"worker{i}": w.pid for i, w in enumerate(workers)}}
        spies = {}
        for name, pid in procs.items() if not args.no_spy else ():
            command = [
                pyspy, "record", "--pid", str(pid), "--duration", str(int(args.seconds)),
                "--rate", "250", "--nonblocking", "--format", "raw",
                "--output", str(raw_dir / f"{name}.txt"),
            ]  # fmt: skip
            spies[name] = await asyncio.create_subprocess_exec(
                *command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        pids = {"gateway": [gw.pid], "workers": [w.pid for w in workers]}
        run, load, cpu, disk = await sampled_load(db, url, args.rate, args.seconds, pids, "applied")
        lag = await lag_stats(db, run)
        for spy in spies.values():
            await asyncio.wait_for(spy.wait(), 60)
        return {
            "rate": args.rate,
            "seconds": args.seconds,
            "messages": cpu["messages"],
            "cpu_us_per_message": cpu["us_per_message"],
            "lag_ms": {"p50": lag["lag_p50_ms"], "p99": lag["lag_p99_ms"]},
            "gateway_ms": {"p50": load["p50_ms"], "p99": load["p99_ms"]},
            "disk": disk,
            "profiles": {
                name: summarise(raw_dir / f"{name}.txt", args.top)
                for name in procs
                if (raw_dir / f"{name}.txt").exists()
            },
            "raw": str(raw_dir),
        }
    finally:
        await db.close()
        for proc in (gw, *workers):
            proc.terminate()
            proc.close()
        await isolation.destroy(iso)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--rate", type=float, default=600.0, help="offered req/s")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--concurrency", type=int, default=None, help="workers' --concurrency (default: theirs)"
    )
    parser.add_argument("--raw", default=None, help="keep py-spy's collapsed stacks here")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    parser.add_argument("--no-spy", action="store_true", help="CPU per message only")
    args = parser.parse_args()
    out = asyncio.run(run(args))
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"{out['messages']} messages at {out['rate']:.0f} req/s; CPU µs per message:")
    print("  " + ", ".join(f"{k} {v}" for k, v in out["cpu_us_per_message"].items()))
    lag, gw = out["lag_ms"], out["gateway_ms"]
    print(
        f"  lag p50 {lag['p50']} ms, p99 {lag['p99']} ms; "
        f"gateway p50 {gw['p50']} ms, p99 {gw['p99']} ms"
    )
    for name, prof in out["profiles"].items():
        print(f"\n== {name}: {prof['samples']} samples; by area (% of samples):")
        print("  " + ", ".join(f"{k} {v}" for k, v in prof["areas"].items()))
        print("  self:")
        for f, p in prof["self"]:
            print(f"    {p:5.1f}  {f}")
        print("  inclusive:")
        for f, p in prof["inclusive"]:
            print(f"    {p:5.1f}  {f}")
    print(f"\nraw stacks: {out['raw']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
