"""The migrations and fields.py describe the same columns (issue 16): a column added to a
migration but not to the table, or to the table but not to a migration, or of another
type, fails here. Read from the test database the migrations made."""

from __future__ import annotations

import asyncpg

from qcare_ingest.fields import ORDER_DERIVED, PATIENT_DERIVED, SERVICE_FIELDS, registers

# what every merged entity keeps besides its fields (store.py's bookkeeping)
ENTITY = {
    "field_versions": "jsonb",
    "version": "text",
    "last_msg_id": "text",
    "created_at": "timestamptz",
    "updated_at": "timestamptz",
}


def expected() -> dict[str, dict[str, str]]:
    """table -> column -> SQL type, as fields.py describes them."""
    patients = {
        "patient_key": "text",
        **{f.column: f.sql_type for f in registers("patient") if f.column is not None},
        **{d.column: d.sql_type for d in PATIENT_DERIVED},
        **ENTITY,
    }
    orders = {
        "accession_no": "text",
        "patient_key": "text",
        **{f.column: f.sql_type for f in registers("order") if f.column is not None},
        **{d.column: d.sql_type for d in ORDER_DERIVED},
        **ENTITY,
    }
    lines = {
        "accession_no": "text",
        "line_no": "integer",
        **{f.column: f.sql_type for f in SERVICE_FIELDS if f.column is not None},
    }
    return {"patients": patients, "orders": orders, "order_services": lines}


async def test_the_tables_columns_are_the_field_tables(db: asyncpg.Pool) -> None:
    want = expected()
    async with db.acquire() as conn:
        rows = await conn.fetch(
            """SELECT c.relname AS tab, a.attname AS col, format_type(a.atttypid, a.atttypmod)
                      AS type
                 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY($1::text[])
                  AND a.attnum > 0 AND NOT a.attisdropped""",
            list(want),
        )
        # the table's type names as PostgreSQL spells them (timestamptz: "timestamp with …")
        spelled: dict[str, str] = {}
        for columns in want.values():
            for sql_type in columns.values():
                if sql_type not in spelled:
                    spelled[sql_type] = await conn.fetchval("SELECT $1::regtype::text", sql_type)
    have: dict[str, dict[str, str]] = {table: {} for table in want}
    for row in rows:
        have[row["tab"]][row["col"]] = row["type"]
    for table, columns in want.items():
        assert have[table] == {c: spelled[t] for c, t in columns.items()}, table
