"""`python -m bench` (or scripts/bench): the whole benchmark, on the local RabbitMQ and
PostgreSQL, in its own vhost and database. Prints a table, writes bench/results/*.json and
a PNG chart. `--smoke` runs every phase tiny (seconds), as the test suite does."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import asyncpg

from bench import ceilings
from bench.cpu import Sampler
from bench.disk import DiskProbe, describe_disk
from bench.load import count_applied, new_run, prefill
from qcare_ingest.topology import QUEUE
from tests.support import isolation
from tests.support.procs import ROOT, Gateway, Proc, Worker, free_port, wait_for

RESULTS = ROOT / "bench" / "results"


@dataclass(frozen=True)
class Sizes:
    publish: int = 20000
    naive: int = 4000
    naive_worker: int = 10000
    http_s: float = 10.0
    http_concurrency: int = 64
    pairs: int = 3
    drain: int = 50000
    workers: tuple[int, ...] = (1, 2, 4)
    e2e_s: float = 20.0
    soak_s: float = 300.0


SMOKE = Sizes(
    publish=300,
    naive=100,
    naive_worker=100,
    http_s=1.0,
    http_concurrency=8,
    pairs=1,
    drain=300,
    workers=(1,),
    e2e_s=1.0,
    soak_s=1.0,
)


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def purge(amqp_url: str) -> None:
    conn = await aio_pika.connect(amqp_url)
    try:
        channel = await conn.channel()
        await (await channel.declare_queue(QUEUE, passive=True)).purge()
    finally:
        await conn.close()


async def http_load(url: str, *args: str) -> dict[str, Any]:
    """The load generator runs in its own process, as a client would."""
    command = [sys.executable, "-m", "bench.http_load", url, *args]
    out = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, cwd=ROOT, timeout=900
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    result: dict[str, Any] = json.loads(out.stdout)
    return result


async def open_loop(url: str, rate: float, seconds: float, prefix: str) -> dict[str, Any]:
    """`rate` requests per second for `seconds`, each with its own msg_id under `prefix`."""
    args = ["--mode", "open", "--rate", f"{rate:.1f}", "--duration", str(seconds)]
    return await http_load(url, *args, "--concurrency", "512", "--prefix", prefix)


async def wait_http(url: str) -> None:
    async with aiohttp.ClientSession() as session:

        async def up() -> bool:
            try:
                async with session.get(url + "/healthz") as resp:
                    return resp.status == 200
            except aiohttp.ClientError:
                return False

        await wait_for(up, 30, what=url)


async def phase_ceilings(iso: isolation.Isolated, s: Sizes, out: dict[str, Any]) -> None:
    log("ceilings: publish, consume, naive database loop")
    one = await ceilings.publish_rate(iso.amqp_url, max(50, s.publish // 10), in_flight=1)
    pipelined = await ceilings.publish_rate(iso.amqp_url, s.publish, in_flight=64)
    consumed = await ceilings.consume_rate(iso.amqp_url, s.publish + max(50, s.publish // 10), 256)
    naive1 = await ceilings.naive_db_rate(iso.database_url, s.naive, 1, new_run())
    naive4 = await ceilings.naive_db_rate(iso.database_url, s.naive, 4, new_run())
    log(f"ceilings: naive worker (aio-pika callback, prefetch 32, 4 connections), "
        f"{s.naive_worker} queued")  # fmt: skip
    await prefill(iso.amqp_url, s.naive_worker, new_run())
    naive_worker = await ceilings.naive_worker_rate(iso.amqp_url, iso.database_url, s.naive_worker)
    out["ceilings"] = {
        "publish_awaited_one_at_a_time_per_s": round(one),
        "publish_pipelined_64_per_s": round(pipelined),
        "consume_ack_prefetch_256_per_s": round(consumed),
        "naive_db_1_connection_per_s": round(naive1),
        "naive_db_4_connections_per_s": round(naive4),
        "naive_worker_per_s": round(naive_worker),
    }


async def phase_gateway(iso: isolation.Isolated, s: Sizes, out: dict[str, Any]) -> None:
    """Saturation of the bare handler (aio-pika's publish), the bare handler on our frame
    writer and ours, alternated `s.pairs` times (medians: one 10 s run on a shared 2-core
    box varies by +-10 %), then ours at 25/50/75 %."""
    log("gateway: bare handlers and ours alternately, then latency at 25/50/75 %")
    closed = ["--mode", "closed", "--concurrency", str(s.http_concurrency)]
    closed += ["--duration", str(s.http_s)]
    gw = Gateway(iso.env())
    procs: list[Proc] = [gw]
    try:
        await wait_http(gw.url)  # first: it declares the topology the bare handlers publish to
        port, frames_port = free_port(), free_port()
        args = ["--amqp", iso.amqp_url]
        procs.append(Proc("bench.bare_gateway", iso.env(), ["--port", str(port), *args]))
        procs.append(
            Proc("bench.bare_gateway", iso.env(),
                 ["--port", str(frames_port), *args, "--publish", "frames"])
        )  # fmt: skip
        bare_url, frames_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{frames_port}"
        await wait_http(bare_url)
        await wait_http(frames_url)
        bare_url += "/api/v1/qcare/updateXRayOrder"
        frames_url += "/api/v1/qcare/updateXRayOrder"
        url = gw.url + "/api/v1/qcare/updateXRayOrder"
        bare_runs: list[dict[str, Any]] = []
        frames_runs: list[dict[str, Any]] = []
        our_runs: list[dict[str, Any]] = []
        order = [(bare_url, bare_runs), (frames_url, frames_runs), (url, our_runs)]
        for i in range(s.pairs):  # each round in another order: none always follows another
            for target, runs in order[i % 3 :] + order[: i % 3]:
                runs.append(await http_load(target, *closed, "--prefix", new_run()))
                await purge(iso.amqp_url)
        bare_rps = statistics.median(r["rps"] for r in bare_runs)
        frames_rps = statistics.median(r["rps"] for r in frames_runs)
        sat = sorted(our_runs, key=lambda r: r["rps"])[len(our_runs) // 2]
        points = []
        for share in (0.25, 0.5, 0.75):
            await purge(iso.amqp_url)
            rate = max(1.0, sat["rps"] * share)
            r = await open_loop(url, rate, s.http_s, new_run())
            points.append({"share": share, **r})
        out["gateway"] = {
            "bare_saturation_rps": bare_rps,
            "bare_runs_rps": [r["rps"] for r in bare_runs],
            "bare_frames_saturation_rps": frames_rps,
            "bare_frames_runs_rps": [r["rps"] for r in frames_runs],
            "ratio_to_bare_frames": round(sat["rps"] / max(frames_rps, 0.1), 3),
            "saturation_rps": sat["rps"],
            "runs_rps": [r["rps"] for r in our_runs],
            "saturation_p50_ms": sat["p50_ms"],
            "saturation_p99_ms": sat["p99_ms"],
            "ratio_to_bare": round(sat["rps"] / max(bare_rps, 0.1), 3),
            "open_loop": points,
            "peak_rss_mb": round(rss_mb(gw.pid, "VmHWM"), 1),
        }
    finally:
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.terminate()
            proc.close()  # kills what did not stop
    await purge(iso.amqp_url)


async def phase_drain(iso: isolation.Isolated, s: Sizes, out: dict[str, Any]) -> None:
    results = []
    db = await asyncpg.connect(iso.database_url)
    try:
        for n_workers in s.workers:
            run = new_run()
            log(f"drain: {s.drain} queued messages, {n_workers} worker(s)")
            await prefill(iso.amqp_url, s.drain, run)
            await db.execute("ANALYZE")
            workers = [Worker(iso.env(), concurrency=None) for _ in range(n_workers)]
            try:
                await asyncio.gather(*(w.consuming() for w in workers))

                async def drained(run: str = run) -> bool:
                    return await count_applied(db, run) >= s.drain

                await wait_for(drained, 900, interval=0.5, what="drain")
                # first to last commit, on the database's clock (not worker start-up)
                span = await db.fetchval(
                    """SELECT extract(epoch FROM max(processed_at) - min(processed_at))
                         FROM inbox WHERE msg_id LIKE $1 || '-%'""",
                    run,
                )
                rate = s.drain / float(span) if span else float("nan")
                results.append(
                    {
                        "workers": n_workers,
                        "messages": s.drain,
                        "per_s": round(rate),
                        "peak_rss_mb": round(max(rss_mb(w.pid, "VmHWM") for w in workers), 1),
                    }
                )
            finally:
                for w in workers:
                    w.terminate()
                    w.close()
        # the naive worker once more, now that the tables hold what our drains wrote: the
        # ratio uses the mean of its two runs (one 10,000-message run varies by 2x here)
        log(f"drain: naive worker again, {s.naive_worker} queued")
        await prefill(iso.amqp_url, s.naive_worker, new_run())
        again = await ceilings.naive_worker_rate(iso.amqp_url, iso.database_url, s.naive_worker)
    finally:
        await db.close()
    naive = out["ceilings"]["naive_db_1_connection_per_s"]
    first = out["ceilings"]["naive_worker_per_s"]
    out["ceilings"]["naive_worker_runs_per_s"] = [first, round(again)]
    naive_worker = round((first + again) / 2)
    out["ceilings"]["naive_worker_per_s"] = naive_worker
    for r in results:
        r["ratio_to_naive_worker"] = round(r["per_s"] / naive_worker, 2)
        r["ratio_to_naive_1_connection"] = round(r["per_s"] / naive, 2)
    out["drain"] = results


async def lag_stats(db: asyncpg.Connection, run: str) -> dict[str, Any]:
    row = await db.fetchrow(
        """SELECT count(*) AS n,
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY lag) * 1000 AS p50,
                  percentile_cont(0.99) WITHIN GROUP (ORDER BY lag) * 1000 AS p99
             FROM (SELECT extract(epoch FROM processed_at - received_at) AS lag
                     FROM inbox WHERE msg_id LIKE $1 || '-%') t""",
        run,
    )
    return {
        "applied": row["n"],
        "lag_p50_ms": round(row["p50"] or 0, 1),
        "lag_p99_ms": round(row["p99"] or 0, 1),
    }


async def span_stats(db: asyncpg.Connection, run: str) -> dict[str, Any]:
    """Messages of `run` applied per second, from the first receipt to the last commit."""
    row = await db.fetchrow(
        """SELECT count(*) AS n,
                  extract(epoch FROM max(processed_at) - min(received_at)) AS span
             FROM inbox WHERE msg_id LIKE $1 || '-%'""",
        run,
    )
    span = float(row["span"] or 0)
    per_s = round(row["n"] / span) if span > 0 else 0
    return {"applied": row["n"], "span_s": round(span, 2), "per_s": per_s}


async def wait_applied(db: asyncpg.Connection, run: str, n: int, what: str) -> None:
    """Until n messages of `run` are in the inbox (10 minutes at most)."""

    async def all_in() -> bool:
        return await count_applied(db, run) >= n

    await wait_for(all_in, 600, interval=0.1, what=what)


async def saturate(
    db: asyncpg.Connection, url: str, s: Sizes, what: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A closed-loop burst, counted from first receipt to last commit: (load, span_stats)."""
    run = new_run()
    burst = await http_load(
        url, "--mode", "closed", "--concurrency", str(s.http_concurrency),
        "--duration", str(s.http_s), "--prefix", run,
    )  # fmt: skip
    await wait_applied(db, run, burst["ok"], what)
    return burst, await span_stats(db, run)


async def sampled_load(
    db: asyncpg.Connection,
    url: str,
    rate: float,
    seconds: float,
    pids: dict[str, list[int]],
    what: str,
) -> tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]:
    """`rate` req/s for `seconds`, until all is applied, with the CPU of `pids` (and of
    RabbitMQ and PostgreSQL) sampled and the disk probed: (run, load, CPU µs per message,
    the disk's flush times)."""
    run = new_run()
    sampler = Sampler(db, pids)
    probe = DiskProbe(RESULTS)
    await sampler.start()
    probe.start()
    try:
        load = await open_loop(url, rate, seconds, run)
        await wait_applied(db, run, load["ok"], what)
    finally:
        flushes = await asyncio.to_thread(probe.stop)
    used = await sampler.stop()
    cpu = cpu_per_message({**used, "load": load["cpu_s"]}, await count_applied(db, run))
    return run, load, cpu, flushes


async def phase_end_to_end(iso: isolation.Isolated, s: Sizes, out: dict[str, Any]) -> None:
    """Gateway and 2 workers on one machine: the service's own saturation (closed-loop
    HTTP burst, counted from first receipt to last commit), then the lag at 50 % of it, and
    at 50 % of the gateway-alone saturation; then the soak."""
    gateway_sat = out["gateway"]["saturation_rps"]
    gw = Gateway(iso.env())
    workers = [Worker(iso.env(), concurrency=None) for _ in range(2)]
    db = await asyncpg.connect(iso.database_url)
    try:
        await wait_http(gw.url)
        await asyncio.gather(*(w.consuming() for w in workers))
        url = gw.url + "/api/v1/qcare/updateXRayOrder"
        # median of `pairs` bursts: the operating point of the lag and CPU rows is half of
        # it, and single 10 s bursts measured 830 to 1,368/s in three runs of one commit
        log(f"end to end: saturation, {s.pairs} closed loops of {s.http_s} s, 2 workers")
        bursts = [await saturate(db, url, s, "end-to-end applied") for _ in range(s.pairs)]
        burst, saturation = sorted(bursts, key=lambda b: b[1]["per_s"])[len(bursts) // 2]
        pids = {"gateway": [gw.pid], "workers": [w.pid for w in workers]}

        async def at(rate: float, cpu: bool = False) -> dict[str, Any]:
            log(f"end to end: {rate:.0f} req/s for {s.e2e_s} s, 2 workers")
            run, load, used, disk = await sampled_load(
                db, url, rate, s.e2e_s, pids, "end-to-end applied"
            )
            result = {
                "offered_rps": round(rate),
                "accepted_rps": load["rps"],
                "http_p99_ms": load["p99_ms"],
                **await lag_stats(db, run),
                "sustained_per_s": (await span_stats(db, run))["per_s"],
                "disk": disk,
            }
            if cpu:
                result["cpu"] = used
            return result

        out["end_to_end"] = {
            "saturation_per_s": saturation["per_s"],
            "saturation_runs_per_s": [b[1]["per_s"] for b in bursts],
            "saturation_accepted_rps": burst["rps"],
            "ratio_to_gateway_saturation": round(saturation["per_s"] / gateway_sat, 3),
            "half": await at(saturation["per_s"] * 0.5, cpu=True),
            "half_of_gateway": await at(gateway_sat * 0.5),
        }
        log(f"soak: {s.soak_s} s at 25 % of gateway saturation, RSS sampled")
        soak_run = new_run()
        soak_rate = gateway_sat * 0.25
        soak = asyncio.ensure_future(open_loop(url, soak_rate, s.soak_s, soak_run))
        await asyncio.sleep(min(10.0, s.soak_s / 10))  # warm-up before the first sample
        start_rss = {"gateway": rss_mb(gw.pid), "worker": max(rss_mb(w.pid) for w in workers)}
        soak_result = await soak
        end_rss = {"gateway": rss_mb(gw.pid), "worker": max(rss_mb(w.pid) for w in workers)}
        out["soak"] = {
            "seconds": s.soak_s,
            "offered_rps": round(soak_rate),
            "accepted": soak_result["ok"],
            "rss_start_mb": {k: round(v, 1) for k, v in start_rss.items()},
            "rss_end_mb": {k: round(v, 1) for k, v in end_rss.items()},
            "peak_rss_mb": {
                "gateway": round(rss_mb(gw.pid, "VmHWM"), 1),
                "worker": round(max(rss_mb(w.pid, "VmHWM") for w in workers), 1),
            },
        }
    finally:
        await db.close()
        for proc in (gw, *workers):
            proc.terminate()
            proc.close()


def cpu_per_message(used: dict[str, float], messages: int) -> dict[str, Any]:
    """CPU seconds per process group over a run, and µs of CPU per message applied."""
    total = sum(used.values())
    return {
        "messages": messages,
        "cpu_s": {**used, "total": round(total, 3)},
        "us_per_message": {
            k: round(v / messages * 1e6, 1) if messages else float("nan")
            for k, v in {**used, "total": total}.items()
        },
    }


async def phase_bare_pipeline(iso: isolation.Isolated, s: Sizes, out: dict[str, Any]) -> None:
    """The end-to-end ceiling: the bare handler publishing confirmed, one bare consumer
    writing each batch of 64 with one statement and acking with `multiple`. Saturation
    (closed-loop burst), then CPU per message at the offered load of the project's
    50 %-of-end-to-end-saturation run, so the two are compared at the same load."""
    await purge(iso.amqp_url)  # what the soak left queued
    port = free_port()
    bare = Proc("bench.bare_gateway", iso.env(), ["--port", str(port), "--amqp", iso.amqp_url])
    consumer = Proc(
        "bench.bare_consumer", iso.env(), ["--amqp", iso.amqp_url, "--database", iso.database_url]
    )
    db = await asyncpg.connect(iso.database_url)
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_http(base)

        async def consuming() -> bool:
            if consumer.popen.poll() is not None:
                raise AssertionError(f"bare consumer exited: {consumer.text()[-2000:]}")
            return "consuming" in consumer.text()

        await wait_for(consuming, 20, what="bare consumer")
        url = base + "/api/v1/qcare/updateXRayOrder"
        log(f"bare pipeline: saturation, closed loop for {s.http_s} s, 1 bare consumer")
        burst, saturation = await saturate(db, url, s, "bare pipeline applied")
        rate = out["end_to_end"]["half"]["offered_rps"]
        log(f"bare pipeline: {rate} req/s for {s.e2e_s} s, CPU sampled")
        run, load, cpu, disk = await sampled_load(
            db,
            url,
            rate,
            s.e2e_s,
            {"gateway": [bare.pid], "workers": [consumer.pid]},
            "bare pipeline applied",
        )
        ours = out["end_to_end"]["half"]["cpu"]["us_per_message"]
        out["bare_pipeline"] = {
            "saturation_per_s": saturation["per_s"],
            "saturation_accepted_rps": burst["rps"],
            "project_ratio_to_bare": round(
                out["end_to_end"]["saturation_per_s"] / saturation["per_s"], 3
            ),
            "offered_rps": rate,
            "accepted_rps": load["rps"],
            "http_p99_ms": load["p99_ms"],
            # the lag from the bare gateway's receipt (a header) to the bare consumer's write
            **await lag_stats(db, run),
            "disk": disk,
            "cpu": cpu,
            "cpu_ratio_project_to_bare": {
                k: round(ours[k] / v, 2) if v else None for k, v in cpu["us_per_message"].items()
            },
        }
    finally:
        await db.close()
        for proc in (bare, consumer):
            proc.terminate()
            proc.close()
    await purge(iso.amqp_url)


def verdicts(out: dict[str, Any]) -> list[tuple[str, str, bool]]:
    g, e, soak = out["gateway"], out["end_to_end"], out["soak"]
    half = next(p for p in g["open_loop"] if p["share"] == 0.5)
    one = next(d for d in out["drain"] if d["workers"] == 1)
    peak = soak["peak_rss_mb"]
    growth = {k: soak["rss_end_mb"][k] - soak["rss_start_mb"][k] for k in ("gateway", "worker")}
    cpu = out["bare_pipeline"]["cpu_ratio_project_to_bare"]["total"]
    return [
        (
            "gateway saturation >= 0.85 x bare handler (same event loop)",
            f"{g['ratio_to_bare']:.2f} x"
            + (
                f" (against a bare handler on our frame writer: {g['ratio_to_bare_frames']:.2f} x)"
                if "ratio_to_bare_frames" in g
                else ""
            ),
            g["ratio_to_bare"] >= 0.85,
        ),
        (
            "1 worker >= 3 x naive worker (aio-pika callback, 4 connections)",
            f"{one['ratio_to_naive_worker']:.2f} x",
            one["ratio_to_naive_worker"] >= 3,
        ),
        (
            "end-to-end CPU per message <= 1.5 x bare pipeline",
            f"{cpu:.2f} x",
            cpu <= 1.5,
        ),
        (
            "end-to-end lag p99 <= 100 ms at 50 % of end-to-end saturation",
            f"{e['half']['lag_p99_ms']} ms"
            + (
                f"; slowest disk flush meanwhile {describe_disk(e['half']['disk'])}"
                if "disk" in e["half"]
                else ""
            ),
            e["half"]["lag_p99_ms"] <= 100,
        ),
        ("gateway p99 <= 50 ms at 50 %", f"{half['p99_ms']} ms", half["p99_ms"] <= 50),
        (
            "RSS < 150 MB each",
            f"gateway {peak['gateway']} MB, worker {peak['worker']} MB",
            max(peak.values()) < 150,
        ),
        (
            "RSS flat over the soak (< 10 MB growth)",
            f"gateway {growth['gateway']:+.1f} MB, worker {growth['worker']:+.1f} MB",
            max(growth.values()) < 10,
        ),
    ]


def table(out: dict[str, Any]) -> str:
    c, g, e = out["ceilings"], out["gateway"], out["end_to_end"]
    lines = ["| measure | value | ceiling | ratio |", "|---|---|---|---|"]
    lines.append(
        f"| confirmed publish, 1 in flight | {c['publish_awaited_one_at_a_time_per_s']}/s | | |"
    )
    lines.append(f"| confirmed publish, 64 in flight | {c['publish_pipelined_64_per_s']}/s | | |")
    lines.append(f"| consume + ack, prefetch 256 | {c['consume_ack_prefetch_256_per_s']}/s | | |")
    lines.append(
        f"| naive DB loop, 1 / 4 connections | {c['naive_db_1_connection_per_s']}/s / "
        f"{c['naive_db_4_connections_per_s']}/s | | |"
    )
    lines.append(
        f"| naive worker (aio-pika callback, prefetch 32, 4 connections), mean of 2 | "
        f"{c['naive_worker_per_s']}/s ({', '.join(map(str, c['naive_worker_runs_per_s']))}) | | |"
    )
    lines.append(
        f"| gateway saturation (help-page body), median of {len(g['runs_rps'])} | "
        f"{g['saturation_rps']} req/s | {g['bare_saturation_rps']} req/s bare | "
        f"{g['ratio_to_bare']} |"
    )
    if "bare_frames_saturation_rps" in g:
        lines.append(
            f"| gateway saturation against a bare handler on our frame writer | "
            f"{g['saturation_rps']} req/s | {g['bare_frames_saturation_rps']} req/s bare, "
            f"frames | {g['ratio_to_bare_frames']} |"
        )
    for p in g["open_loop"]:
        lines.append(
            f"| gateway at {int(p['share'] * 100)} % ({p['offered_rps']:.0f} req/s) | "
            f"p50 {p['p50_ms']} ms, p99 {p['p99_ms']} ms | | |"
        )
    for d in out["drain"]:
        lines.append(
            f"| drain {d['messages']} queued, {d['workers']} worker(s) | {d['per_s']}/s | "
            f"{c['naive_worker_per_s']}/s naive worker | {d['ratio_to_naive_worker']} |"
        )
    for d in out["drain"]:
        lines.append(
            f"| drain, {d['workers']} worker(s), against the naive DB loop | {d['per_s']}/s | "
            f"{c['naive_db_1_connection_per_s']}/s naive loop, 1 connection | "
            f"{d['ratio_to_naive_1_connection']} |"
        )
    lines.append(
        f"| end-to-end saturation, gateway + 2 workers, median of "
        f"{len(e.get('saturation_runs_per_s', [0]))} | {e['saturation_per_s']}/s | "
        f"{g['saturation_rps']} req/s gateway alone | {e['ratio_to_gateway_saturation']} |"
    )
    b = out["bare_pipeline"]
    for key, what in (("half", "end-to-end"), ("half_of_gateway", "gateway-alone")):
        h = e[key]
        bare_lag = (
            f"bare pipeline p50 {b['lag_p50_ms']} ms, p99 {b['lag_p99_ms']} ms"
            if key == "half" and "lag_p99_ms" in b
            else ""
        )
        lines.append(
            f"| end to end at 50 % of {what} saturation ({h['offered_rps']} req/s) | "
            f"{h['sustained_per_s']}/s, lag p50 {h['lag_p50_ms']} ms, p99 {h['lag_p99_ms']} ms "
            f"| {bare_lag} | |"
        )
    if "disk" in e["half"]:  # runs since the disk probe
        lines.append(
            f"| slowest disk flush during the 50 % run | {describe_disk(e['half']['disk'])} "
            f"| bare: {describe_disk(b['disk'])} | |"
        )
    lines.append(
        f"| end-to-end saturation, gateway + 2 workers, against the bare pipeline | "
        f"{e['saturation_per_s']}/s | {b['saturation_per_s']}/s bare | "
        f"{b['project_ratio_to_bare']} |"
    )
    ours, bare = e["half"]["cpu"]["us_per_message"], b["cpu"]["us_per_message"]
    ratio = b["cpu_ratio_project_to_bare"]
    for k in ("gateway", "workers", "rabbitmq", "postgresql", "load", "total"):
        lines.append(
            f"| CPU µs per message at {b['offered_rps']} req/s, {k} | {ours[k]} | "
            f"{bare[k]} bare | {ratio[k]} |"
        )
    soak = out["soak"]
    lines.append(
        f"| peak RSS gateway / worker | {soak['peak_rss_mb']['gateway']} / "
        f"{soak['peak_rss_mb']['worker']} MB | 150 MB | |"
    )
    lines.append(
        f"| RSS over {soak['seconds']:.0f} s soak, gateway | "
        f"{soak['rss_start_mb']['gateway']} -> {soak['rss_end_mb']['gateway']} MB | | |"
    )
    lines.append(
        f"| RSS over {soak['seconds']:.0f} s soak, worker | "
        f"{soak['rss_start_mb']['worker']} -> {soak['rss_end_mb']['worker']} MB | | |"
    )
    lines.append("")
    lines += [f"- {'PASS' if ok else 'FAIL'} {name}: {value}" for name, value, ok in verdicts(out)]
    return "\n".join(lines)


def chart(out: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = out["gateway"]
    fig, (left, right, cpu) = plt.subplots(1, 3, figsize=(16, 4.2))
    offered = [p["offered_rps"] for p in g["open_loop"]]
    left.plot(offered, [p["p50_ms"] for p in g["open_loop"]], "o-", label="p50")
    left.plot(offered, [p["p99_ms"] for p in g["open_loop"]], "o-", label="p99")
    left.axhline(50, color="grey", ls="--", lw=0.8, label="gateway p99 target")
    e = out["end_to_end"]
    halves = [e["half"], e["half_of_gateway"]]
    left.plot(
        [h["offered_rps"] for h in halves], [h["lag_p99_ms"] for h in halves],
        "s", color="C3", label="end-to-end lag p99",
    )  # fmt: skip
    b = out["bare_pipeline"]
    if "lag_p99_ms" in b:  # runs since the bare pipeline's lag
        left.plot(
            b["offered_rps"], b["lag_p99_ms"], "^", color="#999", label="bare pipeline lag p99"
        )
    left.axhline(100, color="C3", ls=":", lw=0.8, label="lag p99 target")
    left.set_yscale("log")
    left.set(
        xlabel="offered load (req/s)",
        ylabel="latency (ms, log scale)",
        title=f"Gateway latency and end-to-end lag (gateway saturation "
        f"{g['saturation_rps']:.0f} req/s)",
    )
    left.legend(loc="best", fontsize=7)  # "best" keeps clear of every point
    c = out["ceilings"]
    ceilings = [
        ("publish\n64 in flight", c["publish_pipelined_64_per_s"]),
        ("consume\n+ ack", c["consume_ack_prefetch_256_per_s"]),
        ("naive DB\n1 conn", c["naive_db_1_connection_per_s"]),
        ("naive\nworker", c["naive_worker_per_s"]),
        ("gateway\nbare", g["bare_saturation_rps"]),
        ("bare\npipeline", out["bare_pipeline"]["saturation_per_s"]),
    ]
    if "bare_frames_saturation_rps" in g:  # runs since the frame writer
        ceilings.insert(5, ("gateway bare\nour frames", g["bare_frames_saturation_rps"]))
    ours = [
        ("gateway", g["saturation_rps"]),
        *[(f"drain\n{d['workers']} proc.", d["per_s"]) for d in out["drain"]],
        ("end to end\nsat.", out["end_to_end"]["saturation_per_s"]),
    ]
    names = [name for name, _ in ceilings + ours]
    values = [value for _, value in ceilings + ours]
    colors = ["#999"] * len(ceilings) + ["#1f77b4"] * len(ours)
    right.bar(range(len(values)), values, color=colors)
    right.set_xticks(range(len(values)), names, fontsize=6, rotation=45)
    right.set(ylabel="messages or requests per second", title="Throughput (grey: ceilings)")
    groups = ["gateway", "workers", "rabbitmq", "postgresql", "load", "total"]
    ours, bare = out["end_to_end"]["half"]["cpu"]["us_per_message"], b["cpu"]["us_per_message"]
    xs = range(len(groups))
    cpu.bar([x - 0.2 for x in xs], [ours[k] for k in groups], 0.4, label="project")
    cpu.bar([x + 0.2 for x in xs], [bare[k] for k in groups], 0.4, color="#999", label="bare")
    cpu.set_xticks(list(xs), groups, fontsize=7)
    cpu.set(ylabel="CPU µs per message", title=f"CPU per message at {b['offered_rps']} req/s")
    cpu.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def commit() -> str | None:
    """The commit measured, with "+changes" when the tree differs from it (None outside git)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, cwd=ROOT,
        )  # fmt: skip
    except OSError:
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    sizes = SMOKE if args.smoke else Sizes(soak_s=args.soak)
    out: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "commit": commit(),
        "smoke": args.smoke,
    }
    iso = await isolation.create("qcare_bench")
    try:
        await phase_ceilings(iso, sizes, out)
        await phase_gateway(iso, sizes, out)
        await phase_drain(iso, sizes, out)
        await phase_end_to_end(iso, sizes, out)
        await phase_bare_pipeline(iso, sizes, out)
    finally:
        await isolation.destroy(iso)
    out["verdicts"] = [{"target": n, "value": v, "pass": ok} for n, v, ok in verdicts(out)]
    return out


def cli() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="every phase, tiny (seconds)")
    parser.add_argument("--soak", type=float, default=300.0, help="soak seconds (default 300)")
    parser.add_argument("--results", default=str(RESULTS), help="where to write results")
    parser.add_argument(
        "--render", metavar="FILE.json", help="no run: print a run's table, write its .md, .png"
    )
    args = parser.parse_args()
    if args.render:
        source = Path(args.render)
        out = json.loads(source.read_text())
        text = table(out)
        print(text)
        source.with_suffix(".md").write_text(text + "\n")
        chart(out, source.with_suffix(".png"))
        return 0
    out = asyncio.run(measure(args))
    text = table(out)
    print(text)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    name = "smoke" if args.smoke else "latest"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (results / f"{name}.json").write_text(json.dumps(out, indent=2, default=str))
    if not args.smoke:
        (results / f"{stamp}.json").write_text(json.dumps(out, indent=2, default=str))
    (results / f"{name}.md").write_text(text + "\n")
    chart(out, results / f"{name}.png")
    log(f"wrote {results / name}.json, .md and .png")
    return 0


if __name__ == "__main__":
    sys.exit(cli())
