"""`qcare-ingest prune --older-than DAYS [--dry-run]`: retention (issue 14).

Deletes inbox rows processed, conflicts detected and audit rows written before a cut-off.
Audit rows have their own, usually longer, retention: they go only once older than both
DAYS and QCARE_AUDIT_RETENTION_DAYS. A message's journal row (the bytes it arrived as,
issue 15) goes with its inbox row (ON DELETE CASCADE). Patients, orders and their service
lines are the live data and are never pruned. Rows go in batches, each its own
transaction, so a large prune holds no long lock and can be interrupted and run again.

An inbox row is what makes a redelivered msg_id a no-op: once pruned, the same message
sent again is applied again, which the per-field versions make harmless for anything
older than what the entities hold (it is recorded as stale). Keep DAYS well above the
longest time a message can spend queued or dead-lettered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TextIO

import asyncpg

BATCH = 10_000


@dataclass(frozen=True)
class Target:
    table: str
    column: str  # the row's age is now() minus this


TARGETS = (
    Target("inbox", "processed_at"),
    Target("inbox_conflicts", "detected_at"),
    Target("audit_log", "at"),
)


def cutoff_days(target: Target, older_than: int, audit_days: int) -> int:
    return max(older_than, audit_days) if target.table == "audit_log" else older_than


async def prune(
    conn: asyncpg.Connection, older_than: int, audit_days: int, dry_run: bool
) -> dict[str, int]:
    """{table: rows deleted (or that would be)}."""
    counts: dict[str, int] = {}
    for target in TARGETS:
        days = cutoff_days(target, older_than, audit_days)
        where = f"{target.column} < now() - make_interval(days => $1)"
        if dry_run:
            counts[target.table] = await conn.fetchval(
                f"SELECT count(*) FROM {target.table} WHERE {where}", days
            )
            continue
        total = 0
        while True:
            deleted = await conn.fetchval(
                f"""WITH gone AS (
                        DELETE FROM {target.table} WHERE ctid = ANY(ARRAY(
                            SELECT ctid FROM {target.table} WHERE {where} LIMIT $2))
                        RETURNING 1)
                    SELECT count(*) FROM gone""",
                days,
                BATCH,
            )
            total += deleted
            if deleted < BATCH:
                break
        counts[target.table] = total
    return counts


async def run(
    database_url: str, older_than: int, audit_days: int, dry_run: bool, out: TextIO
) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        counts = await prune(conn, older_than, audit_days, dry_run)
    finally:
        await conn.close()
    verb = "would delete" if dry_run else "deleted"
    for target in TARGETS:
        days = cutoff_days(target, older_than, audit_days)
        out.write(f"{target.table}: {verb} {counts[target.table]} row(s) older than {days} days\n")
    return 0
