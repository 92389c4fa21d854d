"""Apply one update in one transaction: inbox row + patient + order + lines (SPEC §3)."""

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


Conn = asyncpg.Connection | PoolConnectionProxy


@dataclass
class Outcome:
    status: str  # applied | stale | duplicate
    warnings: list[str] = field(default_factory=list)
    stale_for: list[str] = field(default_factory=list)


async def init_connection(conn: Conn) -> None:
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(
            typename, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


_CLAIM = """
INSERT INTO inbox (msg_id, body_sha256, received_at, status, accession_no, patient_key,
                   warnings, attempts)
VALUES ($1, $2, $3, 'applied', $4, $5, $6, $7)
ON CONFLICT (msg_id) DO UPDATE
   SET received_at = EXCLUDED.received_at, status = 'applied', error = NULL,
       attempts = inbox.attempts + EXCLUDED.attempts, processed_at = now()
 WHERE inbox.status IN ('dead_lettered', 'rejected')
   AND inbox.body_sha256 = EXCLUDED.body_sha256
RETURNING msg_id
"""


async def apply_update(conn: Conn, env: Envelope) -> Outcome:
    """Dedupe on msg_id and apply, all in one transaction; the caller acks after it returns."""
    plan = make_plan(env.dto)
    outcome = Outcome("stale", warnings=list(plan.warnings))
    async with conn.transaction():
        claimed = await conn.fetchval(
            _CLAIM,
            env.msg_id,
            env.digest,
            env.received_at,
            plan.accession_no,
            plan.patient_key,
            plan.warnings,
            env.attempt + 1,
        )
        if claimed is None:
            held = await conn.fetchval(
                "SELECT body_sha256 FROM inbox WHERE msg_id = $1", env.msg_id
            )
            if held is not None and bytes(held) != env.digest:
                raise ConflictError(
                    "msg_id was already received with different content; not applied"
                )
            return Outcome("duplicate")
        took = False
        if plan.patient_key is not None:
            took |= await _apply_patient(conn, plan, env, outcome)
        if plan.accession_no is not None:
            took |= await _apply_order(conn, plan, env, outcome)
        outcome.status = "applied" if took else "stale"
        await conn.execute(
            "UPDATE inbox SET status = $2, stale_for = $3, processed_at = now() WHERE msg_id = $1",
            env.msg_id,
            outcome.status,
            outcome.stale_for,
        )
    return outcome


async def _lock_row(conn: Conn, table: str, key_col: str, key: str) -> asyncpg.Record:
    await conn.execute(f"INSERT INTO {table} ({key_col}) VALUES ($1) ON CONFLICT DO NOTHING", key)
    row = await conn.fetchrow(f"SELECT * FROM {table} WHERE {key_col} = $1 FOR UPDATE", key)
    assert row is not None
    return row


async def _write(
    conn: Conn,
    table: str,
    key_col: str,
    key: str,
    values: dict[str, Any],
    versions: dict[str, str],
    env: Envelope,
) -> None:
    cols = list(values)
    sets = ", ".join(f"{col} = ${i}" for i, col in enumerate(cols, start=5))
    await conn.execute(
        f"""UPDATE {table} SET {sets}{"," if sets else ""}
               field_versions = $2,
               last_msg_id = CASE WHEN $3 > version THEN $4 ELSE last_msg_id END,
               version = GREATEST(version, $3), updated_at = now()
             WHERE {key_col} = $1""",
        key,
        versions,
        env.version,
        env.msg_id,
        *values.values(),
    )


def _mark_stale(row: asyncpg.Record, env: Envelope, entity: str, outcome: Outcome) -> None:
    if row["version"] > env.version:
        outcome.stale_for.append(entity)


async def _apply_patient(conn: Conn, plan: Plan, env: Envelope, outcome: Outcome) -> bool:
    assert plan.patient_key is not None
    row = await _lock_row(conn, "patients", "patient_key", plan.patient_key)
    _mark_stale(row, env, "patient", outcome)
    versions: dict[str, str] = dict(row["field_versions"])
    won = take(plan.patient, versions, env.version)
    if not won:
        return False
    values: dict[str, Any] = {PATIENT_COLUMNS[name]: value for name, value in won.items()}
    if "hkid" in won:
        values["hkid"] = normalise_hkid(won["hkid"])
        values["hkid_valid"] = hkid_valid(values["hkid"])
    if "gender" in won:
        values["gender"] = normalise_gender(won["gender"]) or "U"
    if "dob" in won:
        dob: date | None = parse_dob(won["dob"])
        values["dob"] = dob
    versions.update(dict.fromkeys(won, env.version))
    await _write(conn, "patients", "patient_key", plan.patient_key, values, versions, env)
    return True


def _study_at(raw_date: str | None, raw_time: str | None) -> datetime | None:
    parsed = parse_dotnet(raw_date) if raw_date else None
    if parsed is None:
        return None
    return to_instant(parsed, parse_study_time(raw_time))


async def _apply_order(conn: Conn, plan: Plan, env: Envelope, outcome: Outcome) -> bool:
    assert plan.accession_no is not None
    row = await _lock_row(conn, "orders", "accession_no", plan.accession_no)
    _mark_stale(row, env, "order", outcome)
    versions: dict[str, str] = dict(row["field_versions"])
    won = take(plan.order, versions, env.version)
    if not won:
        return False
    services = won.pop("services", None)
    values: dict[str, Any] = {ORDER_COLUMNS[name]: value for name, value in won.items()}
    if "studyDate" in won or "studyTime" in won:
        values["study_at"] = _study_at(
            won.get("studyDate", row["study_date_raw"]), won.get("studyTime", row["study_time"])
        )
    if services is not None:
        await _replace_services(conn, plan.accession_no, services)
        won["services"] = services
    versions.update(dict.fromkeys(won, env.version))
    await _write(conn, "orders", "accession_no", plan.accession_no, values, versions, env)
    return True


async def _replace_services(conn: Conn, accession_no: str, services: list[dict[str, Any]]) -> None:
    await conn.execute("DELETE FROM order_services WHERE accession_no = $1", accession_no)
    if not services:
        return
    await conn.execute(
        """INSERT INTO order_services
               (accession_no, line_no, study_desc, bodypart, no_of_images, warning_time)
           SELECT $1, n, d, b, i, w
             FROM unnest($2::int[], $3::text[], $4::text[], $5::int[], $6::int[])
                  AS t(n, d, b, i, w)""",
        accession_no,
        list(range(len(services))),
        [s["studyDesc"] for s in services],
        [s["bodypart"] for s in services],
        [s["noOfImages"] for s in services],
        [s["warningTime"] for s in services],
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
