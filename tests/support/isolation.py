"""A private RabbitMQ vhost and PostgreSQL database, for a test run or a benchmark."""

from __future__ import annotations

import subprocess
import uuid
from dataclasses import dataclass
from urllib.parse import quote

import asyncpg

from qcare_ingest.db import migrate

AMQP_BASE = "amqp://guest:guest@127.0.0.1:5672/"
PG_BASE = "postgresql://postgres@127.0.0.1:5432/"


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@dataclass(frozen=True)
class Isolated:
    name: str
    amqp_url: str
    database_url: str
    pg_base: str

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "QCARE_AMQP_URL": self.amqp_url,
            "QCARE_DATABASE_URL": self.database_url,
            "QCARE_LOG_LEVEL": "INFO",
            "QCARE_API_KEYS": "",
            **extra,
        }


async def create(prefix: str, amqp_base: str = AMQP_BASE, pg_base: str = PG_BASE) -> Isolated:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    rabbitmqctl("add_vhost", name)
    rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    iso = Isolated(
        name,
        amqp_base.rstrip("/") + "/" + quote(name, safe=""),
        pg_base.rstrip("/") + "/" + name,
        pg_base,
    )
    try:
        await migrate(iso.database_url)
    except BaseException:
        rabbitmqctl("delete_vhost", name)
        raise
    return iso


async def drop_database(pg_base: str, name: str) -> None:
    """Drop database `name` of the server at `pg_base`, closing its connections."""
    admin = await asyncpg.connect(pg_base.rstrip("/") + "/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def destroy(iso: Isolated) -> None:
    await drop_database(iso.pg_base, iso.name)
    rabbitmqctl("delete_vhost", iso.name)
