"""Settings: one object, read once at start from QCARE_* variables (SPEC §1).

pydantic-settings does the reading and the type checks; a bad value stops the
process with a message naming the variable. `masked()` is what `qcare-ingest
config` prints: secrets never leave the process whole.
"""

from __future__ import annotations

import ipaddress
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .amqp_urls import addresses
from .errors import ConfigError

PREFIX = "QCARE_"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


SCOPES = ("post", "status", "read", "admin")
DEFAULT_SCOPES = frozenset({"post", "status"})
_SCOPE_LIST = re.compile(r"[a-z]+(?:\+[a-z]+)*")


@dataclass(frozen=True)
class ApiKey:
    """A named key and what it may do: `post` (the intake), `status` (GET /messages),
    `read` (personal data: GET /orders and every later view of it), `admin` (dead-letter
    operations, the console)."""

    name: str
    scopes: frozenset[str] = DEFAULT_SCOPES


def parse_api_keys(raw: str) -> dict[str, ApiKey]:
    """`qcare:SECRET1:post+status,ops:SECRET2:post+status+read+admin` -> {secret: ApiKey}.

    `name:secret` without scopes means `post+status`. The last `:`-part is read as scopes
    when it is lowercase words joined by `+` (a secret holding `:` needs its scopes given);
    an unknown scope, an empty name or secret, or a name or secret given twice is an error
    (the name is who the audit trail says read personal data)."""
    keys: dict[str, ApiKey] = {}
    names: set[str] = set()
    for item in filter(None, (part.strip() for part in raw.split(","))):
        name, sep, secret = item.partition(":")
        name, secret = name.strip(), secret.strip()
        scopes = DEFAULT_SCOPES
        head, colon, tail = secret.rpartition(":")
        if colon and not tail.strip():
            raise ValueError(f"key {name}: empty scopes after the last ':'")
        if colon and _SCOPE_LIST.fullmatch(tail.strip()):
            wanted = frozenset(tail.strip().split("+"))
            if not wanted <= set(SCOPES):  # not echoed: it may be part of a mistyped secret
                raise ValueError(f"key {name}: an unknown scope (scopes: {'+'.join(SCOPES)})")
            secret, scopes = head.strip(), wanted
        if not sep or not name or not secret:
            raise ValueError("entries must look like name:secret or name:secret:scope+scope")
        if name in names or secret in keys:
            raise ValueError(f"key {name} given twice (names and secrets must be unique)")
        names.add(name)
        keys[secret] = ApiKey(name, scopes)
    return keys


_AE_CHARS = re.compile(r"[\x20-\x5b\x5d-\x7e]{1,16}")  # AE VR: 16, no backslash, no controls


def _ae_title(value: str) -> str:
    """An AE title as given, trimmed; refused when empty, over 16 characters or not
    printable ASCII without a backslash (DICOM's AE value representation)."""
    title = value.strip()
    if not _AE_CHARS.fullmatch(title):
        raise ValueError(f"not an AE title (1-16 printable ASCII characters, no '\\'): {title!r}")
    return title


def parse_stations(raw: str) -> dict[str, str]:
    """`ROOM 1=CR01,ROOM 2=DX02` -> {location: station AE title}."""
    stations: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        location, sep, ae = item.partition("=")
        if not sep or not location.strip():
            raise ValueError("entries must look like location=AE_TITLE")
        stations[location.strip()] = _ae_title(ae)
    return stations


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# user-info's password: from "scheme://user:" to the last "@" before the host (a password
# may hold ",", "#", "/", "?", a space or an "@": yarl and libpq split user-info from the
# host at the last "@"; a password never reaches into the next URL: without user-info,
# "amqp://h:5672/,amqp://u:pw@h2" must not read "5672/,amqp://u:pw" as h's password)
_USERINFO_PASSWORD = re.compile(r"(?P<head>://[^:@/?#,\s]*:)(?P<secret>(?:(?!://)[^\r\n])*)(?=@)")
_SECRET_PARAM = re.compile(
    r"(?P<head>[?&;][^=&;#]*(?:pass|pwd|secret|token)[^=&;#]*=)(?P<secret>[^&;#\s]*)",
    re.IGNORECASE,
)


def _mask_url(url: str) -> str:
    """Every password of a URL (or of a comma-separated list of them) masked: the
    user-info's and any query parameter named like one (`password`, `sslpassword`, `token`,
    ...). Done on the text, not on a parse: a password with a "," or "#" in it is a URL
    libpq takes, and urlsplit would show part of it."""
    masked = _USERINFO_PASSWORD.sub(r"\g<head>****", url)
    return _SECRET_PARAM.sub(r"\g<head>****", masked)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, frozen=True, extra="ignore")

    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/qcare"
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    api_keys: Annotated[dict[str, ApiKey], NoDecode] = Field(default_factory=dict, repr=False)
    allowed_networks: Annotated[tuple[Network, ...], NoDecode] = ()
    worker_concurrency: int = Field(default=256, ge=1, le=10000)
    worker_batch: int = Field(default=64, ge=1, le=1000)
    worker_http_host: str = "127.0.0.1"
    worker_http_port: int = Field(default=0, ge=0, le=65535)
    publish_timeout: float = Field(default=5.0, gt=0)
    # the gateway's defences against slow or numerous clients
    body_timeout: float = Field(default=30.0, gt=0)  # seconds to receive a request body
    max_connections: int = Field(default=1000, ge=1)  # concurrent client connections
    shutdown_grace: float = Field(default=20.0, gt=0)
    delivery_limit: int = Field(default=5, ge=1)
    retry_delays: Annotated[tuple[int, ...], NoDecode] = (10, 60, 600)
    # the rest of the retry policy (retry.RetryPolicy, decision.decide): tries of one
    # message in the worker process (busy database, bug), their backoff and jitter
    retry_tries: int = Field(default=4, ge=1, le=100)
    retry_backoff: float = Field(default=0.05, ge=0)  # seconds after the 1st try, doubling
    retry_backoff_max: float = Field(default=2.0, ge=0)
    retry_jitter: float = Field(default=0.1, ge=0)  # up to this much more, at random
    # waiting for an unreachable database (never counted as a try), and for RabbitMQ
    db_wait: float = Field(default=0.2, gt=0)  # seconds, doubling
    db_wait_max: float = Field(default=5.0, gt=0)
    reconnect_wait: float = Field(default=0.5, gt=0)  # seconds, doubling
    reconnect_wait_max: float = Field(default=10.0, gt=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("api_keys", mode="before")
    @classmethod
    def _keys(cls, value: Any) -> Any:
        return parse_api_keys(value) if isinstance(value, str) else value

    @field_validator("amqp_url")
    @classmethod
    def _amqp_addresses(cls, value: str) -> str:
        """A malformed list of nodes stops a process at start, not at its first connect."""
        addresses(value)
        return value

    # Least privilege (issue 14): the gateway's and the workers' own database roles. Empty:
    # QCARE_DATABASE_URL, as before. `migrate` (run with the owner's QCARE_DATABASE_URL)
    # creates the roles these URLs name, with their passwords, and grants what each needs.
    gateway_database_url: str = ""
    worker_database_url: str = ""
    # `prune` keeps audit rows at least this long, whatever --older-than says (7 years)
    audit_retention_days: int = Field(default=2557, ge=1)

    # --- issue 16: the DICOM Modality Worklist SCP (`qcare-ingest worklist`) ---
    worklist_host: str = "127.0.0.1"
    worklist_port: int = Field(default=11112, ge=0, le=65535)
    worklist_ae: str = "QCARE"  # the called AE title modalities address
    # calling AE titles allowed to associate, comma-separated; empty: any
    worklist_calling_aes: Annotated[tuple[str, ...], NoDecode] = ()
    # location -> ScheduledStationAETitle, `ROOM 1=CR01,ROOM 2=DX02`; unlisted: empty
    worklist_stations: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    worklist_query_timeout: float = Field(default=10.0, gt=0)  # seconds for one C-FIND's read
    # the worklist's own read-only role (SELECT on patients, orders, order_services); empty:
    # QCARE_DATABASE_URL
    worklist_database_url: str = ""

    @property
    def worklist_dsn(self) -> str:
        return self.worklist_database_url or self.database_url

    @field_validator("worklist_ae")
    @classmethod
    def _ae_title(cls, value: str) -> str:
        return _ae_title(value)

    @field_validator("worklist_calling_aes", mode="before")
    @classmethod
    def _calling_aes(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(_ae_title(p) for p in value.split(",") if p.strip())
        return value

    @field_validator("worklist_stations", mode="before")
    @classmethod
    def _stations(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_stations(value)
        return value

    @property
    def gateway_dsn(self) -> str:
        return self.gateway_database_url or self.database_url

    @property
    def worker_dsn(self) -> str:
        return self.worker_database_url or self.database_url

    @field_validator("allowed_networks", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(ipaddress.ip_network(p.strip()) for p in value.split(",") if p.strip())
        return value

    @field_validator("retry_delays", mode="before")
    @classmethod
    def _delays(cls, value: Any) -> Any:
        if isinstance(value, str):
            delays = tuple(int(p) for p in value.split(",") if p.strip())
            if any(d <= 0 for d in delays):
                raise ValueError("delays must be positive seconds")
            return delays
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    # --- issue 14 part A: transport security and loud dev mode (one block, kept together) ---
    # the gateway serves HTTPS with both; a non-loopback listener needs them, or
    # behind_tls_proxy when a proxy in front terminates TLS
    tls_cert: str | None = None  # PEM certificate chain
    tls_key: str | None = Field(default=None, repr=False)  # PEM private key (a path)
    behind_tls_proxy: bool = False
    amqp_ca_file: str | None = None  # PEM CA bundle for amqps:// (else the system's)

    @field_validator("tls_cert", "tls_key", "amqp_ca_file", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("tls_cert", "tls_key", "amqp_ca_file")
    @classmethod
    def _readable_file(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @field_validator("api_keys")
    @classmethod
    def _strong_keys(cls, value: Mapping[str, Any]) -> Mapping[str, Any]:
        """Keys are refused at start when short or copied from an example (named, not quoted)."""
        for secret, holder in value.items():
            weakness = key_weakness(secret)
            if weakness is not None:
                name = holder if isinstance(holder, str) else getattr(holder, "name", "?")
                raise ValueError(f"the key named {name!r} {weakness}")
        return value

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None and self.tls_key is not None

    def check_transport(self) -> None:
        """The gateway's listener: plain HTTP only on loopback, unless a TLS proxy is in front."""
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("QCARE_TLS_CERT and QCARE_TLS_KEY must be set together")
        if not self.tls and not self.behind_tls_proxy and not is_loopback(self.http_host):
            raise ConfigError(
                f"QCARE_HTTP_HOST={self.http_host} is not loopback and QCARE_TLS_CERT/"
                "QCARE_TLS_KEY are not set: refusing to serve plain HTTP on the network "
                "(set QCARE_BEHIND_TLS_PROXY=1 if a proxy in front terminates TLS)"
            )

    # --- end of issue 14 part A block ---

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """From os.environ, or only from `env` when given (tests)."""
        try:
            if env is None:
                return cls()
            given = {
                name: env[PREFIX + name.upper()]
                for name in cls.model_fields
                if PREFIX + name.upper() in env
            }
            defaults = {
                name: f.get_default(call_default_factory=True)
                for name, f in cls.model_fields.items()
            }
            return cls(**{**defaults, **given})
        except ValidationError as exc:
            raise _config_error(exc) from None

    def with_overrides(self, **changes: Any) -> Settings:
        """CLI flags over the environment, validated like the environment is."""
        update = {k: v for k, v in changes.items() if v is not None}
        if not update:
            return self
        try:
            return type(self).model_validate({**self.__dict__, **update})
        except ValidationError as exc:
            raise _config_error(exc) from None

    def check_gateway(self) -> None:
        if not self.api_keys and not is_loopback(self.http_host):
            raise ConfigError(
                f"QCARE_API_KEYS is empty but QCARE_HTTP_HOST={self.http_host} is not loopback: "
                "refusing to serve personal data without authentication"
            )

    def masked(self) -> dict[str, Any]:
        """The effective configuration with secrets masked, as QCARE_* names."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name == "api_keys":
                value = ",".join(
                    f"{k.name}:****:{'+'.join(s for s in SCOPES if s in k.scopes)}"
                    for k in sorted(value.values(), key=lambda k: k.name)
                )
            elif name.endswith("_url"):
                value = _mask_url(value)
            elif isinstance(value, tuple):
                value = ",".join(str(v) for v in value)
            elif name == "worklist_stations":
                value = ",".join(f"{k}={v}" for k, v in value.items())
            out[PREFIX + name.upper()] = value
        return out


MIN_KEY_LENGTH = 24
# what marks a value copied from an example or typed by hand rather than generated
PLACEHOLDERS = ("change-me", "changeme", "change_me", "secret", "password", "passwd",
                "example", "placeholder", "replace", "xxxx", "1234", "qwerty")  # fmt: skip


def key_weakness(secret: str) -> str | None:
    """Why an API key must not be used, or None; never quotes the key."""
    if len(secret) < MIN_KEY_LENGTH:
        return f"is shorter than {MIN_KEY_LENGTH} characters: generate one"
    lowered = secret.lower()
    for word in PLACEHOLDERS:
        if word in lowered:
            return f"looks like a placeholder (contains {word!r}): generate one"
    return None


def _config_error(exc: ValidationError) -> ConfigError:
    first = exc.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else "?"
    return ConfigError(f"{PREFIX}{field.upper()}: {first['msg']}")


def load_or_exit(prog: str, *, gateway: bool = False, **overrides: Any) -> Settings:
    """For entry points: the settings, or a message naming the variable and exit code 2."""
    try:
        settings = Settings.from_env().with_overrides(**overrides)
        if gateway:
            settings.check_gateway()
            settings.check_transport()
    except ConfigError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return settings


def environment_names() -> list[str]:
    return [PREFIX + name.upper() for name in Settings.model_fields]


__all__ = ["Settings", "environment_names", "is_loopback", "load_or_exit", "parse_api_keys"]
