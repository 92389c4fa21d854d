"""The console's dead-letter queue (issue 15): a bounded look, replay or purge of chosen
messages with an audit row for each, and what became of them afterwards.

Reading the dead-letter queue means holding its messages unacked (dlq.fetch_all's way:
basic.get, then the channel's close hands them back). Workers and the CLI do not see a
held message, so the console holds few and briefly: `peek` takes at most SCAN_CAP
messages and closes its channel as soon as they are described; `move` stops as soon as it
has found what it was asked for. Every message body is read through dlq.py (describe),
never here: its format is dlq.py's business.

Nothing moves without its audit rows: `move` writes them (through `before`) while the
messages are held, and closes the channel without acking anything if that fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from asyncpg.pool import PoolConnectionProxy

from . import audit, dlq
from .broker import connect
from .deadletter import H_ERROR_CLASS
from .textsafe import safe_text
from .topology import DLQ, open_channel

log = logging.getLogger(__name__)

LIST_CAP = 500  # rows the page lists
SCAN_CAP = 2000  # messages one look or one move holds at most
OUTCOME_IDS = 100  # msg_ids an outcome page follows (they travel in its URL)
ERROR_CLASS_SHOWN = 80
IDLE_S = 0.5  # a pause in deliveries that ends a look
GRACE_S = 0.05  # ... once the queue's ready count has come
STEP = 20  # messages a look takes per consumer (at most STEP x 4.5 MiB past HELD_BYTES)
HELD_BYTES = 32 * 1024 * 1024  # bodies a look holds, about

Action = Literal["replay", "purge"]
ACTIONS: tuple[Action, ...] = ("replay", "purge")
AUDIT_ACTIONS: dict[Action, str] = {"replay": "dlq_replay", "purge": "dlq_purge"}


class BrokerLink:
    """One RabbitMQ connection the gateway keeps for the console (dead letters, queue
    depths), opened on first use and again after a failure, at most every `cooldown`
    seconds: while RabbitMQ is away a page costs microseconds, not a connect timeout."""

    def __init__(
        self, url: str, ca_file: str | None, timeout: float = 3.0, cooldown: float = 2.0
    ) -> None:
        self.url = url
        self.ca_file = ca_file
        self.timeout = timeout
        self.cooldown = cooldown
        self._conn: AbstractConnection | None = None
        self._lock = asyncio.Lock()
        self._down_until = 0.0

    def usable(self) -> AbstractConnection | None:
        """The cached connection if it still looks open at every layer: a plain aio-pika
        connection the broker closed (a restart, a failover) can keep `is_closed` False
        while its transport is gone."""
        conn = self._conn
        if conn is None or conn.is_closed:
            return None
        connected = getattr(conn, "connected", None)
        if isinstance(connected, asyncio.Event) and not connected.is_set():
            return None
        transport = getattr(conn, "transport", None)
        underlay = getattr(transport, "connection", None)
        if transport is None or underlay is None or getattr(underlay, "is_closed", False):
            return None
        return conn

    async def connection(self) -> AbstractConnection:
        conn = self.usable()
        if conn is not None:
            return conn
        async with self._lock:
            conn = self.usable()
            if conn is not None:
                return conn
            await self.forget()
            if time.monotonic() < self._down_until:
                raise ConnectionError("RabbitMQ is unreachable (retrying shortly)")
            try:
                self._conn = await connect(self.url, self.timeout, ca_file=self.ca_file)
            except Exception as exc:
                self._down_until = time.monotonic() + self.cooldown
                raise ConnectionError(f"RabbitMQ is unreachable: {type(exc).__name__}") from exc
            return self._conn

    async def forget(self) -> None:
        """Drop the cached connection (closed quietly): the next use opens a new one."""
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), self.timeout)

    async def open(self, confirms: bool = True) -> AbstractChannel:
        """A new channel. Any failure to open one drops the cached connection and tries
        once more on a new connection: the broker may have closed the old one meanwhile."""
        for attempt in (1, 2):
            conn = await self.connection()
            try:
                async with asyncio.timeout(self.timeout):
                    if confirms:
                        return await open_channel(conn)
                    return await conn.channel()
            except Exception as exc:
                await self.forget()
                if attempt == 2:
                    raise ConnectionError(f"RabbitMQ is unreachable: {type(exc).__name__}") from exc
        raise AssertionError("unreachable")

    @contextlib.asynccontextmanager
    async def channel(self) -> AsyncIterator[AbstractChannel]:
        """A fresh confirm channel, closed on the way out whatever happens: the messages
        it holds unacked go back to their queue then. A failure while it was in use that
        closed it (or its connection) drops the connection too."""
        channel = await self.open()
        try:
            yield channel
        except BaseException:
            if channel.is_closed or self.usable() is None:
                await self.forget()
            raise
        finally:
            with contextlib.suppress(Exception):
                await channel.close()

    async def close(self) -> None:
        await self.forget()


@dataclass(frozen=True)
class Row:
    """One dead-lettered message as the page lists it (text made safe to show)."""

    msg_id: str  # as it is: the value a form sends back
    shown_id: str
    accession: str | None
    reason: str
    error_class: str
    attempts: int
    age: str
    failed_at: datetime | None


@dataclass(frozen=True)
class Listing:
    rows: list[Row]  # at most LIST_CAP, oldest first as the queue holds them
    matching: int  # messages examined that match the filter (rows are the first of them)
    examined: int  # messages looked at (at most SCAN_CAP)
    queued: int  # the queue's ready messages when the look began
    reasons: list[tuple[str, int]]  # every reason among those examined, with its count

    @property
    def unlisted(self) -> int:
        """Matching messages not listed, plus those not examined at all."""
        return self.matching - len(self.rows) + self.not_examined

    @property
    def not_examined(self) -> int:
        return max(self.queued - self.examined, 0)


def _header_text(headers: dict[str, Any], name: str) -> str:
    value = headers.get(name)
    if value is None:
        return "-"
    text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return safe_text(text, ERROR_CLASS_SHOWN)


def row_of(dead: dlq.Dead, now: datetime) -> Row:
    headers = dict(dead.message.headers or {})
    return Row(
        msg_id=dead.msg_id,
        shown_id=dlq.shown_id(dead.msg_id),
        accession=(
            safe_text(dead.accession, dlq.ACCESSION_SHOWN) if dead.accession is not None else None
        ),
        reason=safe_text(dead.reason, dlq.REASON_SHOWN),
        error_class=_header_text(headers, H_ERROR_CLASS),
        attempts=dead.attempts,
        age=dead.age(now),
        failed_at=dead.failed_at,
    )


async def _held(
    channel: AbstractChannel,
    cap: int,
    stop: Callable[[dlq.Dead], bool] | None = None,
    grace: float = GRACE_S,
) -> tuple[list[dlq.Dead], int, bool]:
    """Up to `cap` messages of the dead-letter queue, unacked (held until the channel
    closes), the queue's ready count before the first was taken, and whether the look saw
    everything it could (false: it stopped at `cap` or HELD_BYTES).

    Consumers in steps of at most STEP messages (a prefetch of the step, cancelled once it
    has come): basic.get, one round trip per message, took 1.8 ms each (a second for 600).
    A look ends at `cap`, when `stop` says enough, when HELD_BYTES of bodies are held (a
    body carries the request's bytes, up to 4 MiB: a count alone would let a look take
    gigabytes into the gateway), or when deliveries pause: for IDLE_S while fewer than the
    ready count have come, for `grace` after that (messages another channel just handed
    back can come a moment after the count was taken)."""
    queue = await channel.declare_queue(DLQ, passive=True)
    queued = int(queue.declaration_result.message_count or 0)
    out: list[dlq.Dead] = []
    held = 0
    ended = False
    arrived: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
    while len(out) < cap and held < HELD_BYTES:
        # the next step: what the budget left holds at the mean body size so far
        mean = held / len(out) if out else 0.0
        room = int((HELD_BYTES - held) / mean) if mean else STEP
        step = max(1, min(STEP, room, cap - len(out)))
        await channel.set_qos(prefetch_count=step)
        tag = await queue.consume(arrived.put, no_ack=False)
        ended = False
        try:
            for _ in range(step):
                wait = IDLE_S if len(out) < queued else grace
                try:
                    message = await asyncio.wait_for(arrived.get(), wait)
                except TimeoutError:
                    ended = True
                    break
                held += len(message.body)
                out.append(dlq.describe(message))
                if stop is not None and stop(out[-1]):
                    ended = True
                    break
        finally:
            # a delivery that crosses the cancel waits in `arrived` for the next step (held
            # all the same), or is handed back when the channel closes
            await queue.cancel(tag)
        if ended:
            break
    return out, queued, ended


async def peek(channel: AbstractChannel, reason: str | None = None) -> Listing:
    """The page's listing. The caller closes `channel` right after: that releases them."""
    dead, queued, _ = await _held(channel, SCAN_CAP)
    now = datetime.now(UTC)
    matching = [d for d in dead if reason is None or d.reason == reason]
    counts = Counter(d.reason for d in dead)
    return Listing(
        rows=[row_of(d, now) for d in matching[:LIST_CAP]],
        matching=len(matching),
        examined=len(dead),
        queued=queued,
        reasons=sorted(counts.items()),
    )


async def matching_ids(channel: AbstractChannel, reason: str | None) -> list[str]:
    """msg_ids of every message examined that matches the filter (each once): what
    "all matching the filter" turns into, so the confirmation names what will move."""
    dead, _, _ = await _held(channel, SCAN_CAP)
    return distinct(d.msg_id for d in dead if reason is None or d.reason == reason)


def distinct(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))


@dataclass
class Moved:
    action: Action
    done: list[str] = field(default_factory=list)  # msg_ids moved (each once)
    copies: int = 0  # messages moved (a msg_id may have been dead-lettered twice)
    gone: list[str] = field(default_factory=list)  # asked for, not in the queue any more
    at: datetime | None = None  # the database's time just before moving: outcomes after it
    complete: bool = True  # false: the look stopped at its bound, `gone` may be beyond it


Before = Callable[[list[str], list[str]], Awaitable[datetime]]


async def move(
    channel: AbstractChannel, action: Action, wanted: list[str], before: Before
) -> Moved:
    """Replay (republish confirmed, then ack) or purge (ack) the messages with these
    msg_ids. `before(found_ids, gone_ids)` runs while they are held: it writes the audit
    rows and returns the database's time; if it raises, nothing has moved (the caller's
    closing of the channel hands everything back).

    The look stops as soon as every wanted msg_id has been found, or after SCAN_CAP
    messages: a msg_id beyond them is reported gone, as one replayed meanwhile is."""
    want = set(wanted)
    remaining = set(want)

    def found_all(dead: dlq.Dead) -> bool:
        remaining.discard(dead.msg_id)
        return not remaining

    dead, _, complete = await _held(channel, SCAN_CAP, stop=found_all, grace=IDLE_S)
    chosen = [d for d in dead if d.msg_id in want]
    found = distinct(d.msg_id for d in chosen)
    gone = [w for w in distinct(wanted) if w in remaining]
    at = await before(found, gone)
    count = 0

    def progress(done: int, total: int) -> None:
        nonlocal count
        count = done

    try:
        if action == "replay":
            await dlq.replay(channel, chosen, progress)
        else:
            await dlq.purge(channel, chosen, progress)
    except Exception as exc:
        moved = distinct(d.msg_id for d in chosen[:count])
        left = [m for m in distinct(d.msg_id for d in chosen[count:]) if m not in moved]
        raise Interrupted(Moved(action, moved, count, gone, at), left, exc) from exc
    return Moved(action, found, len(chosen), gone, at, complete=complete or not gone)


class Interrupted(Exception):
    """A move stopped part way (a publish refused, RabbitMQ away): `moved` says what moved,
    `left` the msg_ids found and not moved (still in the dead-letter queue, or handed back
    when the channel closes), `cause` why."""

    def __init__(self, moved: Moved, left: list[str], cause: BaseException) -> None:
        super().__init__(type(cause).__name__)
        self.moved = moved
        self.left = left
        self.cause = cause


async def audit_move(
    conn: asyncpg.Connection | PoolConnectionProxy[Any],
    who: str,
    client: str | None,
    action: Action,
    found: list[str],
    gone: list[str],
) -> datetime:
    """One audit row per msg_id (outcome 'requested', or 'not_found'), all or none, and
    the database's time (the moment after which outcomes count)."""
    # the subject as `dlq list` prints it: a control character (a NUL, which PostgreSQL text
    # cannot hold) escaped; any msg_id the gateway accepts is itself
    rows = [*((dlq.shown_id(m), "requested") for m in found),
            *((dlq.shown_id(m), "not_found") for m in gone)]  # fmt: skip
    async with conn.transaction():
        for msg_id, outcome in rows:
            await audit.record(
                conn,
                who=who,
                action=AUDIT_ACTIONS[action],
                subject=msg_id,
                client=client,
                outcome=outcome,
            )
        at: datetime = await conn.fetchval("SELECT clock_timestamp()")
    return at


async def audit_failed(
    conn: asyncpg.Connection | PoolConnectionProxy[Any],
    who: str,
    client: str | None,
    action: Action,
    left: list[str],
) -> None:
    """The follow-up to audit_move's 'requested' rows when a move stopped part way: one
    row per msg_id that did not move (outcome 'failed'), so the trail never says a move
    happened that did not."""
    async with conn.transaction():
        for msg_id in left:
            await audit.record(
                conn,
                who=who,
                action=AUDIT_ACTIONS[action],
                subject=dlq.shown_id(msg_id),
                client=client,
                outcome="failed",
            )


# --- outcomes -----------------------------------------------------------------------------

FINAL = frozenset({"applied", "stale", "rejected", "dead_lettered", "purged", "gone", "unreached"})


@dataclass(frozen=True)
class Outcome:
    msg_id: str
    shown_id: str
    status: str  # applied | stale | rejected | dead_lettered | queued | purged | gone | unreached
    label: str  # what the page says
    error: str | None

    @property
    def final(self) -> bool:
        return self.status in FINAL

    def as_dict(self) -> dict[str, Any]:
        return {
            "msg_id": self.msg_id,
            "shown_id": self.shown_id,
            "status": self.status,
            "label": self.label,
            "error": self.error,
            "final": self.final,
        }


LABELS = {
    "applied": "applied",
    "stale": "stale (every entity already held something newer)",
    "rejected": "rejected",
    "dead_lettered": "dead-lettered again",
    "queued": "still queued",
    "purged": "purged",
    "gone": "not in the dead-letter queue (moved by someone else)",
    "unreached": "not found in the part of the dead-letter queue one look examines",
}

_OUTCOMES = """
SELECT w.msg_id, i.status, i.processed_at, i.error,
       (SELECT max(c.detected_at) FROM inbox_conflicts c WHERE c.msg_id = w.msg_id) AS conflict_at
  FROM unnest($1::text[]) AS w(msg_id) LEFT JOIN inbox i USING (msg_id)
"""


def _outcome(msg_id: str, status: str, error: str | None = None) -> Outcome:
    return Outcome(msg_id, dlq.shown_id(msg_id), status, LABELS[status], error)


async def outcomes(
    conn: asyncpg.Connection | PoolConnectionProxy[Any],
    action: Action,
    ids: list[str],
    gone: list[str],
    since: datetime | None,
    complete: bool = True,
) -> list[Outcome]:
    """What became of each message since `since` (the moment it was moved), from the inbox
    as GET /messages/{msg_id} (views.message_view) reads it: applied, stale, rejected or
    dead-lettered again once the inbox row was written after `since`; a conflict again
    once an inbox_conflicts row was; else still queued (a delay queue, a busy worker).
    A purge is final at once."""
    out = [_outcome(m, "gone" if complete else "unreached") for m in gone]
    missing = set(gone)
    if action == "purge":
        return [_outcome(m, "purged") for m in ids if m not in missing] + out
    rows = {r["msg_id"]: r for r in await conn.fetch(_OUTCOMES, ids)} if ids else {}
    moved: list[Outcome] = []
    for msg_id in ids:
        if msg_id in missing:
            continue
        row = rows.get(msg_id)
        if row is None or since is None:
            moved.append(_outcome(msg_id, "queued"))
        elif row["conflict_at"] is not None and row["conflict_at"] >= since:
            moved.append(
                _outcome(msg_id, "dead_lettered", "conflict: this msg_id was applied before "
                         "with different content")
            )  # fmt: skip
        elif row["status"] is not None and row["processed_at"] >= since:
            error = safe_text(row["error"], 500) if row["error"] else None
            moved.append(_outcome(msg_id, row["status"], error))
        else:
            moved.append(_outcome(msg_id, "queued"))
    return moved + out
