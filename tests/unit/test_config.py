from __future__ import annotations

import pytest

from qcare_ingest.config import Settings
from qcare_ingest.errors import ConfigError


def test_defaults_match_spec() -> None:
    s = Settings.from_env({})
    assert s.amqp_url == "amqp://guest:guest@127.0.0.1:5672/"
    assert s.database_url == "postgresql://postgres@127.0.0.1:5432/qcare"
    assert (s.http_host, s.http_port) == ("127.0.0.1", 8080)
    assert s.api_keys == {}


def test_named_api_keys() -> None:
    s = Settings.from_env({"QCARE_API_KEYS": "qcare:SECRET1, ops:SECRET2"})
    assert s.api_keys == {"SECRET1": "qcare", "SECRET2": "ops"}
    assert "SECRET1" not in repr(s)


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"QCARE_HTTP_PORT": "eighty"}, "QCARE_HTTP_PORT"),
        ({"QCARE_API_KEYS": "nocolon"}, "QCARE_API_KEYS"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        Settings.from_env(env)


def test_no_keys_only_on_loopback() -> None:
    Settings.from_env({"QCARE_HTTP_HOST": "127.0.0.1"}).check_gateway()
    with pytest.raises(ConfigError, match="QCARE_API_KEYS"):
        Settings.from_env({"QCARE_HTTP_HOST": "0.0.0.0"}).check_gateway()
    Settings.from_env({"QCARE_HTTP_HOST": "0.0.0.0", "QCARE_API_KEYS": "a:b"}).check_gateway()


def test_cli_overrides_are_validated_like_the_environment() -> None:
    base = Settings.from_env({})
    assert base.with_overrides(worker_concurrency=8).worker_concurrency == 8
    with pytest.raises(ConfigError, match="QCARE_WORKER_CONCURRENCY"):
        base.with_overrides(worker_concurrency=0)
    with pytest.raises(ConfigError, match="QCARE_HTTP_PORT"):
        base.with_overrides(http_port=99999)
