"""The worklist's one read: the orders a query may match, with their patients and the
service lines' descriptions, in one statement.

The selective keys go into SQL (the scheduled date range, the modality, the accession
number, the patient id, the words of a patient name); what SQL returns is a superset of
the matches, and query.matches() decides on the item as it would be returned. Orders a
worklist cannot carry (items.servable: an accession number too long for SH) are dropped
in Python, not in SQL: three text filters there make the planner think a day holds a
dozen orders, and it then sorts the whole day before the cursor's first row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import asyncpg

from ..dates import HONG_KONG
from ..fields import BY_NAME, SERVICE_BY_NAME
from .matching import date_range, has_wildcard, like_pattern, literal_runs
from .query import Query


def _col(name: str) -> str:
    column = BY_NAME[name].column
    assert column is not None
    return column


_DESC = SERVICE_BY_NAME["studyDesc"].column
# one row per order; column names are what items.item() reads
SELECT = f"""
SELECT o.accession_no, o.study_at,
       o.{_col("location")} AS location, o.{_col("ref_doctor")} AS ref_doctor,
       o.{_col("csCode")} AS cs_code, o.{_col("modality")} AS modality,
       o.{_col("examClinicFullName")} AS exam_clinic_fullname,
       p.{_col("name")} AS name, p.hkid, p.{_col("passno")} AS passno, p.gender, p.dob
  FROM orders o LEFT JOIN patients p ON p.patient_key = o.patient_key"""
ORDER = " ORDER BY o.study_at NULLS LAST, o.accession_no"
# The descriptions outside the sorted selection: worked out row by row as the cursor is
# read, not for the whole day before its first row.
WRAP = f"""
SELECT w.*,
       (SELECT string_agg(btrim(s.{_DESC}), '; ' ORDER BY s.line_no)
          FROM order_services s
         WHERE s.accession_no = w.accession_no AND btrim(s.{_DESC}) <> '') AS descriptions
  FROM ({{}}) w
 ORDER BY w.study_at NULLS LAST, w.accession_no"""
# the expression migration 0005's index is on: the Modality an item shows, when it is CS
MODALITY = "upper(btrim(o.modality))"


@dataclass
class Statement:
    conditions: list[str] = field(default_factory=list)
    args: list[Any] = field(default_factory=list)

    def arg(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"

    @property
    def sql(self) -> str:
        where = "\n WHERE " + "\n   AND ".join(self.conditions) if self.conditions else ""
        return WRAP.format(SELECT + where + ORDER)


def _hk_midnight(day: date, later: int = 0) -> datetime | None:
    """Hong Kong midnight `later` days after `day`; None past the calendar's ends (DA
    00010101 and 99991231 are valid keys, meaning "no limit"; neither midnight is a
    datetime asyncpg can send), so SQL leaves that side open and matching decides."""
    try:
        at = datetime.combine(day, time(0), HONG_KONG) + timedelta(days=later)
        at.astimezone(UTC)
    except OverflowError:
        return None
    return at


def statement(query: Query) -> Statement:
    st = Statement()
    start = query.key("ScheduledProcedureStepStartDate")
    if start is not None and not start.universal:
        days = date_range(start.value)
        if days.low is not None and (start_at := _hk_midnight(days.low)) is not None:
            st.conditions.append(f"o.study_at >= {st.arg(start_at)}")
        if days.high is not None and (end := _hk_midnight(days.high, 1)) is not None:
            st.conditions.append(f"o.study_at < {st.arg(end)}")
    modality = query.key("Modality")
    if modality is not None and not modality.universal:
        value = modality.value.strip(" ")
        # a pattern is matched on the item's cleaned value; so is a `_`, which stands for
        # any character CS cannot hold ("x-ray" shows as X_RAY)
        if not has_wildcard(value) and "_" not in value:
            st.conditions.append(f"{MODALITY} = {st.arg(value)}")
    accession = query.key("AccessionNumber")
    if accession is not None and not accession.universal:
        value = accession.value.strip(" ")
        if has_wildcard(value):
            st.conditions.append(f"o.accession_no LIKE {st.arg(like_pattern(value))}")
        else:
            st.conditions.append(f"o.accession_no = {st.arg(value)}")
    patient_id = query.key("PatientID")
    if patient_id is not None and not patient_id.universal:
        value = patient_id.value.strip(" ")
        if not has_wildcard(value):  # the HKID, else the passport (patient_key PASSNO:...)
            ref = st.arg(value)
            st.conditions.append(f"(p.hkid = {ref} OR p.patient_key = 'PASSNO:' || {ref})")
    name = query.key("PatientName")
    if name is not None and not name.universal:
        for run in literal_runs(name.value)[:8]:
            st.conditions.append(f"p.{_col('name')} ILIKE {st.arg('%' + like_pattern(run) + '%')}")
    return st


async def fetch(pool: asyncpg.Pool, query: Query, timeout: float) -> list[asyncpg.Record]:
    """Every row at once (the bench's read-only measure; the SCP streams, `Cursor`)."""
    st = statement(query)
    async with pool.acquire(timeout=timeout) as conn:
        rows: list[asyncpg.Record] = await conn.fetch(st.sql, *st.args, timeout=timeout)
    return rows


class Cursor:
    """The rows of one query in batches, from a server-side cursor in a read-only
    transaction: the first items go out while the rest are still to be read, memory stays
    bounded whatever a day holds, and every batch comes from the same snapshot."""

    def __init__(self, pool: asyncpg.Pool, conn: asyncpg.pool.PoolConnectionProxy) -> None:
        self._pool = pool
        self._conn = conn
        self._transaction = conn.transaction(readonly=True)
        self._cursor: asyncpg.cursor.Cursor[asyncpg.Record] | None = None

    @classmethod
    async def open(cls, pool: asyncpg.Pool, query: Query, timeout: float) -> Cursor:
        st = statement(query)
        conn = await pool.acquire(timeout=timeout)
        cursor = cls(pool, conn)
        try:
            await cursor._transaction.start()
            cursor._cursor = await conn.cursor(st.sql, *st.args, timeout=timeout)
        except BaseException:
            await cursor.close()
            raise
        return cursor

    async def fetch(self, count: int, timeout: float) -> list[asyncpg.Record]:
        assert self._cursor is not None
        return await self._cursor.fetch(count, timeout=timeout)

    async def close(self) -> None:
        try:
            if self._conn.is_in_transaction():
                await self._transaction.rollback()
        finally:
            await self._pool.release(self._conn)
