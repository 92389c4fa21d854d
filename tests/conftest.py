"""Real RabbitMQ and PostgreSQL, isolated per test run: own vhost, own database; and the
reference server (the old endpoint, ../shared/oracle), started on a port of its own.

Locally a missing service skips the integration tests; in CI (CI=true) it fails them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import asyncpg
import pytest

from qcare_ingest.config import Settings
from qcare_ingest.store import init_connection
from tests.support import isolation
from tests.support import reference as reference_support
from tests.support.procs import Gateway, Proc, Worker

AMQP_BASE = os.environ.get("QCARE_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
PG_BASE = os.environ.get("QCARE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"test services unavailable in CI: {reason}")
    pytest.skip(f"test services unavailable: {reason}")


REFERENCE_SUMMARY = pytest.StashKey[list[str]]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `last` run after every other test (the suite-wide rebuild check)."""
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """What the differential test against the reference did (bodies, seed, documented
    divergences), shown on passing runs too."""
    lines = config.stash.get(REFERENCE_SUMMARY, [])
    if lines:
        terminalreporter.write_sep("-", "reference server")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def reference() -> Iterator[reference_support.Reference]:
    """A client of the reference server: $QCARE_REFERENCE_URL when set, else one this run
    starts with ../shared/oracle/run.sh on a free port (and stops at the end)."""
    url = os.environ.get("QCARE_REFERENCE_URL")
    started = None
    if url:
        if not reference_support.reachable(url):
            _unavailable(
                f"QCARE_REFERENCE_URL={url} does not answer; {reference_support.ORACLE_HELP}"
            )
    else:
        repo = Path(__file__).resolve().parents[1]
        oracle = reference_support.oracle_dir(repo)
        if oracle is None:
            where = os.environ.get("QCARE_ORACLE_DIR") or f"beside {repo}"
            _unavailable(f"no oracle directory ({where}); {reference_support.ORACLE_HELP}")
        assert oracle is not None
        if not IN_CI and shutil.which("mono") is None:
            _unavailable(f"Mono is not installed; {reference_support.ORACLE_HELP}")
        try:
            started = reference_support.start_oracle(oracle, reference_support.free_port())
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            _unavailable(f"{exc}; {reference_support.ORACLE_HELP}")
        assert started is not None
        url = started.url
    client = reference_support.Reference(url)
    yield client
    client.close()
    if started is not None:
        started.stop()


@dataclass(frozen=True)
class RunEnv(isolation.Isolated):
    """This run's vhost and database, with what the tests need to reach them."""

    amqp_host_port: tuple[str, int] = ("127.0.0.1", 5672)

    def settings(self) -> Settings:
        return Settings.from_env(self.env())


@pytest.fixture(scope="session")
async def test_env() -> AsyncIterator[RunEnv]:
    if shutil.which("rabbitmqctl") is None:
        _unavailable("rabbitmqctl not found (needed to create a vhost per run)")
    try:
        iso = await isolation.create("qcare_test", AMQP_BASE, PG_BASE)
    except (subprocess.SubprocessError, OSError, asyncpg.PostgresError) as exc:
        _unavailable(f"cannot create a vhost and database: {exc}")
    yield RunEnv(iso.name, iso.amqp_url, iso.database_url, iso.pg_base)
    await isolation.destroy(iso)


@pytest.fixture(scope="session")
async def db(test_env: RunEnv) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(
        test_env.database_url, min_size=1, max_size=4, init=init_connection
    )
    assert pool is not None
    yield pool
    await pool.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


@pytest.fixture
async def amqp(test_env: RunEnv) -> AsyncIterator[aio_pika.abc.AbstractConnection]:
    conn = await aio_pika.connect(test_env.amqp_url)
    yield conn
    await conn.close()


class Procs:
    """Starts gateway/worker processes for one test and always cleans them up."""

    def __init__(self, test_env: RunEnv) -> None:
        self.test_env = test_env
        self.started: list[Proc] = []

    def gateway(self, **env: str) -> Gateway:
        proc = Gateway(self.test_env.env(**env))
        self.started.append(proc)
        return proc

    def worker(self, concurrency: int = 16, **env: str) -> Worker:
        proc = Worker(self.test_env.env(**env), concurrency=concurrency)
        self.started.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.started:
            proc.close()


@pytest.fixture
def procs(test_env: RunEnv) -> Iterator[Procs]:
    p = Procs(test_env)
    yield p
    p.close()


@pytest.fixture
async def stack(procs: Procs, http: aiohttp.ClientSession) -> tuple[Gateway, list[Worker]]:
    """A gateway and two workers, ready."""
    gw = procs.gateway()
    workers = [procs.worker(), procs.worker()]
    await asyncio.gather(gw.ready(http), *(w.consuming() for w in workers))
    return gw, workers
