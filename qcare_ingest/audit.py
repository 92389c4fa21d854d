"""The audit trail of reads of personal data (issue 14; PDPO DPP4, ASVS V7).

Every view that shows personal data whole calls `record()` before it answers: a row in
the append-only `audit_log` table and a log line, both naming who (the API key's name, or
the CLI's user), what (an accessionNo or msg_id, never the personal data itself), when and
from where. A view whose audit row cannot be written does not show the data.
"""

from __future__ import annotations

import getpass
import logging
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from .textsafe import safe_text

log = logging.getLogger(__name__)

ORDER_READ = "order_read"
DLQ_REVEAL = "dlq_reveal"
ANONYMOUS = "anonymous"  # the gateway without keys (loopback development only)


@dataclass(frozen=True)
class Entry:
    id: int
    at: datetime
    who: str
    action: str
    subject: str
    client: str | None
    outcome: str


async def record(
    conn: asyncpg.Connection | PoolConnectionProxy[Any] | asyncpg.Pool,
    *,
    who: str,
    action: str,
    subject: str,
    client: str | None,
    outcome: str,
) -> None:
    """Append one row and log it; raises if the row cannot be written (then show nothing)."""
    await conn.execute(  # no RETURNING: the services' roles may insert rows, never read them
        """INSERT INTO audit_log (who, action, subject, client, outcome)
           VALUES ($1, $2, $3, $4, $5)""",
        who,
        action,
        subject,
        client,
        outcome,
    )
    log.info(
        "personal data read",
        extra={"action": "audit", "audit_action": action, "who": who, "subject": subject,
               "client": client, "outcome": outcome},
    )  # fmt: skip


def cli_user(as_name: str | None) -> tuple[str, str]:
    """(who, from where) for the CLI: `--as NAME` or the OS user; the place always names
    the OS user and host, so `--as` cannot hide who ran the command."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        user = "uid?"
    return (as_name or user), f"cli:{user}@{socket.gethostname()}"


async def entries(
    conn: asyncpg.Connection, since: datetime | None, key: str | None, limit: int
) -> list[Entry]:
    rows = await conn.fetch(
        """SELECT id, at, who, action, subject, client, outcome FROM audit_log
            WHERE ($1::timestamptz IS NULL OR at >= $1) AND ($2::text IS NULL OR who = $2)
            ORDER BY at, id LIMIT $3""",
        since,
        key,
        limit,
    )
    return [Entry(**dict(r)) for r in rows]


def as_dict(entry: Entry) -> dict[str, Any]:
    return {**entry.__dict__, "at": entry.at.isoformat()}


_UNITS = {"d": 86400, "h": 3600, "m": 60}


def parse_since(text: str, now: datetime) -> datetime:
    """`7d`, `12h`, `30m` ago, or an ISO 8601 date or time (no offset: UTC)."""
    text = text.strip()
    if text[-1:] in _UNITS and text[:-1].isdigit():
        return now - timedelta(seconds=int(text[:-1]) * _UNITS[text[-1]])
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


async def run(database_url: str, since: datetime | None, key: str | None, limit: int,
              out: TextIO) -> int:  # fmt: skip
    conn = await asyncpg.connect(database_url)
    try:
        found = await entries(conn, since, key, limit)
    finally:
        await conn.close()
    out.write(f"{'at':<32} {'who':<20} {'action':<12} {'outcome':<9} {'subject':<30} client\n")
    for e in found:
        out.write(
            f"{e.at.isoformat():<32} {safe_text(e.who, 64):<20} {e.action:<12} {e.outcome:<9} "
            f"{safe_text(e.subject, 128):<30} {safe_text(e.client or '-', 128)}\n"
        )
    return 0
