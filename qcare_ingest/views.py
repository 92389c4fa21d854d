"""Read models for GET /messages/{msg_id} and GET /orders/{accessionNo} (SPEC §1)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from .dates import HONG_KONG, parse_dotnet, parse_study_time, to_instant


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


async def message_view(conn: asyncpg.Connection, msg_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        """SELECT msg_id, status, received_at, processed_at, accession_no, warnings, stale_for,
                  error, (SELECT count(*) FROM inbox_conflicts c WHERE c.msg_id = i.msg_id)
                  AS conflicts
             FROM inbox i WHERE msg_id = $1""",
        msg_id,
    )
    if row is None:
        return None
    error = row["error"]
    if row["conflicts"] and error is None:
        error = (
            f"{row['conflicts']} later message(s) reused this msg_id with different content: "
            "not applied, dead-lettered (conflict)"
        )
    return {
        "msg_id": row["msg_id"],
        "status": row["status"],
        "received_at": _iso(row["received_at"]),
        "processed_at": _iso(row["processed_at"]),
        "accessionNo": row["accession_no"],
        "warnings": row["warnings"],
        "stale_for": row["stale_for"],
        "error": error,
        "conflicts": row["conflicts"],
    }


def study_date_iso(raw: str | None, raw_time: str | None) -> str | None:
    """ISO 8601 with offset, at the precision received (no offset means +08:00)."""
    if raw is None:
        return None
    parsed = parse_dotnet(raw)
    if parsed is None:
        return raw
    instant = to_instant(parsed, parse_study_time(raw_time))
    if instant is None:
        return raw  # no instant can hold it (.NET's extremes): the text as sent
    if parsed.value.tzinfo is not None and "/Date(" in raw:
        instant = instant.astimezone(HONG_KONG)
    frac = ""
    text = raw.strip()
    dot = text.find(".")
    if dot != -1 and not parsed.date_only and "/Date(" not in raw:
        digits = len(text[dot + 1 :]) - len(text[dot + 1 :].lstrip("0123456789"))
        frac = "." + text[dot + 1 : dot + 1 + digits]
    elif "/Date(" in raw and instant.microsecond:
        frac = f".{instant.microsecond // 1000:03d}"
    base = instant.replace(microsecond=0).isoformat()
    return base[:19] + frac + base[19:]


_ORDER = """
SELECT o.*, p.hkid_raw, p.hkid AS hkid_norm, p.hkid_valid, p.passno, p.name, p.gender_raw,
       p.gender, p.dob, p.dob_raw, p.address
  FROM orders o LEFT JOIN patients p USING (patient_key)
 WHERE o.accession_no = $1
"""


async def order_view(conn: asyncpg.Connection, accession_no: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(_ORDER, accession_no)
    if row is None:
        return None
    lines = await conn.fetch(
        """SELECT study_desc, bodypart, no_of_images, warning_time FROM order_services
            WHERE accession_no = $1 ORDER BY line_no""",
        accession_no,
    )
    has_services = "services" in row["field_versions"]
    return {
        "accessionNo": row["accession_no"],
        "msg_id": row["last_msg_id"],
        "updated_at": _iso(row["updated_at"]),
        "name": row["name"],
        "hkid": row["hkid_raw"],
        "passno": row["passno"],
        "gender": row["gender_raw"],
        "dob": row["dob_raw"],
        "address": row["address"],
        "studyDate": study_date_iso(row["study_date_raw"], row["study_time"]),
        "studyTime": row["study_time"],
        "location": row["location"],
        "chitno": row["chitno"],
        "plan_type": row["plan_type"],
        "ref_doctor": row["ref_doctor"],
        "ref_clinic_fullname": row["ref_clinic_fullname"],
        "csCode": row["cs_code"],
        "modality": row["modality"],
        "refClinicFullname": row["ref_clinic_fullname2"],
        "examClinicFullName": row["exam_clinic_fullname"],
        "services": [
            {
                "studyDesc": line["study_desc"],
                "bodypart": line["bodypart"],
                "noOfImages": line["no_of_images"],
                "warningTime": line["warning_time"],
            }
            for line in lines
        ]
        if has_services
        else None,
        "normalized": {
            "hkid": row["hkid_norm"],
            "hkidValid": row["hkid_valid"],
            "gender": row["gender"],
            "dob": row["dob"].isoformat() if row["dob"] is not None else None,
            "studyAt": _iso(row["study_at"]),
        },
    }
