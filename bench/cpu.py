"""CPU seconds per process over a run, from /proc/<pid>/stat (utime + stime).

RabbitMQ is the oldest beam.smp process (the server: rabbitmqctl runs on beam.smp too, and
another CI run may be calling it); PostgreSQL is the bench database's backends plus the
server's own background processes (WAL writer, checkpointer, ...), found through
pg_stat_activity so that other databases' backends (another CI run) are not counted.
A process that exits during the run is lost; one that starts during it counts in full.
"""

from __future__ import annotations

import os
from pathlib import Path

import asyncpg

TICK = os.sysconf("SC_CLK_TCK")


def stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from field 3 (state) on; None if the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def cpu_s(pid: int) -> float | None:
    """utime + stime of one process, in seconds (None if it is gone)."""
    fields = stat_fields(pid)
    return None if fields is None else (int(fields[11]) + int(fields[12])) / TICK


def oldest(pids: list[int]) -> list[int]:
    started = {pid: int(f[19]) for pid in pids if (f := stat_fields(pid)) is not None}
    return [min(started, key=started.__getitem__)] if started else []


def pids_named(comm: str) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == comm:
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


async def postgres_pids(db: asyncpg.Connection) -> list[int]:
    rows = await db.fetch(
        """SELECT pid FROM pg_stat_activity
            WHERE datname = current_database() OR backend_type <> 'client backend'"""
    )
    return [r["pid"] for r in rows]


class Sampler:
    """`start()` before the run, `stop()` after: CPU seconds per group of processes."""

    def __init__(self, db: asyncpg.Connection, groups: dict[str, list[int]]) -> None:
        self.db = db
        self.groups = {**groups, "rabbitmq": oldest(pids_named("beam.smp"))}
        self.before: dict[str, dict[int, float]] = {}

    async def snapshot(self) -> dict[str, dict[int, float]]:
        groups = {**self.groups, "postgresql": await postgres_pids(self.db)}
        return {
            name: {pid: t for pid in pids if (t := cpu_s(pid)) is not None}
            for name, pids in groups.items()
        }

    async def start(self) -> None:
        self.before = await self.snapshot()

    async def stop(self) -> dict[str, float]:
        after = await self.snapshot()
        return {
            name: round(
                sum(t - self.before.get(name, {}).get(pid, 0.0) for pid, t in now.items()), 3
            )
            for name, now in after.items()
        }
