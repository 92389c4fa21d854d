"""`python -m gateway`: the HTTP gateway."""

from __future__ import annotations

import argparse
import asyncio
import sys

from qcare_ingest.config import load_or_exit
from qcare_ingest.logs import configure_logging

from .app import create_app
from .serve import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qcare-ingest gateway", description=__doc__)
    parser.add_argument("--host", default=None, help="listen address; env QCARE_HTTP_HOST")
    parser.add_argument("--port", type=int, default=None, help="listen port; env QCARE_HTTP_PORT")
    args = parser.parse_args(argv)
    settings = load_or_exit(
        "qcare-ingest gateway", gateway=True, http_host=args.host, http_port=args.port
    )
    configure_logging(settings.log_level, service="gateway")
    asyncio.run(serve(create_app(settings), settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
