"""`python -m bench.worklist`: the DICOM worklist under a full day (issue 16).

A scratch database built with the migrations gets `--orders` orders (10,000) scheduled on
one day for one modality, plus as many again on other days and modalities (so the index,
not luck, finds the day), inserted directly. A `qcare-ingest worklist` process serves
them; a pynetdicom SCU (in this process, as a modality would be) times C-FINDs:

* day + modality: every one of the 10,000 items comes back (the 200 ms target's query);
* day + modality + a patient name wildcard, and day + modality + accession: the selective
  queries a modality sends when the operator types a name or scans a slip;
* the read alone (SQL, items, matching) in-process, without DICOM encoding or network.

Prints p50/p99 over `--repeats` and JSON with `--json`. `--smoke` is tiny (seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from pydicom.dataset import Dataset
from pynetdicom import AE, evt

from qcare_ingest.db import migrate
from qcare_ingest.worklist import items, query, reads, scp
from tests.support.isolation import drop_database
from tests.support.procs import Proc, free_port, wait_for

PG_BASE = "postgresql://postgres@127.0.0.1:5432/"
MWL_FIND = "1.2.840.10008.5.1.4.31"
DAY = datetime(2030, 6, 3, tzinfo=UTC)  # 08:00 Hong Kong onwards
TARGET_MS = 200.0


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def fill(url: str, orders: int) -> None:
    """`orders` CR orders on DAY, and `orders` others (DX, or CR on other days)."""
    conn = await asyncpg.connect(url)
    try:
        patients, order_rows, services = [], [], []
        for i in range(2 * orders):
            on_day = i < orders
            key = f"PASSNO:B{i:07d}"
            patients.append((key, f"B{i:07d}", f"CHAN{i:05d} TAI MAN", "M"))
            at = DAY + timedelta(seconds=i % 36000) if on_day else DAY + timedelta(days=1 + i % 30)
            modality = "CR" if on_day or i % 2 else "DX"
            accession = f"B{i:09d}"
            order_rows.append((accession, key, at, modality, "XR ROOM 1", "WONG SIU MING", "XR1"))
            services.append((accession, 0, "CHEST PA"))
            services.append((accession, 1, "ABDOMEN"))
        await conn.copy_records_to_table(
            "patients", records=patients, columns=["patient_key", "passno", "name", "gender"]
        )
        await conn.copy_records_to_table(
            "orders",
            records=order_rows,
            columns=["accession_no", "patient_key", "study_at", "modality", "location",
                     "ref_doctor", "cs_code"],
        )  # fmt: skip
        await conn.copy_records_to_table(
            "order_services", records=services, columns=["accession_no", "line_no", "study_desc"]
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


def identifier(name: str = "", accession: str = "") -> Dataset:
    ds = Dataset()
    ds.PatientName = name
    ds.PatientID = ""
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.AccessionNumber = accession
    ds.StudyInstanceUID = ""
    ds.RequestedProcedureDescription = ""
    sps = Dataset()
    sps.Modality = "CR"
    sps.ScheduledProcedureStepStartDate = "20300603"
    sps.ScheduledProcedureStepStartTime = ""
    sps.ScheduledProcedureStepDescription = ""
    sps.ScheduledStationAETitle = ""
    ds.ScheduledProcedureStepSequence = [sps]
    return ds


def c_find(port: int, ds: Dataset, no_delay: bool = True) -> tuple[float, float, int]:
    """(ms to the first item, ms to the final status, items), one association. The SCU
    sets TCP_NODELAY like the SCP does (else its request's identifier waits for the SCP's
    delayed ACK, ~40 ms that are the client's), unless `no_delay` is False."""
    ae = AE(ae_title="BENCH")
    ae.add_requested_context(MWL_FIND)
    ae.dimse_timeout = ae.network_timeout = 120
    handlers = [(evt.EVT_CONN_OPEN, scp.no_delay)] if no_delay else []
    assoc = ae.associate("127.0.0.1", port, ae_title="QCARE", evt_handlers=handlers)
    assert assoc.is_established
    try:
        started = time.perf_counter()
        first = 0.0
        count = 0
        for status, found in assoc.send_c_find(ds, MWL_FIND):
            if found is not None and status.Status == 0xFF00:
                count += 1
                if count == 1:
                    first = time.perf_counter() - started
            elif status.Status != 0xFF00:
                assert status.Status == 0x0000, hex(status.Status)
        return first * 1000, (time.perf_counter() - started) * 1000, count
    finally:
        assoc.release()


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary(name: str, samples: list[float], count: int) -> dict[str, Any]:
    return {
        "query": name,
        "items": count,
        "repeats": len(samples),
        "p50_ms": round(statistics.median(samples), 1),
        "p99_ms": round(pct(samples, 99), 1),
    }


def timed(repeats: int, run: Callable[[], tuple[float, int]]) -> tuple[list[float], int]:
    samples, count = [], 0
    for _ in range(repeats):
        ms, count = run()
        samples.append(ms)
    return samples, count


async def read_only(url: str, repeats: int) -> tuple[list[float], int]:
    """The SQL (all rows at once), the items and the matching for the day + modality
    query, in-process: what the SCP does before DICOM encoding and the network."""
    pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
    assert pool is not None
    q = query.parse(identifier())
    samples, count = [], 0
    try:
        for _ in range(repeats):
            started = time.perf_counter()
            rows = await reads.fetch(pool, q, 30)
            count = sum(
                1
                for r in rows
                if items.servable(r["accession_no"])
                and query.matches(q, items.item(r, {}, q.wanted))
            )
            samples.append((time.perf_counter() - started) * 1000)
    finally:
        await pool.close()
    return samples, count


async def main_async(orders: int, repeats: int, full_repeats: int) -> dict[str, Any]:
    name = f"qcare_bench_wl_{uuid.uuid4().hex[:8]}"
    url = PG_BASE + name
    await migrate(url)
    worklist: Proc | None = None
    try:
        log(f"filling: {orders} CR orders on one day, {orders} others")
        await fill(url, orders)
        port = free_port()
        env = {"QCARE_DATABASE_URL": url, "QCARE_WORKLIST_PORT": str(port)}
        worklist = Proc("qcare_ingest.cli", {**env, "QCARE_LOG_LEVEL": "WARNING"}, ["worklist"])

        async def up() -> bool:
            return await asyncio.to_thread(_answers, port)

        await wait_for(up, 30, what="worklist")
        results = []
        log("read alone (SQL + items + matching), in-process")
        samples, count = await read_only(url, max(full_repeats, 10))
        results.append(summary("day+modality, read only (no DICOM)", samples, count))
        log("C-FIND day+modality: every item")
        firsts: list[float] = []

        def whole() -> tuple[float, int]:
            first, total, n = c_find(port, identifier())
            firsts.append(first)
            return total, n

        c_find(port, identifier())  # warm-up: imports, plans, the pool's connection
        samples, count = await asyncio.to_thread(timed, full_repeats, whole)
        results.append(summary("day+modality, all items (C-FIND)", samples, count))
        results.append(summary("day+modality, first item (C-FIND)", firsts, count))
        some = max(1, orders // 3)
        for label, ds in (
            (f"day+modality+name CHAN{some:05d}* (C-FIND)", identifier(name=f"CHAN{some:05d}*")),
            ("day+modality+accession (C-FIND)", identifier(accession=f"B{some:09d}")),
        ):
            log(f"C-FIND {label}")

            def one(ds: Dataset = ds) -> tuple[float, int]:
                _, total, n = c_find(port, ds)
                return total, n

            samples, count = await asyncio.to_thread(timed, repeats, one)
            results.append(summary(label, samples, count))
        label = "day+modality+accession, SCU without TCP_NODELAY (C-FIND)"
        log(f"C-FIND {label}")

        def plain() -> tuple[float, int]:
            _, total, n = c_find(port, identifier(accession=f"B{some:09d}"), no_delay=False)
            return total, n

        samples, count = await asyncio.to_thread(timed, repeats, plain)
        results.append(summary(label, samples, count))
        return {"orders_on_the_day": orders, "target_ms": TARGET_MS, "results": results}
    finally:
        if worklist is not None:
            worklist.terminate(20)
            worklist.close()
        await drop_database(PG_BASE, name)


def _answers(port: int) -> bool:
    ae = AE(ae_title="BENCH")
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", port, ae_title="QCARE")
    if not assoc.is_established:
        return False
    assoc.release()
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.worklist", description=__doc__)
    parser.add_argument("--orders", type=int, default=10000, help="orders on the day (10000)")
    parser.add_argument("--repeats", type=int, default=100, help="timed C-FINDs per query")
    parser.add_argument(
        "--full-repeats", type=int, default=5, help="timed C-FINDs returning the whole day"
    )
    parser.add_argument("--smoke", action="store_true", help="tiny: 200 orders, 3 repeats")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    orders, repeats, full = (
        (200, 3, 2) if args.smoke else (args.orders, args.repeats, args.full_repeats)
    )
    out = asyncio.run(main_async(orders, repeats, full))
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"| worklist query ({orders} orders on the day) | items | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|")
    for r in out["results"]:
        print(f"| {r['query']} | {r['items']} | {r['p50_ms']} | {r['p99_ms']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
