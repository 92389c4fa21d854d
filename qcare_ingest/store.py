"""Apply updates in one transaction per batch: inbox rows + patients + orders + lines (SPEC §3).

One transaction applies a whole batch with a fixed number of round trips:

    claim inbox rows (msg_id unique)  -> dedupe; conflicts found
    create + lock patients, sorted    -> SELECT … FOR UPDATE ORDER BY key
    create + lock orders, sorted         (one global lock order: no deadlocks)
    merge in Python, updates in received_at order, field by field
    write patients, orders, service lines, inbox outcomes (one statement each)

A single message is a batch of one. The caller acks only after this returns,
that is, after the commit. If a batch fails as a whole, the caller retries its
messages one by one, so one bad message cannot hold back the others.
"""

from __future__ import annotations

import json
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


_CLAIM = """
INSERT INTO inbox AS i (msg_id, body_sha256, received_at, status, accession_no, patient_key,
                        warnings, attempts)
SELECT m, h, r, 'applied', a, p, w::jsonb, n
  FROM unnest($1::text[], $2::bytea[], $3::timestamptz[], $4::text[], $5::text[], $6::text[],
              $7::int[]) AS t(m, h, r, a, p, w, n)
 ORDER BY m
ON CONFLICT (msg_id) DO UPDATE
   SET received_at = EXCLUDED.received_at, status = 'applied', error = NULL,
       attempts = i.attempts + EXCLUDED.attempts, processed_at = now(),
       warnings = EXCLUDED.warnings
 WHERE i.status IN ('dead_lettered', 'rejected') AND i.body_sha256 = EXCLUDED.body_sha256
RETURNING msg_id
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
            same = envs[first].digest == env.digest
            results[i] = Outcome("duplicate") if same else _conflict()
    plans = {i: make_plan(envs[i].dto) for i in primary.values()}
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
                same = digest is None or bytes(digest) == envs[i].digest
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
    if not keys:
        return {}
    await conn.execute(
        f"INSERT INTO {table} ({key_col}) SELECT k FROM unnest($1::text[]) AS k ORDER BY k "
        "ON CONFLICT DO NOTHING",
        keys,
    )
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
    await _write_patients(conn, patients)
    await _write_orders(conn, orders)
    await _write_services(conn, services)
    await conn.execute(
        """UPDATE inbox i SET status = u.s, stale_for = u.f::jsonb, processed_at = clock_timestamp()
             FROM unnest($1::text[], $2::text[], $3::text[]) AS u(m, s, f)
            WHERE i.msg_id = u.m""",
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


async def _write(
    conn: Conn, table: str, key_col: str, entities: dict[str, _Entity], types: dict[str, str]
) -> None:
    changed = {k: e for k, e in entities.items() if e.changed}
    if not changed:
        return
    cols = list(types)
    arrays: list[list[Any]] = [list(changed)]
    arrays += [[e.row[c] for e in changed.values()] for c in cols]
    arrays += [
        [json.dumps(e.versions) for e in changed.values()],
        [e.version for e in changed.values()],
        [e.last_msg_id for e in changed.values()],
    ]
    decl = ", ".join(f"${i}::{t}[]" for i, t in enumerate(["text", *types.values()], start=1))
    n = len(cols) + 2
    sets = ", ".join(f"{c} = u.{c}" for c in cols)
    await conn.execute(
        f"""UPDATE {table} t
               SET {sets}, field_versions = u.fv::jsonb, version = u.v, last_msg_id = u.lm,
                   updated_at = now()
              FROM unnest({decl}, ${n}::text[], ${n + 1}::text[], ${n + 2}::text[])
                   AS u(k, {", ".join(cols)}, fv, v, lm)
             WHERE t.{key_col} = u.k""",
        *arrays,
    )


async def _write_patients(conn: Conn, patients: dict[str, _Entity]) -> None:
    for entity in patients.values():
        if entity.changed:
            _patient_derived(entity.row)
    await _write(conn, "patients", "patient_key", patients, PATIENT_WRITE)


async def _write_orders(conn: Conn, orders: dict[str, _Entity]) -> None:
    for entity in orders.values():
        if entity.changed:
            _order_derived(entity.row)
    await _write(conn, "orders", "accession_no", orders, ORDER_WRITE)


async def _write_services(conn: Conn, services: dict[str, list[dict[str, Any]]]) -> None:
    if not services:
        return
    await conn.execute(
        "DELETE FROM order_services WHERE accession_no = ANY($1::text[])", sorted(services)
    )
    flat = [
        (acc, n, line) for acc, lines in sorted(services.items()) for n, line in enumerate(lines)
    ]
    if not flat:
        return
    await conn.execute(
        """INSERT INTO order_services
               (accession_no, line_no, study_desc, bodypart, no_of_images, warning_time)
           SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::int[],
                                $6::int[])""",
        [acc for acc, _, _ in flat],
        [n for _, n, _ in flat],
        [line["studyDesc"] for _, _, line in flat],
        [line["bodypart"] for _, _, line in flat],
        [line["noOfImages"] for _, _, line in flat],
        [line["warningTime"] for _, _, line in flat],
    )


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
    plan = make_plan(env.dto)
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
