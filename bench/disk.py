"""How the disk behaved during a run: the slowest flushes of a small probe.

A child process writes 4 KiB and flushes it (fdatasync) every 20 ms, in a file beside the
results (on this machine the one filesystem that PostgreSQL and RabbitMQ write to as well),
until it is told to stop; it then prints the flush times as one JSON object. A commit
waits for such a flush, and so does a confirm from a quorum queue: when the disk stalls,
every message received during the stall waits for it, and a lag percentile over a
20 s run shows it. The probe's own flushes are 50 a second, against a few hundred
commits a second of the pipeline.

    python -m bench.disk DIR     (stops on SIGTERM or when stdin closes)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

INTERVAL_S = 0.02
SLOW_MS = 50.0  # a flush slower than this is listed, in `slow_ms`


def summary(flushes_ms: list[float]) -> dict[str, Any]:
    ordered = sorted(flushes_ms)
    n = len(ordered)
    return {
        "flushes": n,
        "p50_ms": round(ordered[n // 2], 2) if n else None,
        "max_ms": round(ordered[-1], 1) if n else None,
        "slow_ms": [round(v) for v in flushes_ms if v > SLOW_MS],
    }


def describe_disk(disk: dict[str, Any]) -> str:
    """'357.2 ms, 2 over 50 ms', for the table; what went wrong if the probe failed."""
    if disk.get("max_ms") is None:
        return f"no probe ({disk.get('error', 'no flushes')})"
    slow = len(disk["slow_ms"]) or "none"
    return f"{disk['max_ms']} ms, {slow} over {SLOW_MS:.0f} ms"


def probe(directory: Path, stop: threading.Event) -> list[float]:
    flushes: list[float] = []
    fd, name = tempfile.mkstemp(prefix=".disk-probe-", dir=directory)
    try:
        block = b"\0" * 4096
        while not stop.is_set():
            os.pwrite(fd, block, 0)
            started = time.perf_counter()
            os.fdatasync(fd)
            flushes.append((time.perf_counter() - started) * 1000)
            stop.wait(INTERVAL_S)
    finally:
        os.close(fd)
        os.unlink(name)
    return flushes


def main() -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    print(json.dumps(summary(probe(Path(sys.argv[1]), stop))), flush=True)
    return 0


class DiskProbe:
    """`start()` before a run, `stop()` after it: the probe's summary."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.popen: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "bench.disk", str(self.directory)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        )

    def stop(self) -> dict[str, Any]:
        """The summary; a failed probe is reported in it, never raised (the run stands)."""
        assert self.popen is not None
        try:
            out, _ = self.popen.communicate("", timeout=30)  # closes stdin: the probe stops
            result: dict[str, Any] = json.loads(out)
        except (subprocess.TimeoutExpired, ValueError) as exc:
            self.popen.kill()  # its file is left behind only if it is killed mid-flush
            self.popen.communicate()
            return {"error": f"disk probe failed: {type(exc).__name__}", "max_ms": None}
        return result


if __name__ == "__main__":
    sys.exit(main())
