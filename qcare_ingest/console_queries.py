"""The console's reads (issue 15): message search, one message with its journal row, one
order with its patient, service lines and the provenance of every field.

Plain data out (dicts and dataclasses); masking and rendering are the console's job.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from .fields import ORDER_DERIVED, SERVICE_FIELDS, registers
from .normalize import normalise_hkid

Conn = asyncpg.Connection | PoolConnectionProxy

PAGE_SIZE = 50
MAX_PAGE = 2000  # offset paging: deeper than this, narrow the search instead
STATUSES = ("applied", "stale", "rejected", "dead_lettered")


@dataclass(frozen=True)
class Search:
    """What the operator typed: `q` is a msg_id, an accession number, an HKID or a passport
    number (each tried exactly; HKID and passport normalised as the worker does)."""

    q: str = ""
    status: str | None = None
    since: datetime | None = None  # received at or after
    until: datetime | None = None  # received before
    page: int = 1


def patient_keys(q: str) -> list[str]:
    """The patient keys `q` may be: `HKID:<normalised>` and `PASSNO:<upper>`."""
    keys = []
    hkid = normalise_hkid(q)
    if hkid:
        keys.append("HKID:" + hkid)
    passno = q.strip().upper()
    if passno:
        keys.append("PASSNO:" + passno)
    return keys


_SEARCH = """
SELECT msg_id, received_at, processed_at, status, accession_no, patient_key, error,
       jsonb_array_length(COALESCE(warnings, '[]'::jsonb)) AS warning_count
  FROM inbox
 WHERE ($1::text IS NULL OR msg_id = $1 OR accession_no = $1 OR patient_key = ANY($2::text[]))
   AND ($3::text IS NULL OR status = $3)
   AND ($4::timestamptz IS NULL OR received_at >= $4)
   AND ($5::timestamptz IS NULL OR received_at < $5)
 ORDER BY received_at DESC, msg_id DESC
 LIMIT $6 OFFSET $7
"""


async def search(conn: Conn, s: Search) -> tuple[list[dict[str, Any]], bool]:
    """One page of matching inbox rows, newest first, and whether another page follows."""
    q = s.q.strip()
    if "\x00" in q:  # PostgreSQL text holds no NUL: nothing can match
        return [], False
    page = min(max(s.page, 1), MAX_PAGE)
    rows = await conn.fetch(
        _SEARCH,
        q or None,
        patient_keys(q),
        s.status,
        s.since,
        s.until,
        PAGE_SIZE + 1,
        (page - 1) * PAGE_SIZE,
    )
    found = [dict(r) for r in rows[:PAGE_SIZE]]
    return found, len(rows) > PAGE_SIZE


def by_identifier(q: str, rows: list[dict[str, Any]]) -> bool:
    """The search may have answered "is this person a patient, with which messages": `q`
    matched no row, or matched a row by its patient key (not by msg_id or accession)."""
    q = q.strip()
    if not q:
        return False
    keys = set(patient_keys(q))
    return not rows or any(row["patient_key"] in keys for row in rows)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def message(conn: Conn, msg_id: str) -> dict[str, Any] | None:
    """The inbox row with its conflicts count, and `journal` (None: no journal row)."""
    if "\x00" in msg_id:
        return None
    row = await conn.fetchrow(
        """SELECT i.*, (SELECT count(*) FROM inbox_conflicts c WHERE c.msg_id = i.msg_id)
                  AS conflicts
             FROM inbox i WHERE i.msg_id = $1""",
        msg_id,
    )
    if row is None:
        return None
    out = dict(row)
    out["warnings"] = _json(out.get("warnings")) or []
    out["stale_for"] = _json(out.get("stale_for")) or []
    out["journal"] = out["journal_error"] = None
    try:
        async with conn.transaction():  # a savepoint when the caller's transaction is open
            journal = await conn.fetchrow(
                """SELECT received_at, content_type, client, body, as_received, dto
                     FROM journal WHERE msg_id = $1""",
                msg_id,
            )
    except (asyncpg.InsufficientPrivilegeError, asyncpg.UndefinedTableError):
        out["journal_error"] = "The journal cannot be read (no such table, or no permission)."
        return out
    out["journal"] = dict(journal) if journal is not None else None
    return out


@dataclass(frozen=True)
class Provenance:
    """Which message set a field, and when (its field_versions entry)."""

    msg_id: str
    at: datetime | None


def provenance(version: str | None) -> Provenance | None:
    """`"<µs since epoch, 20 digits>|<msg_id>"` -> Provenance; None if absent or unreadable."""
    if not isinstance(version, str):
        return None
    micros, sep, msg_id = version.partition("|")
    if not sep or not msg_id:
        return None
    try:
        seconds, fraction = divmod(int(micros), 1_000_000)
        at = datetime.fromtimestamp(seconds, UTC).replace(microsecond=fraction)
    except (ValueError, OverflowError, OSError):
        at = None
    return Provenance(msg_id, at)


# the order's and its patient's columns as fields.py lists them (the console shows them by
# store.ORDER_COLUMNS / PATIENT_COLUMNS); the patient's own bookkeeping prefixed p_
_ORDER_COLUMNS = (
    "accession_no",
    "patient_key",
    *(f.column for f in registers("order") if f.column is not None),
    *(d.column for d in ORDER_DERIVED),
    "field_versions",
    "version",
    "last_msg_id",
    "updated_at",
)
_PATIENT_COLUMNS = tuple(f.column for f in registers("patient") if f.column is not None)
_ORDER = f"""
SELECT {", ".join(f"o.{c}" for c in _ORDER_COLUMNS)},
       p.patient_key AS p_key, {", ".join(f"p.{c}" for c in _PATIENT_COLUMNS)},
       p.field_versions AS p_field_versions, p.last_msg_id AS p_last_msg_id,
       p.updated_at AS p_updated_at
  FROM orders o LEFT JOIN patients p USING (patient_key)
 WHERE o.accession_no = $1
"""
_LINES = f"""
SELECT line_no, {", ".join(f.column for f in SERVICE_FIELDS if f.column is not None)}
  FROM order_services WHERE accession_no = $1 ORDER BY line_no
"""


async def order(conn: Conn, accession_no: str) -> dict[str, Any] | None:
    """The order row, its patient's (keys prefixed p_ where they clash), its service lines
    and the messages that named this accession number (newest first, at most a page)."""
    if "\x00" in accession_no:
        return None
    row = await conn.fetchrow(_ORDER, accession_no)
    if row is None:
        return None
    out = dict(row)
    out["field_versions"] = _json(out["field_versions"]) or {}
    out["p_field_versions"] = _json(out["p_field_versions"]) or {}
    lines = await conn.fetch(_LINES, accession_no)
    out["services"] = [dict(line) for line in lines]
    messages = await conn.fetch(
        """SELECT msg_id, received_at, status FROM inbox WHERE accession_no = $1
            ORDER BY received_at DESC, msg_id DESC LIMIT $2""",
        accession_no,
        PAGE_SIZE,
    )
    out["messages"] = [dict(m) for m in messages]
    return out
