"""Issue 14, retention: `qcare-ingest prune --older-than DAYS [--dry-run]`."""

from __future__ import annotations

import uuid

import asyncpg

from tests.conftest import RunEnv
from tests.support.queues import cli


async def test_prune_deletes_what_is_past_its_age_and_no_more(
    test_env: RunEnv, db: asyncpg.Pool
) -> None:
    """Rows 10 days, 45 days and 200 days old; prune at 30 days with audit rows kept 100:
    the inbox and conflicts lose the 45- and 200-day-old rows, the audit trail only the
    200-day-old one. The dry run counts the same and deletes nothing."""
    tag = uuid.uuid4().hex[:8]
    ages = (10, 45, 200)
    for days in ages:
        ago = f"now() - interval '{days} days'"
        await db.execute(
            f"""INSERT INTO inbox (msg_id, body_sha256, received_at, processed_at, status)
                VALUES ($1, '\\x00', {ago}, {ago}, 'applied')""",
            f"prune-{tag}-{days}",
        )
        await db.execute(
            f"""INSERT INTO inbox_conflicts (msg_id, body_sha256, received_at, detected_at)
                VALUES ($1, '\\x00', {ago}, {ago})""",
            f"prune-{tag}-{days}",
        )
        await db.execute(
            f"""INSERT INTO audit_log (at, who, action, subject, outcome)
                VALUES ({ago}, 'pruner', 'order_read', $1, 'shown')""",
            f"prune-{tag}-{days}",
        )

    async def left() -> dict[str, list[str]]:
        found = {}
        for table in ("inbox", "inbox_conflicts", "audit_log"):
            column = "subject" if table == "audit_log" else "msg_id"
            rows = await db.fetch(
                f"SELECT {column} FROM {table} WHERE {column} LIKE $1 ORDER BY 1", f"prune-{tag}-%"
            )
            found[table] = [r[0].rsplit("-", 1)[1] for r in rows]
        return found

    env = test_env.env(QCARE_AUDIT_RETENTION_DAYS="100")
    dry = cli(env, "prune", "--older-than", "30", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        "inbox: would delete 2 row(s) older than 30 days",
        "inbox_conflicts: would delete 2 row(s) older than 30 days",
        "audit_log: would delete 1 row(s) older than 100 days",
    ]
    assert await left() == {
        t: ["10", "200", "45"] for t in ("inbox", "inbox_conflicts", "audit_log")
    }
    done = cli(env, "prune", "--older-than", "30")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "inbox: deleted 2 row(s) older than 30 days",
        "inbox_conflicts: deleted 2 row(s) older than 30 days",
        "audit_log: deleted 1 row(s) older than 100 days",
    ]
    assert await left() == {"inbox": ["10"], "inbox_conflicts": ["10"], "audit_log": ["10", "45"]}
    # a longer --older-than protects audit rows too: the greater of the two ages applies
    longer = cli(env, "prune", "--older-than", "400", "--dry-run")
    assert "audit_log: would delete 0 row(s) older than 400 days" in longer.stdout
    assert cli(env, "prune", "--older-than", "0").returncode == 2
