"""`qcare-ingest dlq list | show MSG_ID [--reveal] | replay [MSG_ID…] [--all] | purge …` (SPEC §4).

`show` masks every personal field unless --reveal, which is recorded in the audit trail
first (issue 14). `purge --older-than DAYS` is the dead-letter queue's retention.

Messages are read with basic.get and left unacked, so a reader that dies puts
nothing at risk: the broker hands them back when the channel closes. Replay
publishes to the main exchange, waits for the confirm, and only then acks the
dead-lettered copy: a crash in between leaves a duplicate, which the inbox absorbs.

Nothing from a message reaches the terminal raw (issue 12): `list` escapes control
characters in msg_id, accession and reason (`\x1b`, `\u202e`) and cuts long values with
a marker; `show` writes JSON whose strings escape them (`\u001b`, `\u202e`), so it still
decodes to the message's own values. `show`, `replay` and `purge` take a msg_id as it
is or as `list` printed it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

import asyncpg
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from . import audit
from .ackfence import AckFence
from .broker import connect, republish
from .config import Settings, load_or_exit
from .deadletter import H_ATTEMPTS, H_ERROR, H_LAST_FAILURE, H_REASON, H_REPLAYED
from .envelope import H_ATTEMPT, split_payload
from .errors import DecodeError
from .fields import FIELDS, SERVICE_FIELDS
from .normalize import mask_id
from .textsafe import escape_json, safe_text
from .topology import DLQ, EXCHANGE, ROUTING_KEY, declare

# `show` prints these DTO fields as they are: the table's (fields.py) fields that are not
# personal (services, a list, is looked into line by line); every other field is masked
# unless --reveal (issue 14): an allow-list, so a body in an unexpected shape is masked by
# default. The identifiers keep a hint of themselves (A12****(3)).
SHOWN_FIELDS = frozenset(f.name for f in FIELDS if not f.personal and f.sql_type != "jsonb")
SHOWN_SERVICE_FIELDS = frozenset(f.name for f in SERVICE_FIELDS if not f.personal)
IDENTIFIERS = frozenset(f.name for f in (*FIELDS, *SERVICE_FIELDS) if f.identifier)
HIDDEN = "***"
# Characters of a value `list` shows: a whole msg_id (AMQP: at most 255 bytes), a whole
# accessionNo (at most 64) with room for escapes.
ID_SHOWN = 255
ACCESSION_SHOWN = 128
REASON_SHOWN = 40


@dataclass
class Dead:
    message: AbstractIncomingMessage
    msg_id: str
    accession: str | None
    reason: str
    attempts: int
    failed_at: datetime | None

    def age(self, now: datetime) -> str:
        if self.failed_at is None:
            return "?"
        seconds = int((now - self.failed_at).total_seconds())
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
            if seconds >= size:
                return f"{seconds // size}{unit}"
        return f"{seconds}s"


def shown_id(msg_id: str) -> str:
    """A msg_id as `list` prints it: control characters escaped."""
    return safe_text(msg_id, ID_SHOWN)


def by_id(dead: list[Dead], wanted: str) -> list[Dead]:
    """The messages with msg_id `wanted`, or else those `list` printed as `wanted`."""
    exact = [d for d in dead if d.msg_id == wanted]
    return exact or [d for d in dead if shown_id(d.msg_id) == wanted]


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _death(headers: dict[str, Any]) -> dict[str, Any]:
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        return deaths[0]
    return {}


def describe(message: AbstractIncomingMessage) -> Dead:
    headers = dict(message.headers or {})
    death = _death(headers)
    reason = _text(headers.get(H_REASON) or death.get("reason") or "unknown")
    attempts = headers.get(H_ATTEMPTS) or headers.get("x-delivery-count") or death.get("count")
    failed: datetime | None = None
    stamp = headers.get(H_LAST_FAILURE)
    if stamp:
        try:
            failed = datetime.fromisoformat(_text(stamp))
        except ValueError:
            failed = None
        if failed is not None and failed.tzinfo is None:
            failed = failed.replace(tzinfo=UTC)  # ours are UTC; a naive one cannot be compared
    elif isinstance(death.get("time"), datetime):
        failed = death["time"].replace(tzinfo=UTC)
    accession = None
    try:
        body = json.loads(dto_bytes(message))
        found = body.get("accessionNo") if isinstance(body, dict) else None
        if found is not None:
            accession = found if isinstance(found, str) else json.dumps(found)
    except ValueError:
        pass
    return Dead(
        message,
        message.message_id or "?",
        accession,
        reason,
        int(attempts) if isinstance(attempts, int) else 0,
        failed,
    )


def dto_bytes(message: AbstractIncomingMessage) -> bytes:
    """The canonical DTO JSON of a queued message (its body without the request's bytes the
    journal keeps; a body whose split header is bad is shown whole, as undecodable)."""
    try:
        return split_payload(message.body, dict(message.headers or {}))[0]
    except DecodeError:
        return message.body


def _mask_value(key: str, value: Any) -> Any:
    if value is None or value == "":
        return value
    if key.lower() in IDENTIFIERS and isinstance(value, str):
        return mask_id(value)
    return HIDDEN


def masked_body(body: bytes) -> Any:
    """The DTO for `show` with every personal field masked (SPEC §5, issue 14): identifiers
    as `A12****(3)`, name, dob, address, gender, chitno and anything not known to be
    harmless as `***`."""
    try:
        data = json.loads(body)
    except ValueError:
        return {"undecodable_body_bytes": len(body)}
    if not isinstance(data, dict):
        return {"masked_body": type(data).__name__, "bytes": len(body)}
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in SHOWN_FIELDS and (value is None or isinstance(value, str | int | float)):
            out[key] = value
        elif key == "services" and isinstance(value, list):
            out[key] = [
                {k: v if k in SHOWN_SERVICE_FIELDS else _mask_value(k, v) for k, v in item.items()}
                if isinstance(item, dict)
                else _mask_value(key, item)
                for item in value
            ]
        else:
            out[key] = _mask_value(key, value)
    return out


def revealed_body(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return {"undecodable_body_bytes": len(body)}


async def fetch_all(channel: AbstractChannel) -> list[Dead]:
    queue = await channel.declare_queue(DLQ, passive=True)
    out = []
    while (message := await queue.get(no_ack=False, fail=False)) is not None:
        out.append(describe(message))
    return out


def progress(done: int, total: int, out: TextIO) -> None:
    width = 30
    filled = width * done // max(total, 1)
    out.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    if done == total:
        out.write("\n")
    out.flush()


def _select(dead: list[Dead], ids: list[str], all_: bool, reason: str | None) -> list[Dead]:
    picked = {id(d) for wanted in ids for d in by_id(dead, wanted)}
    chosen = [d for d in dead if all_ or id(d) in picked]
    if reason:
        chosen = [d for d in chosen if d.reason == reason]
    return chosen


async def replay(
    channel: AbstractChannel, chosen: list[Dead], report: Callable[[int, int], None]
) -> int:
    exchange = await channel.get_exchange(EXCHANGE)
    acks = AckFence(await channel.declare_queue(DLQ, passive=True))
    for done, dead in enumerate(chosen, start=1):
        src = dead.message
        headers = {
            k: v
            for k, v in (src.headers or {}).items()
            if k
            not in (
                "x-death",
                "x-delivery-count",
                "x-first-death-exchange",
                "x-first-death-queue",
                "x-first-death-reason",
            )
        }
        headers[H_ATTEMPT] = 0
        replayed = headers.get(H_REPLAYED, 0)
        headers[H_REPLAYED] = (replayed if isinstance(replayed, int) else 0) + 1
        await republish(exchange, ROUTING_KEY, src, headers)
        await acks.ack(src)  # only after the confirm above
        report(done, len(chosen))
    await acks.settle()
    return len(chosen)


async def purge(
    channel: AbstractChannel, chosen: list[Dead], report: Callable[[int, int], None] | None = None
) -> int:
    """Ack (delete) these held messages, every ack settled before this returns."""
    acks = AckFence(await channel.declare_queue(DLQ, passive=True))
    for done, dead in enumerate(chosen, start=1):
        await acks.ack(dead.message)
        if report is not None:
            report(done, len(chosen))
    await acks.settle()
    return len(chosen)


def _list(dead: list[Dead], out: TextIO, err: TextIO) -> int:
    now = datetime.now(UTC)
    out.write(f"{'msg_id':<40} {'accession':<20} {'reason':<20} {'attempts':>8} {'age':>6}\n")
    for d in dead:
        accession = safe_text(d.accession, ACCESSION_SHOWN) if d.accession is not None else "-"
        out.write(
            f"{shown_id(d.msg_id):<40} {accession:<20} "
            f"{safe_text(d.reason, REASON_SHOWN):<20} {d.attempts:>8} {d.age(now):>6}\n"
        )
    err.write(f"{len(dead)} dead-lettered message(s)\n")
    return 0


def _show(dead: list[Dead], msg_id: str, out: TextIO, err: TextIO, reveal: bool = False) -> int:
    found = by_id(dead, msg_id)
    if not found:
        err.write(f"no dead-lettered message with msg_id {safe_text(msg_id, ID_SHOWN)}\n")
        return 1
    for d in found:
        headers = {
            k: _text(v) if isinstance(v, bytes) else v for k, v in (d.message.headers or {}).items()
        }
        shown = {
            "msg_id": d.msg_id,
            "reason": d.reason,
            "error": headers.get(H_ERROR),
            "headers": headers,
            "dto": revealed_body(dto_bytes(d.message))
            if reveal
            else masked_body(dto_bytes(d.message)),
        }
        text = json.dumps(shown, indent=2, default=str, ensure_ascii=False)
        out.write(escape_json(text) + "\n")
    return 0


async def _confirm_purge(count: int, err: TextIO) -> bool:
    if not sys.stdin.isatty():
        err.write("dlq purge: refusing without --yes (no terminal to confirm on)\n")
        return False
    prompt = f"Delete {count} message(s) for good? Type 'purge': "
    answer = await asyncio.to_thread(input, prompt)
    return answer.strip() == "purge"


async def _move(
    args: argparse.Namespace,
    channel: AbstractChannel,
    dead: list[Dead],
    out: TextIO,
    err: TextIO,
) -> int:
    older_than = getattr(args, "older_than", None)
    if not args.all and not args.msg_ids and older_than is None:
        err.write(f"dlq {args.action}: name MSG_IDs or pass --all\n")
        return 2
    chosen = _select(dead, args.msg_ids, args.all or older_than is not None, args.reason)
    if older_than is not None:  # retention: dead-lettered more than DAYS ago (unknown: kept)
        now = datetime.now(UTC)
        chosen = [
            d
            for d in chosen
            if d.failed_at is not None and (now - d.failed_at).total_seconds() > older_than * 86400
        ]
    missing = sorted(shown_id(w) for w in set(args.msg_ids) if not by_id(chosen, w))
    if missing:
        err.write(f"not in the dead-letter queue: {', '.join(missing)}\n")
    if args.dry_run:
        for d in chosen:
            reason = safe_text(d.reason, REASON_SHOWN)
            out.write(f"would {args.action} {shown_id(d.msg_id)} ({reason})\n")
        err.write(f"{len(chosen)} message(s) would be {args.action}d\n")
        return 0
    if args.action == "replay":
        report = (lambda i, t: progress(i, t, err)) if len(chosen) > 1 else (lambda i, t: None)
        n = await replay(channel, chosen, report)
        err.write(f"replayed {n} message(s) to {EXCHANGE}; {len(dead) - n} left\n")
        return 1 if missing else 0
    if not args.yes and not await _confirm_purge(len(chosen), err):
        err.write("nothing purged\n")
        return 1
    await purge(channel, chosen)
    err.write(f"purged {len(chosen)} message(s)\n")
    return 1 if missing else 0


async def _audit_reveal(
    settings: Settings, args: argparse.Namespace, dead: list[Dead], err: TextIO
) -> bool:
    """The audit row for `show --reveal`, written before anything is shown."""
    who, client = audit.cli_user(args.as_name)
    found = by_id(dead, args.msg_id)
    try:
        conn = await asyncpg.connect(settings.database_url, timeout=10)
        try:
            await audit.record(
                conn,
                who=who,
                action=audit.DLQ_REVEAL,
                subject=found[0].msg_id if found else args.msg_id,
                client=client,
                outcome="shown" if found else "not_found",
            )
        finally:
            await conn.close()
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        err.write(
            f"dlq show --reveal: the audit row could not be written ({type(exc).__name__}); "
            "nothing revealed\n"
        )
        return False
    return True


async def run(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    conn = await connect(settings.amqp_url, timeout=10, ca_file=settings.amqp_ca_file)
    try:
        topology = await declare(conn, settings.delivery_limit, settings.retry_delays)
        dead = await fetch_all(topology.channel)
        if args.action == "list":
            return _list(dead, out, err)
        if args.action == "show":
            if args.reveal and not await _audit_reveal(settings, args, dead, err):
                return 1
            return _show(dead, args.msg_id, out, err, reveal=args.reveal)
        return await _move(args, topology.channel, dead, out, err)
    finally:
        await conn.close()  # everything not acked goes back to the dead-letter queue


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="qcare-ingest dlq",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="a table of dead-lettered messages")
    show = sub.add_parser("show", help="headers and DTO of one message (personal data masked)")
    show.add_argument("msg_id")
    show.add_argument(
        "--reveal",
        action="store_true",
        help="show the personal data whole; recorded in the audit trail (qcare-ingest audit)",
    )
    show.add_argument(
        "--as",
        dest="as_name",
        metavar="NAME",
        help="who the audit trail names (default: the OS user, which it records anyway)",
    )
    for name, text in (
        ("replay", "move messages back to the main queue"),
        ("purge", "delete messages for good"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("msg_ids", nargs="*", metavar="MSG_ID")
        p.add_argument("--all", action="store_true", help="every message (see --reason)")
        p.add_argument("--reason", help="only messages dead-lettered for this reason")
        p.add_argument("--dry-run", action="store_true", help="show what would happen")
        if name == "purge":
            p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
            p.add_argument(
                "--older-than",
                type=int,
                metavar="DAYS",
                help="retention: only messages dead-lettered more than DAYS days ago",
            )
    args = parser.parse_args(argv)
    settings = load_or_exit("qcare-ingest dlq")
    return asyncio.run(run(args, settings, sys.stdout, sys.stderr))
