"""`qcare-ingest`: migrate | gateway | worker | dlq | rebuild … (SPEC §1).

The gateway and worker entry packages are loaded by name at run time, so the
core package never imports them (tests/unit/test_layering.py).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from collections.abc import Sequence

from .config import Settings, environment_names, load_or_exit
from .logs import configure_logging

ENV_HELP = "environment (qcare-ingest config prints the effective values):\n" + "\n".join(
    f"  {name}" for name in environment_names()
)


async def _migrate(settings: Settings) -> int:
    from .broker import connect
    from .db import migrate
    from .topology_upgrade import UpgradeError, upgrade

    services = {
        "gateway": settings.gateway_database_url,
        "worker": settings.worker_database_url,
        "worklist": settings.worklist_database_url,
    }
    try:
        applied = await migrate(settings.database_url, {k: v for k, v in services.items() if v})
    except ValueError as exc:  # a service URL that cannot be set up (another database)
        print(f"database: {exc}", file=sys.stderr)
        return 2
    print(f"database: {len(applied)} migration(s) applied {applied}", file=sys.stderr)

    def say(line: str) -> None:
        print(f"broker: {line}", file=sys.stderr, flush=True)

    conn = await connect(settings.amqp_url, timeout=10, ca_file=settings.amqp_ca_file)
    try:
        # declares the topology; rebuilds queues an older version declared with other
        # arguments (at-least-once dead-lettering), moving their messages, in place
        await upgrade(conn, settings.delivery_limit, settings.retry_delays, say)
    except UpgradeError as exc:
        say(f"upgrade stopped, nothing lost; run migrate again once fixed: {exc}")
        return 1
    finally:
        await conn.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="qcare-ingest",
        description="QCare X-ray order intake.",
        epilog=ENV_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="create or upgrade the database schema and broker topology")
    sub.add_parser("status", help="queue depths, consumers, oldest waiting message, inbox")
    sub.add_parser("config", help="print the effective configuration, secrets masked")
    audit = sub.add_parser("audit", help="the audit trail of reads of personal data")
    audit.add_argument("--since", help="7d, 12h, 30m ago, or an ISO 8601 date or time (UTC)")
    audit.add_argument("--key", help="only reads by this key name (or CLI user)")
    audit.add_argument("--limit", type=int, default=10000, help="at most this many rows")
    prune = sub.add_parser(
        "prune", help="retention: delete inbox rows, conflicts and audit rows past their age"
    )
    prune.add_argument(
        "--older-than",
        type=int,
        required=True,
        metavar="DAYS",
        help="age in days (audit rows: at least QCARE_AUDIT_RETENTION_DAYS)",
    )
    prune.add_argument("--dry-run", action="store_true", help="count, delete nothing")
    rebuild = sub.add_parser(
        "rebuild",
        help="re-apply the journal into a fresh schema and compare with the live tables",
    )
    rebuild.add_argument(
        "--keep", action="store_true", help="keep the rebuilt schema for inspection"
    )
    worklist = sub.add_parser(
        "worklist", help="run the DICOM Modality Worklist C-FIND SCP over the applied orders"
    )
    worklist.add_argument("--port", type=int, help="listen here (QCARE_WORKLIST_PORT)")
    sub.add_parser("gateway", help="run the HTTP gateway", add_help=False)
    sub.add_parser("worker", help="run one worker process", add_help=False)
    sub.add_parser("dlq", help="inspect and replay the dead-letter queue", add_help=False)
    if argv and argv[0] in ("gateway", "worker", "dlq"):
        module = {"gateway": "gateway.__main__", "worker": "worker.__main__"}.get(
            argv[0], "qcare_ingest.dlq"
        )
        entry = importlib.import_module(module)
        code: int = entry.main(argv[1:])
        return code
    args = parser.parse_args(argv)
    overrides = {"worklist_port": args.port} if args.command == "worklist" else {}
    settings = load_or_exit("qcare-ingest", **overrides)
    configure_logging(settings.log_level, service=args.command)
    if args.command == "migrate":
        return asyncio.run(_migrate(settings))
    if args.command == "config":
        for name, value in settings.masked().items():
            print(f"{name}={value}")
        return 0
    if args.command == "audit":
        from datetime import UTC, datetime

        from . import audit as trail

        try:
            since = trail.parse_since(args.since, datetime.now(UTC)) if args.since else None
        except ValueError:
            parser.error(f"--since: not a duration (7d, 12h, 30m) or ISO date: {args.since}")
        return asyncio.run(
            trail.run(settings.database_url, since, args.key, args.limit, sys.stdout)
        )
    if args.command == "prune":
        from .retention import run as prune_run

        if args.older_than < 1:
            parser.error("--older-than: at least 1 day")
        return asyncio.run(
            prune_run(
                settings.database_url,
                args.older_than,
                settings.audit_retention_days,
                args.dry_run,
                sys.stdout,
            )
        )
    if args.command == "rebuild":
        from .rebuild import run as rebuild_run

        return asyncio.run(rebuild_run(settings.database_url, args.keep, sys.stdout))
    if args.command == "worklist":
        from .worklist.scp import run as worklist_run

        return worklist_run(settings)
    if args.command == "status":
        from .status import run

        return asyncio.run(run(settings, sys.stdout))
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
