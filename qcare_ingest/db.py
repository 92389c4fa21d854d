"""PostgreSQL: pool, database creation and versioned migrations."""

from __future__ import annotations

import logging
from importlib import resources
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

log = logging.getLogger(__name__)

_MIGRATION_LOCK = 0x51CA7E  # advisory lock key: one migrator at a time


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/") or "postgres"


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every file in qcare_ingest/migrations, in order."""
    found = []
    for entry in resources.files("qcare_ingest.migrations").iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


async def ensure_database(url: str) -> bool:
    """Create the database named in the URL if it does not exist. True if created."""
    name = database_name(url)
    try:
        conn = await asyncpg.connect(url)
    except asyncpg.InvalidCatalogNameError:
        pass
    else:
        await conn.close()
        return False
    admin = await asyncpg.connect(_with_database(url, "postgres"))
    try:
        ident = '"' + name.replace('"', '""') + '"'
        await admin.execute(f"CREATE DATABASE {ident}")
    except asyncpg.DuplicateDatabaseError:
        return False
    finally:
        await admin.close()
    log.info("database created", extra={"action": "create_database", "database": name})
    return True


async def migrate(url: str) -> list[str]:
    """Apply the migrations not yet applied; idempotent and safe to run concurrently."""
    await ensure_database(url)
    conn = await asyncpg.connect(url)
    applied: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS qcare_schema_version (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM qcare_schema_version")}
        for version, name, sql in migrations():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO qcare_schema_version (version, name) VALUES ($1, $2)",
                    version,
                    name,
                )
            applied.append(name)
            log.info("migration applied", extra={"action": "migrate", "migration": name})
        # Fresh tables get sequential-scan plans (FK checks included) until analysed.
        await conn.execute("ANALYZE")
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
        await conn.close()
    return applied


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Release without the default reset query (RESET ALL, UNLISTEN, CLOSE ALL, unlock):
    pooled connections never change session state, and asyncpg still rolls back an open
    transaction first. The default costs a round trip on every release (every batch)."""


async def create_pool(url: str, size: int, **kwargs: Any) -> asyncpg.Pool:
    """A pool that connects lazily (min_size=0), so start-up does not need the database."""
    # Tables start empty and grow fast: a generic plan cached while they were empty
    # (sequential scans) would be kept for the life of the connection. Custom plans
    # follow the statistics autovacuum keeps up to date.
    settings = {"plan_cache_mode": "force_custom_plan", **kwargs.pop("server_settings", {})}
    pool = await asyncpg.create_pool(
        url,
        min_size=0,
        max_size=size,
        command_timeout=30,
        server_settings=settings,
        reset=_no_reset,
        **kwargs,
    )
    assert pool is not None
    return pool
