"""Settings: the only place that reads the environment (SPEC §1)."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import ConfigError

DEFAULTS: dict[str, str] = {
    "QCARE_AMQP_URL": "amqp://guest:guest@127.0.0.1:5672/",
    "QCARE_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/qcare",
    "QCARE_HTTP_HOST": "127.0.0.1",
    "QCARE_HTTP_PORT": "8080",
    "QCARE_API_KEYS": "",
    "QCARE_WORKER_CONCURRENCY": "32",
    "QCARE_PUBLISH_TIMEOUT": "5",
    "QCARE_SHUTDOWN_GRACE": "20",
    "QCARE_DELIVERY_LIMIT": "5",
    "QCARE_LOG_LEVEL": "INFO",
    "QCARE_RETRY_DELAYS": "10,60,600",
}


def _int(env: Mapping[str, str], name: str, minimum: int = 0) -> int:
    raw = env.get(name, DEFAULTS[name])
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum}")
    return value


def _float(env: Mapping[str, str], name: str) -> float:
    raw = env.get(name, DEFAULTS[name])
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value <= 0:
        raise ConfigError(f"{name}={value} must be positive")
    return value


def _delays(env: Mapping[str, str]) -> tuple[int, ...]:
    raw = env.get("QCARE_RETRY_DELAYS", DEFAULTS["QCARE_RETRY_DELAYS"])
    try:
        delays = tuple(int(part) for part in raw.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"QCARE_RETRY_DELAYS={raw!r} must be seconds, comma-separated") from None
    if any(d <= 0 for d in delays):
        raise ConfigError("QCARE_RETRY_DELAYS must be positive seconds")
    return delays


def parse_api_keys(raw: str) -> dict[str, str]:
    """`qcare:SECRET1,ops:SECRET2` -> {secret: name}."""
    keys: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        name, sep, secret = item.partition(":")
        if not sep or not name.strip() or not secret.strip():
            raise ConfigError("QCARE_API_KEYS entries must look like name:secret")
        keys[secret.strip()] = name.strip()
    return keys


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Settings:
    amqp_url: str = DEFAULTS["QCARE_AMQP_URL"]
    database_url: str = DEFAULTS["QCARE_DATABASE_URL"]
    http_host: str = DEFAULTS["QCARE_HTTP_HOST"]
    http_port: int = 8080
    api_keys: dict[str, str] = field(default_factory=dict, repr=False)
    worker_concurrency: int = 32
    publish_timeout: float = 5.0
    shutdown_grace: float = 20.0
    delivery_limit: int = 5
    log_level: str = "INFO"
    retry_delays: tuple[int, ...] = (10, 60, 600)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            amqp_url=env.get("QCARE_AMQP_URL", DEFAULTS["QCARE_AMQP_URL"]),
            database_url=env.get("QCARE_DATABASE_URL", DEFAULTS["QCARE_DATABASE_URL"]),
            http_host=env.get("QCARE_HTTP_HOST", DEFAULTS["QCARE_HTTP_HOST"]),
            http_port=_int(env, "QCARE_HTTP_PORT"),
            api_keys=parse_api_keys(env.get("QCARE_API_KEYS", "")),
            worker_concurrency=_int(env, "QCARE_WORKER_CONCURRENCY", minimum=1),
            publish_timeout=_float(env, "QCARE_PUBLISH_TIMEOUT"),
            shutdown_grace=_float(env, "QCARE_SHUTDOWN_GRACE"),
            delivery_limit=_int(env, "QCARE_DELIVERY_LIMIT", minimum=1),
            log_level=env.get("QCARE_LOG_LEVEL", DEFAULTS["QCARE_LOG_LEVEL"]).upper(),
            retry_delays=_delays(env),
        )

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def check_gateway(self) -> None:
        if not self.api_keys and not is_loopback(self.http_host):
            raise ConfigError(
                f"QCARE_API_KEYS is empty but QCARE_HTTP_HOST={self.http_host} is not loopback: "
                "refusing to serve personal data without authentication"
            )
