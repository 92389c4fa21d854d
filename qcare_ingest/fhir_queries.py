"""The FHIR views' reads: orders with their service lines, patients; by id and by search.

Run with the gateway's role (SELECT on patients, orders, order_services). A search counts
and reads its page in one read-only REPEATABLE READ transaction, so `total` and the page
agree; pages are in a stable order (accession number, patient key), `_offset` pages on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeAlias, TypeVar

import asyncpg

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

from .fhir_search import DateRange, Paging, PatientSearch, RequestSearch, Token
from .identifiers import (
    ACCESSION_SYSTEM,
    CHIT_SYSTEM,
    HKID_SYSTEM,
    PASSPORT_SYSTEM,
    IdRef,
    normalise_passno,
)
from .normalize import normalise_hkid

Row = dict[str, Any]
Conn: TypeAlias = "asyncpg.Connection | PoolConnectionProxy[Any]"
T = TypeVar("T")
# patient_key / accession -> the digest an over-long id carries (identifiers.id_digest)
_DIGEST = "left(encode(sha256(convert_to({}, 'UTF8')), 'hex'), 48)"
# patients.passno as patient_key keys it (normalise_passno); 0006_fhir.sql indexes it
PASSNO_NORMALISED = "upper(btrim(p.passno, E' \\t\\n\\r\\f\\v'))"


@dataclass(frozen=True)
class Order:
    row: Row  # the orders row
    services: list[Row] | None  # its service lines; None: none were ever sent


@dataclass(frozen=True)
class Page(Generic[T]):
    total: int
    items: list[T]


class _Where:
    """AND of ORs, with asyncpg's numbered parameters."""

    def __init__(self) -> None:
        self.args: list[Any] = []
        self.conditions: list[str] = []

    def arg(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"

    def any_of(self, alternatives: Sequence[str]) -> None:
        self.conditions.append("(" + " OR ".join(alternatives or ["false"]) + ")")

    def sql(self) -> str:
        return " AND ".join(self.conditions) or "true"


def _ref(where: _Where, column: str, ref: IdRef | None) -> str:
    if ref is None:
        return "false"
    if ref.value is not None:
        return f"{column} = {where.arg(ref.value)}"
    return f"{_DIGEST.format(column)} = {where.arg(ref.digest)}"


def _date(where: _Where, column: str, r: DateRange) -> str:
    """A point in time against the range [start, end) the value's precision spans."""
    if r.prefix in ("eq", "ne"):
        inside = f"({column} >= {where.arg(r.start)} AND {column} < {where.arg(r.end)})"
        return inside if r.prefix == "eq" else f"NOT {inside}"
    if r.prefix in ("lt", "eb"):
        return f"{column} < {where.arg(r.start)}"
    if r.prefix == "le":
        return f"{column} < {where.arg(r.end)}"
    if r.prefix in ("gt", "sa"):
        return f"{column} >= {where.arg(r.end)}"
    return f"{column} >= {where.arg(r.start)}"  # ge


def _order_identifier(where: _Where, tok: Token) -> str:
    if tok.system is None:
        value = where.arg(tok.value)
        return f"(o.accession_no = {value} OR o.chitno = {value})"
    if tok.system == ACCESSION_SYSTEM:
        return "true" if tok.value is None else f"o.accession_no = {where.arg(tok.value)}"
    if tok.system == CHIT_SYSTEM:
        if tok.value is None:
            return "coalesce(btrim(o.chitno), '') <> ''"
        return f"o.chitno = {where.arg(tok.value)}"
    return "false"  # no system ("|value") or one we do not issue


def _order_where(search: RequestSearch) -> _Where:
    where = _Where()
    for refs in search.ids:
        where.any_of([_ref(where, "o.accession_no", r) for r in refs])
    for tokens in search.identifiers:
        where.any_of([_order_identifier(where, t) for t in tokens])
    for refs in search.patients:
        where.any_of([_ref(where, "o.patient_key", r) for r in refs])
    for ranges in search.authored:
        where.any_of([_date(where, "o.created_at", r) for r in ranges])
    for ranges in search.occurrence:
        where.any_of([_date(where, "o.study_at", r) for r in ranges])
    for codes in search.statuses:
        where.any_of(["true" if "active" in codes else "false"])  # every order is active
    return where


_ORDER_COLUMNS = "o.*, o.field_versions ? 'services' AS has_services"


async def _with_services(conn: Conn, rows: Sequence[asyncpg.Record]) -> list[Order]:
    accessions = [r["accession_no"] for r in rows if r["has_services"]]
    lines: dict[str, list[Row]] = {a: [] for a in accessions}
    if accessions:
        for line in await conn.fetch(
            """SELECT accession_no, line_no, study_desc, bodypart, no_of_images, warning_time
                 FROM order_services WHERE accession_no = ANY($1::text[])
                ORDER BY accession_no, line_no""",
            accessions,
        ):
            lines[line["accession_no"]].append(dict(line))
    return [Order(dict(r), lines[r["accession_no"]] if r["has_services"] else None) for r in rows]


async def order_by_ref(conn: Conn, ref: IdRef) -> Order | None:
    """The order a ServiceRequest id names, with its service lines."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        where = _Where()
        condition = _ref(where, "o.accession_no", ref)
        row = await conn.fetchrow(
            f"SELECT {_ORDER_COLUMNS} FROM orders o WHERE {condition} LIMIT 1", *where.args
        )
        return (await _with_services(conn, [row]))[0] if row is not None else None


async def _page(
    conn: Conn,
    table: str,
    columns: str,
    where: _Where,
    order_by: str,
    paging: Paging,
    build: Callable[[Sequence[asyncpg.Record]], Awaitable[list[T]]],
) -> Page[T]:
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        total = await conn.fetchval(
            f"SELECT count(*) FROM {table} WHERE {where.sql()}", *where.args
        )
        rows: list[asyncpg.Record] = []
        if paging.count > 0 and paging.offset < total:
            limit, offset = where.arg(paging.count), where.arg(paging.offset)
            rows = await conn.fetch(
                f"SELECT {columns} FROM {table} WHERE {where.sql()} "
                f"ORDER BY {order_by} LIMIT {limit} OFFSET {offset}",
                *where.args,
            )
        items = await build(rows)
    return Page(total, items)


async def search_orders(conn: Conn, search: RequestSearch) -> Page[Order]:
    async def build(rows: Sequence[asyncpg.Record]) -> list[Order]:
        return await _with_services(conn, rows)

    return await _page(
        conn, "orders o", _ORDER_COLUMNS, _order_where(search), "o.accession_no", search.paging,
        build,
    )  # fmt: skip


def _patient_identifier(where: _Where, tok: Token) -> str:
    alternatives = []
    if tok.system in (None, HKID_SYSTEM):
        hkid = normalise_hkid(tok.value) if tok.value is not None else None
        if hkid is None:
            alternatives.append("coalesce(p.hkid, '') <> ''")
        elif hkid:
            alternatives.append(f"p.hkid = {where.arg(hkid)}")
    if tok.system in (None, PASSPORT_SYSTEM):
        passno = normalise_passno(tok.value) if tok.value is not None else None
        if passno is None:
            alternatives.append(f"{PASSNO_NORMALISED} <> ''")
        elif passno:
            alternatives.append(f"{PASSNO_NORMALISED} = {where.arg(passno)}")
    return " OR ".join(alternatives) or "false"


def _patient_where(search: PatientSearch) -> _Where:
    where = _Where()
    for refs in search.ids:
        where.any_of([_ref(where, "p.patient_key", r) for r in refs])
    for tokens in search.identifiers:
        where.any_of([_patient_identifier(where, t) for t in tokens])
    return where


async def patient_by_ref(conn: Conn, ref: IdRef) -> Row | None:
    where = _Where()
    condition = _ref(where, "p.patient_key", ref)
    row = await conn.fetchrow(f"SELECT p.* FROM patients p WHERE {condition} LIMIT 1", *where.args)
    return dict(row) if row is not None else None


async def search_patients(conn: Conn, search: PatientSearch) -> Page[Row]:
    async def build(rows: Sequence[asyncpg.Record]) -> list[Row]:
        return [dict(r) for r in rows]

    return await _page(
        conn, "patients p", "p.*", _patient_where(search), "p.patient_key", search.paging, build
    )
