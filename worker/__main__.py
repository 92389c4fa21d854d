"""`python -m worker`: one worker process."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from qcare_ingest.config import Settings, load_or_exit
from qcare_ingest.logs import configure_logging
from qcare_ingest.signals import on_stop

from .consumer import Worker

log = logging.getLogger("worker")


async def _run(settings: Settings) -> None:
    worker = Worker(settings)
    with on_stop(worker.stop):
        await worker.run()
    # Everything the worker started must have ended with it; asyncio.run() would cancel
    # a leftover silently, so name it (a leak here made every shutdown wait its grace).
    left = sorted(t.get_name() for t in asyncio.all_tasks() if t is not asyncio.current_task())
    if left:
        log.warning("tasks left at exit", extra={"action": "tasks_left", "tasks": left[:20]})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qcare-ingest worker", description=__doc__)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="in-flight messages (prefetch and pool size); env QCARE_WORKER_CONCURRENCY",
    )
    args = parser.parse_args(argv)
    settings = load_or_exit("qcare-ingest worker", worker_concurrency=args.concurrency)
    configure_logging(settings.log_level, service="worker")
    asyncio.run(_run(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
