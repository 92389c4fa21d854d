"""`python -m worker`: one worker process."""

from __future__ import annotations

import argparse
import asyncio
import sys

from qcare_ingest.config import Settings, load_or_exit
from qcare_ingest.logs import configure_logging
from qcare_ingest.signals import on_stop

from .consumer import Worker


async def _run(settings: Settings) -> None:
    worker = Worker(settings)
    with on_stop(worker.stop):
        await worker.run()


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
