from __future__ import annotations

import pytest

from qcare_ingest.config import ApiKey, Settings
from qcare_ingest.errors import ConfigError

KEY1, KEY2 = "Qf3kZ8rT1vW9xY2bN6mP4sL7", "hJ5dG0cV8nB3xM1zA6qW9eR2"  # 24 characters, not words


def test_defaults_match_spec() -> None:
    s = Settings.from_env({})
    assert s.amqp_url == "amqp://guest:guest@127.0.0.1:5672/"
    assert s.database_url == "postgresql://postgres@127.0.0.1:5432/qcare"
    assert (s.http_host, s.http_port) == ("127.0.0.1", 8080)
    assert s.api_keys == {}


def test_named_api_keys() -> None:
    s = Settings.from_env({"QCARE_API_KEYS": f"qcare:{KEY1}, ops:{KEY2}"})
    assert s.api_keys == {KEY1: ApiKey("qcare"), KEY2: ApiKey("ops")}
    assert KEY1 not in repr(s)


def test_scoped_api_keys() -> None:
    k1, k2, k3, k4 = (
        "Ka7Lm2Np9Qr4St6Uv1Wx3Yz8",
        "Bc5Df8Gh1Jk4Lm7Np0Qr3St6",
        "Tu9:Vw2Xy5Za8Bc1De4Fg7Hj",  # a ":" in a secret: then its scopes must be given
        "Mn6Op9Qr2St5Uv8Wx1Yz4Ab7",
    )
    s = Settings.from_env(
        {
            "QCARE_API_KEYS": f"qcare:{k1}:post+status,ops:{k2}:post+status+read+admin,"
            f"reader:{k3}:read,old:{k4}"
        }
    )
    assert s.api_keys == {
        k1: ApiKey("qcare", frozenset({"post", "status"})),
        k2: ApiKey("ops", frozenset({"post", "status", "read", "admin"})),
        k3: ApiKey("reader", frozenset({"read"})),
        k4: ApiKey("old", frozenset({"post", "status"})),  # name:secret: the narrow default
    }
    assert s.masked()["QCARE_API_KEYS"] == (
        "old:****:post+status,ops:****:post+status+read+admin,qcare:****:post+status,"
        "reader:****:read"
    )
    assert not any(secret in str(s.masked()) for secret in s.api_keys)
    # the settings object goes through with_overrides unchanged
    assert s.with_overrides(http_port=1).api_keys == s.api_keys


@pytest.mark.parametrize(
    "raw",
    [
        "ops:SECRET2:post+reed",  # a mistyped scope must not widen or silently narrow a key
        "ops:SECRET2:",
        "ops::read",
        ":SECRET2:read",
        "ops:S1,ops:S2",  # the name is who the audit trail names
        "a:S1,b:S1",
    ],
)
def test_bad_api_keys(raw: str) -> None:
    with pytest.raises(ConfigError, match="QCARE_API_KEYS") as caught:
        Settings.from_env({"QCARE_API_KEYS": raw})
    assert "SECRET2" not in str(caught.value)
    assert "S1" not in str(caught.value)


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
    Settings.from_env({"QCARE_HTTP_HOST": "0.0.0.0", "QCARE_API_KEYS": f"a:{KEY1}"}).check_gateway()


def test_cli_overrides_are_validated_like_the_environment() -> None:
    base = Settings.from_env({})
    assert base.with_overrides(worker_concurrency=8).worker_concurrency == 8
    with pytest.raises(ConfigError, match="QCARE_WORKER_CONCURRENCY"):
        base.with_overrides(worker_concurrency=0)
    with pytest.raises(ConfigError, match="QCARE_HTTP_PORT"):
        base.with_overrides(http_port=99999)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://qcare:s3cr3t@db:5432/qcare",
        "postgresql://qcare@db:5432/qcare?password=s3cr3t",
        "postgresql://db/qcare?sslmode=verify-full&sslpassword=s3cr3t&application_name=x",
        "postgresql://qcare:p%40ss@db/qcare?PASSWORD=s3cr3t&passfile=/x",
        "amqp://user:s3cr3t@a:5672/,amqp://user:s3cr3t@b:5672/",
        "amqp://user:s3cr3t@[::1:5672/",  # not parseable: nothing of it is shown
    ],
)
def test_config_masks_every_password_in_a_url(url: str) -> None:
    masked = Settings.from_env({"QCARE_DATABASE_URL": url}).masked()["QCARE_DATABASE_URL"]
    assert "s3cr3t" not in masked
    assert "p%40ss" not in masked


def test_config_keeps_what_is_not_secret() -> None:
    url = "postgresql://qcare:pw@db:5432/qcare?sslmode=verify-full&password=pw"
    masked = Settings.from_env({"QCARE_DATABASE_URL": url}).masked()["QCARE_DATABASE_URL"]
    assert masked == "postgresql://qcare:****@db:5432/qcare?sslmode=verify-full&password=****"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres:Pa,ssw0rd@127.0.0.1:5432/db",
        "postgresql://postgres:pa#ss/w?rd@127.0.0.1:5432/db",
        "postgresql://u@h/db?password=a,b&sslmode=require",
    ],
)
def test_passwords_with_list_or_url_characters_are_masked_whole(url: str) -> None:
    masked = Settings.from_env({"QCARE_DATABASE_URL": url}).masked()["QCARE_DATABASE_URL"]
    for part in ("Pa,ssw0rd", "ssw0rd", "pa#ss", "w?rd", "a,b"):
        assert part not in masked, masked
    assert "****" in masked


def test_service_database_urls_default_to_the_shared_one() -> None:
    one = Settings.from_env({"QCARE_DATABASE_URL": "postgresql://owner:pw@db/qcare"})
    assert one.gateway_dsn == one.worker_dsn == "postgresql://owner:pw@db/qcare"
    split = Settings.from_env(
        {
            "QCARE_DATABASE_URL": "postgresql://owner:pw@db/qcare",
            "QCARE_GATEWAY_DATABASE_URL": "postgresql://gw:gpw@db/qcare",
            "QCARE_WORKER_DATABASE_URL": "postgresql://wk:wpw@db/qcare",
        }
    )
    assert (split.gateway_dsn, split.worker_dsn) == (
        "postgresql://gw:gpw@db/qcare",
        "postgresql://wk:wpw@db/qcare",
    )
    shown = split.masked()
    assert shown["QCARE_GATEWAY_DATABASE_URL"] == "postgresql://gw:****@db/qcare"
    assert "gpw" not in str(shown)
    assert "wpw" not in str(shown)


@pytest.mark.parametrize(
    ("variable", "url"),
    [
        ("QCARE_AMQP_URL", "amqp://qcare:p@ssw0rd@rmq1/qcare"),  # yarl reads up to the last @
        ("QCARE_AMQP_URL", "amqp://qcare:p@ssw0rd@rmq1/qcare,rmq2,amqp://u:p@ssw0rd@rmq3/q"),
        ("QCARE_DATABASE_URL", "postgresql://qcare:p@ssw0rd@db:5432/qcare"),
        ("QCARE_AMQP_URL", "amqp://qcare:pa ssw0rd@rmq1/qcare"),
    ],
)
def test_a_password_holding_an_at_sign_or_a_space_is_masked_whole(variable: str, url: str) -> None:
    masked = Settings.from_env({variable: url}).masked()[variable]
    assert "ssw0rd" not in masked, masked
    assert "rmq1" in masked or "db:5432" in masked
