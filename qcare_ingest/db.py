"""PostgreSQL: pool, database creation and versioned migrations."""

from __future__ import annotations

import logging
from importlib import resources
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

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


# What each service's role may do (issue 14: least privilege). The gateway reads what it
# serves and appends audit rows; the workers write the inbox and the entities. Nobody but
# the owner (migrate, prune, the CLI) may update or delete audit rows, or read them.
GRANTS: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    "gateway": [
        ("SELECT", ("inbox", "inbox_conflicts", "patients", "orders", "order_services", "journal")),
        ("INSERT", ("audit_log",)),
    ],
    "worker": [
        ("SELECT, INSERT, UPDATE", ("inbox", "patients", "orders")),
        ("SELECT, INSERT, UPDATE, DELETE", ("order_services",)),
        ("SELECT, INSERT", ("inbox_conflicts", "journal")),
    ],
    # the DICOM worklist (issue 16) reads orders and their patients and audits its reads
    "worklist": [
        ("SELECT", ("patients", "orders", "order_services")),
        ("INSERT", ("audit_log",)),
    ],
}
SEQUENCES: dict[str, tuple[str, ...]] = {
    "gateway": ("audit_log_id_seq",),
    "worker": ("inbox_conflicts_id_seq",),
    "worklist": ("audit_log_id_seq",),
}


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def role_of(url: str) -> tuple[str | None, str | None]:
    """(user, password) of a PostgreSQL URL's user-info."""
    parts = urlsplit(url)
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    return user, password


async def _create_role(conn: asyncpg.Connection, role: str, password: str | None) -> None:
    """CREATE or ALTER the login role; safe when another migrate (of another database of
    the same cluster: roles are cluster-wide) does the same at the same moment. The
    password goes in as a quoted literal built by the server (format %L), never by us."""
    login = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT"
    for attempt in range(5):
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
            verb = "ALTER" if exists else "CREATE"
            if password is None:
                await conn.execute(f"{verb} ROLE {_ident(role)} {login}")
            else:
                sql = await conn.fetchval(
                    f"SELECT format('{verb} ROLE %I {login} PASSWORD %L', $1::text, $2::text)",
                    role,
                    password,
                )
                await conn.execute(sql)
            return
        except (asyncpg.DuplicateObjectError, asyncpg.UniqueViolationError):
            continue  # created by someone else since we looked: alter it
        except asyncpg.InternalServerError as exc:  # "tuple concurrently updated"
            if "concurrently" not in str(exc) or attempt == 4:
                raise
    raise RuntimeError(f"role {role}: could not create or alter it")


async def ensure_roles(conn: asyncpg.Connection, owner_url: str, services: dict[str, str]) -> None:
    """The login role each service's URL names, with exactly the grants that service needs.
    A URL naming the owner itself (the single-URL set-up) is left alone."""
    owner = await conn.fetchval("SELECT current_user")
    database = database_name(owner_url)
    for service, url in services.items():
        role, password = role_of(url)
        if role is None or role == owner:
            continue
        if database_name(url) != database:
            raise ValueError(
                f"the {service} URL names database {database_name(url)!r}, not {database!r}"
            )
        await _create_role(conn, role, password)
        ident = _ident(role)
        async with conn.transaction():
            await conn.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {ident}")
            await conn.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {ident}")
            await conn.execute(f"GRANT CONNECT ON DATABASE {_ident(database)} TO {ident}")
            await conn.execute(f"GRANT USAGE ON SCHEMA public TO {ident}")
            for privileges, tables in GRANTS[service]:
                await conn.execute(f"GRANT {privileges} ON {', '.join(tables)} TO {ident}")
            for sequence in SEQUENCES[service]:
                await conn.execute(f"GRANT USAGE ON SEQUENCE {sequence} TO {ident}")
        log.info("role granted", extra={"action": "grant", "service": service, "role": role})


async def migrate(url: str, services: dict[str, str] | None = None) -> list[str]:
    """Apply the migrations not yet applied, then create the services' roles (`services`:
    service name -> the URL it connects with) and grant them what they need; idempotent
    and safe to run concurrently."""
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
        # Nobody but the owner creates objects (PostgreSQL 15's default; older ones not).
        await conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        await ensure_roles(conn, url, services or {})
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
    # follow the statistics autovacuum keeps up to date. The searches (console, FHIR,
    # worklist) keep them; the worker's key lookups pass store.SESSION_SETTINGS instead.
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
