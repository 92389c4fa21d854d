"""Gateway and worker processes started by tests, with their logs captured."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_for(
    predicate: Callable[[], Awaitable[Any]],
    timeout: float,
    interval: float = 0.05,
    what: str = "condition",
) -> Any:
    """Poll until predicate() is truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


class Proc:
    """A `python -m <module>` child whose stderr goes to a file we can read."""

    def __init__(self, module: str, env: dict[str, str], args: list[str] | None = None) -> None:
        self.module = module
        self.log_path = Path(tempfile.mkstemp(prefix=f"qcare-{module}-", suffix=".log")[1])
        self._log = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", module, *(args or [])],
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(timeout)

    def close(self) -> None:
        if self.popen.poll() is None:
            self.kill()
        self._log.close()


class Gateway(Proc):
    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        super().__init__("gateway", {**env, "QCARE_HTTP_PORT": str(self.port)})
        self.url = f"http://127.0.0.1:{self.port}"

    async def ready(self, session: aiohttp.ClientSession, timeout: float = 20) -> None:
        async def up() -> bool:
            if self.popen.poll() is not None:
                raise AssertionError(f"gateway exited: {self.text()[-2000:]}")
            try:
                async with session.get(self.url + "/healthz") as resp:
                    return resp.status == 200
            except aiohttp.ClientError:
                return False

        await wait_for(up, timeout, what="gateway /healthz")


class Worker(Proc):
    def __init__(self, env: dict[str, str], concurrency: int | None = 16) -> None:
        """concurrency None: the product's own default (QCARE_WORKER_CONCURRENCY)."""
        args = [] if concurrency is None else ["--concurrency", str(concurrency)]
        super().__init__("worker", env, args)

    async def consuming(self, timeout: float = 20) -> None:
        async def up() -> bool:
            if self.popen.poll() is not None:
                raise AssertionError(f"worker exited: {self.text()[-2000:]}")
            return any(e.get("action") == "consuming" for e in self.events())

        await wait_for(up, timeout, what="worker consuming")

    def outcomes(self) -> list[tuple[str, str]]:
        """(msg_id, outcome) of every message this worker committed, from its batch logs."""
        return [
            (msg_id, outcome)
            for e in self.events()
            if e.get("action") == "processed"
            for msg_id, outcome in e["results"]
        ]
