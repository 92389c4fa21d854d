"""Apply updates in one transaction per batch: inbox rows + patients + orders + lines (SPEC §3).

One transaction applies a whole batch in six round trips, whatever its size:

    BEGIN
    claim inbox rows (msg_id unique) and  -> dedupe; conflicts found; rows to lock
      create the claimed ones' patients and orders, sorted
    lock patients, sorted                 -> SELECT … FOR UPDATE ORDER BY key
    lock orders, sorted                      (one global lock order: no deadlocks)
    merge in Python, updates in received_at order, field by field
    write patients, orders, service lines and inbox outcomes (one statement)
    COMMIT

Round trips, not rows, are what a small batch costs (py-spy: a third of the worker's
time was the loopback socket write per statement), so each step is one statement.

The columns come from fields.py; the statements name their parameters (`:msg_id`) and
sqlnamed turns them into asyncpg's `$n` once, at import.

A single message is a batch of one. The caller acks only after this returns,
that is, after the commit. If a batch fails as a whole, the caller retries its
messages one by one, so one bad message cannot hold back the others.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from .dates import parse_dob, parse_dotnet, parse_study_time, to_instant
from .envelope import Envelope
from .errors import ConflictError
from .fields import ORDER_DERIVED, PATIENT_DERIVED, SERVICE_FIELDS, registers
from .normalize import hkid_valid, normalise_gender, normalise_hkid
from .plan import Plan, make_plan, take
from .sqlnamed import Named

Conn = asyncpg.Connection | PoolConnectionProxy

# register (DTO field) -> column, in the DTO's order (fields.py); an order's patient is the
# register `patient`, held in patient_key
PATIENT_COLUMNS = {f.name: f.column for f in registers("patient") if f.column is not None}
ORDER_COLUMNS = {
    **{f.name: f.column for f in registers("order") if f.column is not None},
    "patient": "patient_key",
}
# every column a batch writes back, with its SQL type for unnest(): the registers' raw
# values, then the columns derived from them
PATIENT_WRITE = {
    **{f.column: f.sql_type for f in registers("patient") if f.column is not None},
    **{d.column: d.sql_type for d in PATIENT_DERIVED},
}
ORDER_WRITE = {
    **{f.column: f.sql_type for f in registers("order") if f.column is not None},
    "patient_key": "text",
    **{d.column: d.sql_type for d in ORDER_DERIVED},
}
# a service line's columns (after accession_no and line_no), from its fields
SERVICE_COLUMNS = {f.name: f.column for f in SERVICE_FIELDS if f.column is not None}
SERVICE_TYPES = {f.column: f.sql_type for f in SERVICE_FIELDS if f.column is not None}


@dataclass
class Outcome:
    status: str  # applied | stale | duplicate
    warnings: list[str] = field(default_factory=list)
    stale_for: list[str] = field(default_factory=list)


Result = Outcome | ConflictError


# The worker's database sessions (worker/consumer.py). Every statement here finds its rows
# by key (each table has an index condition on its key), so the right plan is the same
# whatever the tables hold: index scans joined by nested loops. PostgreSQL then keeps one
# generic plan per statement and connection (made again only after an ANALYZE or a schema
# change of its tables) instead of planning at every execution: planning was half of
# PostgreSQL's CPU per message (README, performance). Without the enable_* settings a
# generic plan is costed on the statistics of the moment; made while the tables were small,
# it would be sequential scans and hash joins until the next ANALYZE (measured: 2.4-3 x
# PostgreSQL's CPU, lag p99 in seconds). tests/integration/test_store_plans.py holds the
# plans made on empty tables to index conditions on the keys.
SESSION_SETTINGS = {
    "plan_cache_mode": "force_generic_plan",
    "enable_seqscan": "off",
    "enable_hashjoin": "off",
    "enable_mergejoin": "off",
    # a disabled node is only made expensive (1e10): a statement left with no other plan
    # would cross jit_above_cost and be compiled at every execution
    "jit": "off",
}


async def init_connection(conn: Conn) -> None:
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(
            typename, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


# Claim the inbox rows, then create the rows the claimed messages will lock (patients, then
# orders, each in key order). A row made by this statement is not visible to a later CTE of
# it, hence the separate locking SELECTs.
_CLAIM = Named("""
WITH claimed AS (
    INSERT INTO inbox AS i (msg_id, body_sha256, received_at, status, accession_no,
                            patient_key, warnings, attempts)
    SELECT m, h, r, 'applied', a, p, w::jsonb, n
      FROM unnest(:msg_id::text[], :digest::bytea[], :received_at::timestamptz[],
                  :accession_no::text[], :patient_key::text[], :warnings::text[],
                  :attempts::int[]) AS t(m, h, r, a, p, w, n)
     ORDER BY m
    ON CONFLICT (msg_id) DO UPDATE
       SET received_at = EXCLUDED.received_at, status = 'applied', error = NULL,
           attempts = i.attempts + EXCLUDED.attempts, processed_at = now(),
           warnings = EXCLUDED.warnings
     WHERE i.status IN ('dead_lettered', 'rejected') AND i.body_sha256 = EXCLUDED.body_sha256
    RETURNING msg_id, accession_no, patient_key
), new_patients AS (
    INSERT INTO patients (patient_key)
    SELECT DISTINCT patient_key FROM claimed WHERE patient_key IS NOT NULL
     ORDER BY patient_key
    ON CONFLICT DO NOTHING
), new_orders AS (
    INSERT INTO orders (accession_no)
    SELECT DISTINCT accession_no FROM claimed WHERE accession_no IS NOT NULL
     ORDER BY accession_no
    ON CONFLICT DO NOTHING
), journaled AS (
    INSERT INTO journal (msg_id, received_at, content_type, client, body, as_received, dto)
    SELECT j.m, j.r, j.ct, j.cl, j.b, j.ar, j.d
      FROM unnest(:msg_id::text[], :received_at::timestamptz[], :content_type::text[],
                  :client::text[], :body::bytea[], :as_received::boolean[],
                  :dto::text[]) AS j(m, r, ct, cl, b, ar, d)
      JOIN claimed c ON c.msg_id = j.m
    ON CONFLICT (msg_id) DO NOTHING
)
SELECT msg_id FROM claimed
""")


@dataclass
class _Entity:
    """A locked row being merged: raw registers, field versions, and what changed."""

    row: dict[str, Any]
    versions: dict[str, str]
    version: str
    last_msg_id: str | None
    changed: set[str] = field(default_factory=set)


async def apply_batch(conn: Conn, envs: list[Envelope]) -> list[Result]:
    """Results aligned with `envs`. Raises on database errors (nothing is committed then)."""
    results: list[Result | None] = [None] * len(envs)
    primary: dict[str, int] = {}
    for i, env in enumerate(envs):  # the same msg_id twice in one batch: the first one counts
        first = primary.setdefault(env.msg_id, i)
        if first != i:
            same = envs[first].same_content_as(env)
            results[i] = Outcome("duplicate") if same else _conflict()
    plans = {i: plan_for(envs[i]) for i in primary.values()}
    async with conn.transaction():
        claimed = await _claim(conn, envs, plans)
        unclaimed = [i for i in primary.values() if envs[i].msg_id not in claimed]
        if unclaimed:
            rows = await conn.fetch(
                "SELECT msg_id, body_sha256 FROM inbox WHERE msg_id = ANY($1::text[])",
                [envs[i].msg_id for i in unclaimed],
            )
            held = {r["msg_id"]: r["body_sha256"] for r in rows}
            for i in unclaimed:
                digest = held.get(envs[i].msg_id)
                same = digest is None or envs[i].same_content(bytes(digest))
                results[i] = Outcome("duplicate") if same else _conflict()
        work = sorted(
            (i for i in primary.values() if envs[i].msg_id in claimed),
            key=lambda i: envs[i].version,
        )
        if work:
            outcomes = await _merge_and_write(conn, [(envs[i], plans[i]) for i in work])
            for i, outcome in zip(work, outcomes, strict=True):
                results[i] = outcome
    return [r if r is not None else Outcome("duplicate") for r in results]


def plan_for(env: Envelope) -> Plan:
    """The update's plan, with the gateway's warnings (made storable) before its own."""
    plan = make_plan(env.dto)
    plan.warnings[:0] = env.warnings
    return plan


def _conflict() -> ConflictError:
    return ConflictError("msg_id was already received with different content; not applied")


async def _claim(conn: Conn, envs: list[Envelope], plans: dict[int, Plan]) -> set[str]:
    idx = sorted(plans, key=lambda i: envs[i].msg_id)
    values = {
        "msg_id": [envs[i].msg_id for i in idx],
        "digest": [envs[i].digest for i in idx],
        "received_at": [envs[i].received_at for i in idx],
        "accession_no": [plans[i].accession_no for i in idx],
        "patient_key": [plans[i].patient_key for i in idx],
        "warnings": [json.dumps(plans[i].warnings) for i in idx],
        "attempts": [envs[i].attempt + 1 for i in idx],
        **_journal_arrays([envs[i] for i in idx]),
    }
    rows = await conn.fetch(_CLAIM.sql, *_CLAIM.args(values))
    return {r["msg_id"] for r in rows}


def _journal_arrays(envs: list[Envelope]) -> dict[str, list[Any]]:
    """The journal's columns (content type, client, body, as received, DTO) of `envs`: the
    request's bytes, or the canonical JSON of a message queued before the journal."""
    return {
        "content_type": [
            env.content_type if env.raw is not None else "application/json" for env in envs
        ],
        "client": [env.client for env in envs],
        "body": [env.raw if env.raw is not None else env.body for env in envs],
        "as_received": [env.raw is not None for env in envs],
        "dto": [env.body.decode() for env in envs],
    }


async def _lock(conn: Conn, table: str, key_col: str, keys: list[str]) -> dict[str, _Entity]:
    """Lock the (already created) rows, in key order."""
    if not keys:
        return {}
    rows = await conn.fetch(
        f"SELECT * FROM {table} WHERE {key_col} = ANY($1::text[]) ORDER BY {key_col} FOR UPDATE",
        keys,
    )
    return {
        r[key_col]: _Entity(dict(r), dict(r["field_versions"]), r["version"], r["last_msg_id"])
        for r in rows
    }


async def _merge_and_write(conn: Conn, batch: list[tuple[Envelope, Plan]]) -> list[Outcome]:
    patients = await _lock(
        conn, "patients", "patient_key", sorted({p.patient_key for _, p in batch if p.patient_key})
    )
    orders = await _lock(
        conn, "orders", "accession_no", sorted({p.accession_no for _, p in batch if p.accession_no})
    )
    outcomes = []
    services: dict[str, list[dict[str, Any]]] = {}
    for env, plan in batch:  # in received_at order
        outcome = Outcome("stale", warnings=list(plan.warnings))
        took = False
        if plan.patient_key is not None:
            took |= _merge(patients[plan.patient_key], plan.patient, PATIENT_COLUMNS, env,
                           "patient", outcome)  # fmt: skip
        if plan.accession_no is not None:
            order = orders[plan.accession_no]
            lines = plan.order.get("services")
            took_order = _merge(order, plan.order, ORDER_COLUMNS, env, "order", outcome)
            if (
                took_order
                and "services" in order.changed
                and order.versions["services"] == env.version
            ):
                services[plan.accession_no] = lines or []
            took |= took_order
        outcome.status = "applied" if took else "stale"
        outcomes.append(outcome)
    values = {
        **_changed("patients", patients, PATIENT_WRITE, _patient_derived),
        **_changed("orders", orders, ORDER_WRITE, _order_derived),
        **_service_arrays(services),
        "inbox_msg_id": [env.msg_id for env, _ in batch],
        "inbox_status": [o.status for o in outcomes],
        "inbox_stale_for": [json.dumps(o.stale_for) for o in outcomes],
    }
    await conn.execute(_WRITE.sql, *_WRITE.args(values))
    return outcomes


def _merge(
    entity: _Entity, registers: dict[str, Any], columns: dict[str, str], env: Envelope,
    name: str, outcome: Outcome,
) -> bool:  # fmt: skip
    if entity.version > env.version:
        outcome.stale_for.append(name)
    won = take(registers, entity.versions, env.version)
    if not won:
        return False
    for register, value in won.items():
        if register != "services":
            entity.row[columns[register]] = value
        entity.versions[register] = env.version
        entity.changed.add(register)
    if env.version > entity.version:
        entity.version = env.version
        entity.last_msg_id = env.msg_id
    return True


def _patient_derived(row: dict[str, Any]) -> None:
    raw_hkid = row["hkid_raw"]
    row["hkid"] = normalise_hkid(raw_hkid) if raw_hkid is not None else None
    row["hkid_valid"] = hkid_valid(row["hkid"]) if row["hkid"] is not None else None
    row["gender"] = (normalise_gender(row["gender_raw"]) or "U") if row["gender_raw"] else None
    dob: date | None = parse_dob(row["dob_raw"])
    row["dob"] = dob


def _order_derived(row: dict[str, Any]) -> None:
    row["study_at"] = _study_at(row["study_date_raw"], row["study_time"])


def _study_at(raw_date: str | None, raw_time: str | None) -> datetime | None:
    parsed = parse_dotnet(raw_date) if raw_date else None
    if parsed is None:
        return None
    return to_instant(parsed, parse_study_time(raw_time))


def _update(table: str, key_col: str, types: dict[str, str]) -> str:
    """UPDATE … FROM unnest(arrays named `<table>_key`, `<table>_col_<column>`…, then the
    field versions, version and last msg_id): see _changed. The key is also matched with
    `= ANY(keys)`, as in the inbox update below: that gives the table an index condition
    of its own, so that a plan made while the table was empty cannot be a whole-index scan
    joined to the arrays (SESSION_SETTINGS)."""
    cols = list(types)
    arrays = [
        f":{table}_key::text[]",
        *(f":{table}_col_{c}::{t}[]" for c, t in types.items()),
        f":{table}_field_versions::text[]",
        f":{table}_version::text[]",
        f":{table}_last_msg_id::text[]",
    ]
    sets = ", ".join(f"{c} = u.{c}" for c in cols)
    return f"""UPDATE {table} t
           SET {sets}, field_versions = u.fv::jsonb, version = u.v, last_msg_id = u.lm,
               updated_at = now()
          FROM unnest({", ".join(arrays)}) AS u(k, {", ".join(cols)}, fv, v, lm)
         WHERE t.{key_col} = u.k AND t.{key_col} = ANY(:{table}_key::text[])"""


def _write_statement() -> Named:
    patients = _update("patients", "patient_key", PATIENT_WRITE)
    orders = _update("orders", "accession_no", ORDER_WRITE)
    line_cols = ", ".join(SERVICE_TYPES)
    line_arrays = ", ".join(f":lines_col_{c}::{t}[]" for c, t in SERVICE_TYPES.items())
    line_sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in SERVICE_TYPES)
    # service lines: lines 0..k-1 upserted, lines k.. deleted (disjoint rows); every join
    # with unnest also matches its keys with `= ANY`, as in _update
    return Named(f"""
WITH write_patients AS ({patients}
), write_orders AS ({orders}
), line_counts AS (
    DELETE FROM order_services s
     USING unnest(:counted_accession_no::text[], :line_count::int[]) AS c(acc, n)
     WHERE s.accession_no = c.acc AND s.line_no >= c.n
       AND s.accession_no = ANY(:counted_accession_no::text[])
), lines AS (
    INSERT INTO order_services (accession_no, line_no, {line_cols})
    SELECT * FROM unnest(:lines_accession_no::text[], :lines_line_no::int[], {line_arrays})
    ON CONFLICT (accession_no, line_no) DO UPDATE SET {line_sets}
)
UPDATE inbox i SET status = u.s, stale_for = u.f::jsonb, processed_at = clock_timestamp()
  FROM unnest(:inbox_msg_id::text[], :inbox_status::text[], :inbox_stale_for::text[])
       AS u(m, s, f)
 WHERE i.msg_id = u.m AND i.msg_id = ANY(:inbox_msg_id::text[])""")


# patients, orders, service lines and inbox outcomes of a batch: one fixed statement
_WRITE = _write_statement()


def _changed(
    table: str,
    entities: dict[str, _Entity],
    types: dict[str, str],
    derive: Callable[[dict[str, Any]], None],
) -> dict[str, list[Any]]:
    """Column arrays (key, columns…, versions, version, last msg) of the changed rows, named
    as _update names them."""
    changed = {k: e for k, e in entities.items() if e.changed}
    for entity in changed.values():
        derive(entity.row)
    arrays: dict[str, list[Any]] = {f"{table}_key": list(changed)}
    for c in types:
        arrays[f"{table}_col_{c}"] = [e.row[c] for e in changed.values()]
    arrays[f"{table}_field_versions"] = [json.dumps(e.versions) for e in changed.values()]
    arrays[f"{table}_version"] = [e.version for e in changed.values()]
    arrays[f"{table}_last_msg_id"] = [e.last_msg_id for e in changed.values()]
    return arrays


def _service_arrays(services: dict[str, list[dict[str, Any]]]) -> dict[str, list[Any]]:
    """Line counts per order, then the lines as column arrays."""
    accessions = sorted(services)
    flat = [(acc, n, line) for acc in accessions for n, line in enumerate(services[acc])]
    arrays: dict[str, list[Any]] = {
        "counted_accession_no": accessions,
        "line_count": [len(services[acc]) for acc in accessions],
        "lines_accession_no": [acc for acc, _, _ in flat],
        "lines_line_no": [n for _, n, _ in flat],
    }
    for name, column in SERVICE_COLUMNS.items():
        arrays[f"lines_col_{column}"] = [line[name] for _, _, line in flat]
    return arrays


async def record_failure(conn: Conn, env: Envelope, status: str, error: str) -> None:
    """Best effort, after the message is safely in the dead-letter queue."""
    if status == "conflict":
        values = {"msg_id": env.msg_id, "digest": env.digest, "received_at": env.received_at}
        await conn.execute(_CONFLICT.sql, *_CONFLICT.args(values))
        return
    plan = plan_for(env)
    async with conn.transaction():  # the inbox row and its journal copy, or neither
        await _record_failed(conn, env, plan, status, error)


_CONFLICT = Named(
    """INSERT INTO inbox_conflicts (msg_id, body_sha256, received_at)
       VALUES (:msg_id, :digest, :received_at)"""
)
_FAILED = Named(
    """INSERT INTO inbox (msg_id, body_sha256, received_at, status, accession_no,
                          patient_key, warnings, error, attempts)
       VALUES (:msg_id, :digest, :received_at, :status, :accession_no, :patient_key,
               :warnings, :error, :attempts)
       ON CONFLICT (msg_id) DO UPDATE
          SET status = EXCLUDED.status, error = EXCLUDED.error, processed_at = now(),
              attempts = inbox.attempts + EXCLUDED.attempts
        WHERE inbox.status IN ('dead_lettered', 'rejected')"""
)
_FAILED_JOURNAL = Named(
    """INSERT INTO journal (msg_id, received_at, content_type, client, body, as_received, dto)
       SELECT :msg_id, :received_at, :content_type, :client, :body, :as_received, :dto
        WHERE EXISTS (SELECT 1 FROM inbox WHERE msg_id = :msg_id)
       ON CONFLICT (msg_id) DO NOTHING"""
)


async def _record_failed(conn: Conn, env: Envelope, plan: Plan, status: str, error: str) -> None:
    """The inbox row of a message that failed (unless it was applied meanwhile), and the
    message in the journal, so that the console shows what was sent."""
    failed = {
        "msg_id": env.msg_id,
        "digest": env.digest,
        "received_at": env.received_at,
        "status": status,
        "accession_no": plan.accession_no,
        "patient_key": plan.patient_key,
        "warnings": plan.warnings,
        "error": error[:500],
        "attempts": env.attempt + 1,
    }
    await conn.execute(_FAILED.sql, *_FAILED.args(failed))
    journal = {
        "msg_id": env.msg_id,
        "received_at": env.received_at,
        **{column: values[0] for column, values in _journal_arrays([env]).items()},
    }
    await conn.execute(_FAILED_JOURNAL.sql, *_FAILED_JOURNAL.args(journal))
