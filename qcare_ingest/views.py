"""Read models for GET /messages/{msg_id} and GET /orders/{accessionNo} (SPEC §1)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import asyncpg

from .dates import HONG_KONG, parse_dotnet, parse_study_time, stored_instant, to_instant
from .fields import BY_NAME, ORDER_DERIVED, PATIENT_DERIVED, SERVICE_FIELDS, registers


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


# the order with its patient's columns (prefixed p_: the two tables may share a name)
_PATIENT_READ = (
    *(f.column for f in registers("patient") if f.column is not None),
    *(d.column for d in PATIENT_DERIVED),
)
_ORDER = f"""
SELECT o.*, {", ".join(f"p.{c} AS p_{c}" for c in _PATIENT_READ)}
  FROM orders o LEFT JOIN patients p USING (patient_key)
 WHERE o.accession_no = $1
"""
_LINES = f"""
SELECT {", ".join(f.column for f in SERVICE_FIELDS if f.column is not None)}
  FROM order_services WHERE accession_no = $1 ORDER BY line_no
"""
_STUDY_TIME = BY_NAME["studyTime"].column or ""


def _plain(value: Any) -> Any:
    """A column's value as JSON holds it: dates and instants in ISO 8601 (PostgreSQL's
    ±infinity, which asyncpg reads as a naive datetime, as null: no instant)."""
    if isinstance(value, datetime):
        shown = stored_instant(value)
        return shown.isoformat() if shown is not None else None
    return value.isoformat() if isinstance(value, date) else value


async def order_view(conn: asyncpg.Connection, accession_no: str) -> dict[str, Any] | None:
    """The order in the DTO's shape (fields.py's canonical names, patient then order
    fields), what was derived from it under `normalized`."""
    row = await conn.fetchrow(_ORDER, accession_no)
    if row is None:
        return None
    view: dict[str, Any] = {
        "accessionNo": row["accession_no"],
        "msg_id": row["last_msg_id"],
        "updated_at": _iso(row["updated_at"]),
    }
    for f in registers("patient"):
        view[f.name] = row[f"p_{f.column}"]
    for f in registers("order"):
        if f.column is None:  # services: lines of their own
            view[f.name] = await _services(conn, accession_no, row["field_versions"])
        elif f.name == "studyDate":
            view[f.name] = study_date_iso(row[f.column], row[_STUDY_TIME])
        else:
            view[f.name] = row[f.column]
    view["normalized"] = {
        **{d.read: _plain(row[f"p_{d.column}"]) for d in PATIENT_DERIVED},
        **{d.read: _plain(row[d.column]) for d in ORDER_DERIVED},
    }
    return view


async def _services(
    conn: asyncpg.Connection, accession_no: str, versions: Any
) -> list[dict[str, Any]] | None:
    """The service lines, or None if no update ever sent any."""
    if "services" not in versions:
        return None
    lines = await conn.fetch(_LINES, accession_no)
    columns = [(f.name, f.column) for f in SERVICE_FIELDS if f.column is not None]
    return [{name: line[column] for name, column in columns} for line in lines]
