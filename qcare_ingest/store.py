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
from .normalize import hkid_valid, normalise_gender, normalise_hkid
from .plan import Plan, make_plan, take

Conn = asyncpg.Connection | PoolConnectionProxy

# register (DTO field) -> column
PATIENT_COLUMNS = {
    "hkid": "hkid_raw",
    "passno": "passno",
    "name": "name",
    "gender": "gender_raw",
    "dob": "dob_raw",
    "address": "address",
}
ORDER_COLUMNS = {
    "studyDate": "study_date_raw",
    "studyTime": "study_time",
    "location": "location",
    "chitno": "chitno",
    "plan_type": "plan_type",
    "ref_doctor": "ref_doctor",
    "ref_clinic_fullname": "ref_clinic_fullname",
    "csCode": "cs_code",
    "modality": "modality",
    "refClinicFullname": "ref_clinic_fullname2",
    "examClinicFullName": "exam_clinic_fullname",
    "patient": "patient_key",
}
# every column a batch writes back, with its SQL type for unnest()
PATIENT_WRITE = {
    **{col: "text" for col in PATIENT_COLUMNS.values()},
    "hkid": "text",
    "hkid_valid": "boolean",
    "gender": "text",
    "dob": "date",
}
ORDER_WRITE = {**{col: "text" for col in ORDER_COLUMNS.values()}, "study_at": "timestamptz"}


@dataclass
class Outcome:
    status: str  # applied | stale | duplicate
    warnings: list[str] = field(default_factory=list)
    stale_for: list[str] = field(default_factory=list)


Result = Outcome | ConflictError


async def init_connection(conn: Conn) -> None:
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(
            typename, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


# Claim the inbox rows, then create the rows the claimed messages will lock (patients, then
# orders, each in key order). A row made by this statement is not visible to a later CTE of
# it, hence the separate locking SELECTs.
_CLAIM = """
WITH claimed AS (
    INSERT INTO inbox AS i (msg_id, body_sha256, received_at, status, accession_no,
                            patient_key, warnings, attempts)
    SELECT m, h, r, 'applied', a, p, w::jsonb, n
      FROM unnest($1::text[], $2::bytea[], $3::timestamptz[], $4::text[], $5::text[],
                  $6::text[], $7::int[]) AS t(m, h, r, a, p, w, n)
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
)
SELECT msg_id FROM claimed
"""


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
    rows = await conn.fetch(
        _CLAIM,
        [envs[i].msg_id for i in idx],
        [envs[i].digest for i in idx],
        [envs[i].received_at for i in idx],
        [plans[i].accession_no for i in idx],
        [plans[i].patient_key for i in idx],
        [json.dumps(plans[i].warnings) for i in idx],
        [envs[i].attempt + 1 for i in idx],
    )
    return {r["msg_id"] for r in rows}


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
    await conn.execute(
        _WRITE,
        *_changed(patients, PATIENT_WRITE, _patient_derived),
        *_changed(orders, ORDER_WRITE, _order_derived),
        *_service_arrays(services),
        [env.msg_id for env, _ in batch],
        [o.status for o in outcomes],
        [json.dumps(o.stale_for) for o in outcomes],
    )
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


def _update(table: str, key_col: str, types: dict[str, str], first: int) -> tuple[str, int]:
    """UPDATE … FROM unnest(arrays from parameter `first` on); and the next free parameter."""
    cols = list(types)
    all_types = ["text", *types.values(), "text", "text", "text"]
    decl = ", ".join(f"${first + i}::{t}[]" for i, t in enumerate(all_types))
    sets = ", ".join(f"{c} = u.{c}" for c in cols)
    sql = f"""UPDATE {table} t
           SET {sets}, field_versions = u.fv::jsonb, version = u.v, last_msg_id = u.lm,
               updated_at = now()
          FROM unnest({decl}) AS u(k, {", ".join(cols)}, fv, v, lm)
         WHERE t.{key_col} = u.k"""
    return sql, first + len(all_types)


def _write_statement() -> str:
    patients, n = _update("patients", "patient_key", PATIENT_WRITE, 1)
    orders, n = _update("orders", "accession_no", ORDER_WRITE, n)
    a = n  # service lines: lines 0..k-1 upserted, lines k.. deleted (disjoint rows)
    return f"""
WITH write_patients AS ({patients}
), write_orders AS ({orders}
), line_counts AS (
    DELETE FROM order_services s USING unnest(${a}::text[], ${a + 1}::int[]) AS c(acc, n)
     WHERE s.accession_no = c.acc AND s.line_no >= c.n
), lines AS (
    INSERT INTO order_services
           (accession_no, line_no, study_desc, bodypart, no_of_images, warning_time)
    SELECT * FROM unnest(${a + 2}::text[], ${a + 3}::int[], ${a + 4}::text[], ${a + 5}::text[],
                         ${a + 6}::int[], ${a + 7}::int[])
    ON CONFLICT (accession_no, line_no) DO UPDATE
       SET study_desc = EXCLUDED.study_desc, bodypart = EXCLUDED.bodypart,
           no_of_images = EXCLUDED.no_of_images, warning_time = EXCLUDED.warning_time
)
UPDATE inbox i SET status = u.s, stale_for = u.f::jsonb, processed_at = clock_timestamp()
  FROM unnest(${a + 8}::text[], ${a + 9}::text[], ${a + 10}::text[]) AS u(m, s, f)
 WHERE i.msg_id = u.m"""


# patients, orders, service lines and inbox outcomes of a batch: one fixed statement
_WRITE = _write_statement()


def _changed(
    entities: dict[str, _Entity],
    types: dict[str, str],
    derive: Callable[[dict[str, Any]], None],
) -> list[list[Any]]:
    """Column arrays (key, columns…, versions, version, last msg) of the changed rows."""
    changed = {k: e for k, e in entities.items() if e.changed}
    for entity in changed.values():
        derive(entity.row)
    arrays: list[list[Any]] = [list(changed)]
    arrays += [[e.row[c] for e in changed.values()] for c in types]
    arrays += [
        [json.dumps(e.versions) for e in changed.values()],
        [e.version for e in changed.values()],
        [e.last_msg_id for e in changed.values()],
    ]
    return arrays


def _service_arrays(services: dict[str, list[dict[str, Any]]]) -> list[list[Any]]:
    """Line counts per order, then the lines as column arrays."""
    flat = [
        (acc, n, line) for acc, lines in sorted(services.items()) for n, line in enumerate(lines)
    ]
    return [
        sorted(services),
        [len(services[acc]) for acc in sorted(services)],
        [acc for acc, _, _ in flat],
        [n for _, n, _ in flat],
        [line["studyDesc"] for _, _, line in flat],
        [line["bodypart"] for _, _, line in flat],
        [line["noOfImages"] for _, _, line in flat],
        [line["warningTime"] for _, _, line in flat],
    ]


async def record_failure(conn: Conn, env: Envelope, status: str, error: str) -> None:
    """Best effort, after the message is safely in the dead-letter queue."""
    if status == "conflict":
        await conn.execute(
            "INSERT INTO inbox_conflicts (msg_id, body_sha256, received_at) VALUES ($1, $2, $3)",
            env.msg_id,
            env.digest,
            env.received_at,
        )
        return
    plan = plan_for(env)
    await conn.execute(
        """INSERT INTO inbox (msg_id, body_sha256, received_at, status, accession_no,
                              patient_key, warnings, error, attempts)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           ON CONFLICT (msg_id) DO UPDATE
              SET status = EXCLUDED.status, error = EXCLUDED.error, processed_at = now(),
                  attempts = inbox.attempts + EXCLUDED.attempts
            WHERE inbox.status IN ('dead_lettered', 'rejected')""",
        env.msg_id,
        env.digest,
        env.received_at,
        status,
        plan.accession_no,
        plan.patient_key,
        plan.warnings,
        error[:500],
        env.attempt + 1,
    )
