"""`qcare-ingest rebuild`: re-apply the journal into a fresh schema and compare (issue 15).

Every message the live pipeline applied (or found stale) is bound again from the bytes it
arrived as, with today's binder, and applied with today's worker code, in `received_at`
order, into a schema of its own made by the same migrations. Then the patients, orders and
service lines are compared with the live tables (all columns but created_at and updated_at,
field versions included). A message's own outcome (applied, or stale for an entity that
already held something newer) is not compared: it records the order the message arrived
in, which the rebuild replaces by received_at order on purpose. "identical" means
the live state is exactly what the journal says it should be; a difference names the row
and column. That is how a mapping fix is proven before and after it is rolled out, and a
check of the apply semantics (the ordering tests run it).

What is not re-applied: messages the live pipeline rejected or dead-lettered (the live
tables do not hold them either: `dlq replay` is their way back), and messages whose journal
rows were pruned (their entities then show up as differences). A journal row of a message
queued before the journal existed holds its canonical JSON, applied as it is.

Personal data never reaches the terminal whole: a difference in a patient shows masked
values (SPEC §5).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

import asyncpg

from .answers import problems
from .binding import UnsupportedMediaTypeError, bind, select_format
from .db import migrations
from .dto import QCareDto
from .envelope import Envelope
from .errors import ConflictError
from .fields import BY_NAME, FIELDS, PATIENT_DERIVED
from .normalize import mask_id
from .store import Conn, apply_batch, init_connection, record_failure
from .textsafe import safe_text

BATCH = 256
ANALYZE_EVERY = 40  # batches
SHOWN = 120  # characters of a value in a difference line
REAPPLIED = ("applied", "stale")


@dataclass(frozen=True)
class Table:
    name: str
    key: str  # SQL for the row's key
    personal: bool = False  # values are masked in the report


TABLES = (
    Table("patients", "patient_key", personal=True),
    Table("orders", "accession_no"),
    Table("order_services", "accession_no || ' line ' || line_no"),
)
IGNORED = ("created_at", "updated_at")  # when the rebuild ran, not what it holds
# a patient's columns that hold an identifier (fields.py): as sent and normalised, masked
# keeping a hint; and what a patient's difference shows whole (no one's identity in them)
IDENTIFIER_COLUMNS = frozenset(
    {f.column for f in FIELDS if f.identifier and f.column is not None}
    | {d.column for d in PATIENT_DERIVED if BY_NAME[d.register].identifier and d.sql_type == "text"}
)
SHOWN_COLUMNS = frozenset({"hkid_valid", "gender", "field_versions", "version", "last_msg_id"})


@dataclass
class Report:
    reapplied: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # live status -> count
    refused: list[str] = field(default_factory=list)  # no longer bind: msg_ids
    differences: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.differences and not self.refused


def schema_name() -> str:
    return f"qcare_rebuild_{os.getpid()}"


async def create_schema(conn: asyncpg.Connection, schema: str) -> None:
    """A fresh schema made by the same migrations as the live one."""
    await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    await conn.execute(f"CREATE SCHEMA {schema}")
    await conn.execute(f"SET search_path TO {schema}")
    await conn.execute("SET plan_cache_mode = force_custom_plan")  # as the workers' pool
    for _, _, sql in migrations():
        await conn.execute(sql)


def rebound(row: asyncpg.Record) -> Envelope | None:
    """The journaled message bound again as the gateway binds it now; None if it no
    longer binds (a difference the report names)."""
    body = bytes(row["body"])
    warnings: tuple[str, ...] = ()
    if row["as_received"]:
        try:
            fmt, charset = select_format(row["content_type"])
        except UnsupportedMediaTypeError:
            return None
        result = bind(fmt, charset, body)
        if problems(result) is not None or result.model is None:
            return None
        dto = result.model
        warnings = tuple(result.warnings)
    else:  # queued before the journal: its canonical JSON, as the worker applied it
        dto = QCareDto.decode(body)
    if dto.msg_id != row["msg_id"]:
        return None
    return Envelope(
        msg_id=row["msg_id"],
        received_at=row["received_at"],
        body=dto.encode(),
        dto=dto,
        content_type=row["content_type"],
        warnings=warnings,
        raw=body if row["as_received"] else None,
        client=row["client"],
    )


async def _journal(live: asyncpg.Connection, schema: str) -> AsyncIterator[asyncpg.Record]:
    """The journal in received_at order, read in one snapshot, in which the live tables are
    first copied beside the rebuilt ones: the comparison then sees exactly the state the
    journal describes, while workers go on applying new messages."""
    async with live.transaction(isolation="repeatable_read"):
        for table in TABLES:
            await live.execute(
                f"CREATE TABLE {schema}.live_{table.name} AS SELECT * FROM public.{table.name}"
            )
        query = """SELECT j.*, i.status AS live_status
                     FROM public.journal j JOIN public.inbox i USING (msg_id)
                    ORDER BY j.received_at, j.msg_id"""
        async for row in live.cursor(query, prefetch=BATCH):
            yield row


async def _apply(conn: Conn, envs: list[Envelope]) -> None:
    """A batch in one transaction, as a worker applies it; if the database refuses it,
    one by one, recording what it refuses (as the worker would reject it)."""
    try:
        await apply_batch(conn, envs)
        return
    except asyncpg.PostgresError:
        pass
    for env in envs:
        try:
            results = await apply_batch(conn, [env])
        except asyncpg.PostgresError as exc:
            await record_failure(conn, env, "rejected", type(exc).__name__)
            continue
        assert not isinstance(results[0], ConflictError)


async def reapply(live: asyncpg.Connection, target: Conn, schema: str, report: Report) -> None:
    batch: list[Envelope] = []
    applied = 0
    async for row in _journal(live, schema):
        if row["live_status"] not in REAPPLIED:
            report.skipped[row["live_status"]] = report.skipped.get(row["live_status"], 0) + 1
            continue
        env = rebound(row)
        if env is None:
            report.refused.append(row["msg_id"])
            continue
        batch.append(env)
        report.reapplied += 1
        if len(batch) == BATCH:
            await _apply(target, batch)
            batch = []
            applied += 1
            if applied % ANALYZE_EVERY == 1:  # fresh tables: keep the plans on the indexes
                await target.execute("ANALYZE patients, orders, order_services, inbox")
    if batch:
        await _apply(target, batch)


def _shown(table: Table, column: str, value: Any) -> str:
    if value is None:
        return "null"
    if table.personal or column == "patient_key":
        return masked(column, value)
    return safe_text(json.dumps(value, ensure_ascii=False), SHOWN)


def masked(column: str, value: Any) -> str:
    """A personal value as the report may show it: identifiers keep a hint, the rest not."""
    text = value if isinstance(value, str) else json.dumps(value)
    if column == "patient_key" and ":" in text:
        kind, ident = text.split(":", 1)
        return f"{kind}:{mask_id(ident)}"
    if column in IDENTIFIER_COLUMNS:
        return mask_id(text)
    if column in SHOWN_COLUMNS:
        return safe_text(text, SHOWN)
    return "***"


async def compare(conn: asyncpg.Connection, schema: str, report: Report) -> None:
    for table in TABLES:
        rows = await conn.fetch(
            f"""WITH live AS (SELECT {table.key} AS k, to_jsonb(t) - $1::text[] AS doc
                                FROM {schema}.live_{table.name} t),
                     rebuilt AS (SELECT {table.key} AS k, to_jsonb(t) - $1::text[] AS doc
                                   FROM {schema}.{table.name} t)
                SELECT coalesce(l.k, r.k) AS k, l.doc AS live, r.doc AS rebuilt
                  FROM live l FULL JOIN rebuilt r ON l.k = r.k
                 WHERE l.doc IS DISTINCT FROM r.doc
                 ORDER BY 1""",
            list(IGNORED),
        )
        for row in rows:
            report.differences.extend(_row_differences(table, row))


def _row_differences(table: Table, row: asyncpg.Record) -> Iterable[str]:
    key = (
        masked("patient_key", row["k"]) if table.name == "patients" else safe_text(row["k"], SHOWN)
    )
    live, rebuilt = row["live"], row["rebuilt"]
    if live is None:
        yield f"{table.name} {key}: only in the rebuilt tables"
        return
    if rebuilt is None:
        yield f"{table.name} {key}: only in the live tables"
        return
    for column in sorted(set(live) | set(rebuilt)):
        if live.get(column) != rebuilt.get(column):
            yield (
                f"{table.name} {key} {column}: live {_shown(table, column, live.get(column))}, "
                f"rebuilt {_shown(table, column, rebuilt.get(column))}"
            )


async def rebuild(database_url: str, keep: bool = False) -> tuple[Report, str]:
    schema = schema_name()
    live = await asyncpg.connect(database_url)
    target = await asyncpg.connect(database_url)
    try:
        await init_connection(live)
        await init_connection(target)
        await create_schema(target, schema)  # and the target now works in it
        try:
            report = Report()
            await reapply(live, target, schema, report)
            await compare(live, schema, report)
        finally:
            if not keep:
                await live.execute(f"DROP SCHEMA {schema} CASCADE")
        return report, schema
    finally:
        await target.close()
        await live.close()


def render(report: Report, schema: str, keep: bool, out: TextIO) -> None:
    skipped = ", ".join(f"{n} {status}" for status, n in sorted(report.skipped.items()))
    out.write(f"re-applied {report.reapplied} journaled message(s)")
    out.write(f"; not re-applied: {skipped} (replay them with dlq replay)\n" if skipped else "\n")
    for msg_id in report.refused:
        out.write(f"message {safe_text(msg_id, SHOWN)}: no longer binds; not re-applied\n")
    for line in report.differences:
        out.write(line + "\n")
    if keep:
        out.write(f"rebuilt tables kept in schema {schema}\n")
    out.write("identical\n" if report.identical else f"{len(report.differences)} difference(s)\n")


async def run(database_url: str, keep: bool, out: TextIO) -> int:
    report, schema = await rebuild(database_url, keep)
    render(report, schema, keep, out)
    return 0 if report.identical else 1
