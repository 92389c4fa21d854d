"""Issue 14: TLS settings, the listener's refusal off loopback, weak keys, the AMQP client's
TLS context and the OpenAPI document's security per settings."""

from __future__ import annotations

import secrets
import ssl
from pathlib import Path

import pytest

from qcare_ingest.config import Settings
from qcare_ingest.errors import ConfigError
from qcare_ingest.openapi import document
from qcare_ingest.tls import amqp_context, server_context
from tests.support.certs import Authority, Issued

STRONG = secrets.token_urlsafe(32)


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    return Authority.create(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def issued(authority: Authority) -> Issued:
    return authority.issue("server", "localhost", "127.0.0.1")


def test_plain_http_only_on_loopback_unless_behind_a_tls_proxy(issued: Issued) -> None:
    Settings.from_env({}).check_transport()  # 127.0.0.1
    Settings.from_env({"QCARE_HTTP_HOST": "::1"}).check_transport()
    public = {"QCARE_HTTP_HOST": "0.0.0.0"}
    with pytest.raises(ConfigError, match=r"QCARE_TLS_CERT.*QCARE_BEHIND_TLS_PROXY"):
        Settings.from_env(public).check_transport()
    Settings.from_env({**public, "QCARE_BEHIND_TLS_PROXY": "1"}).check_transport()
    tls = {"QCARE_TLS_CERT": str(issued.cert), "QCARE_TLS_KEY": str(issued.key)}
    settings = Settings.from_env({**public, **tls})
    settings.check_transport()
    assert settings.tls


@pytest.mark.parametrize("given", ["QCARE_TLS_CERT", "QCARE_TLS_KEY"])
def test_certificate_and_key_come_together(issued: Issued, given: str) -> None:
    with pytest.raises(ConfigError, match="QCARE_TLS_CERT and QCARE_TLS_KEY"):
        Settings.from_env({given: str(issued.cert)}).check_transport()


def test_tls_files_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"QCARE_TLS_CERT: .*no such file"):
        Settings.from_env({"QCARE_TLS_CERT": str(tmp_path / "x.pem")})
    with pytest.raises(ConfigError, match=r"QCARE_AMQP_CA_FILE: .*no such file"):
        Settings.from_env({"QCARE_AMQP_CA_FILE": str(tmp_path / "ca.pem")})
    assert Settings.from_env({"QCARE_TLS_CERT": ""}).tls_cert is None  # empty means unset


@pytest.mark.parametrize(
    ("secret", "why"),
    [
        ("k-qcare-123", "shorter than 24"),
        ("change-me-too", "shorter than 24"),
        ("change-me-please-0123456789", "placeholder"),
        ("CHANGEME" + "a1b2c3d4e5f6g7h8i9", "placeholder"),
        ("my-super-secret-api-key-2024", "placeholder"),
        ("password" + secrets.token_hex(12), "placeholder"),
        ("https://example.org/key/abcdefghij", "placeholder"),
    ],
)
def test_weak_keys_are_refused_naming_the_variable_not_the_key(secret: str, why: str) -> None:
    with pytest.raises(ConfigError, match="QCARE_API_KEYS") as refused:
        Settings.from_env({"QCARE_API_KEYS": f"qcare:{STRONG},ops:{secret}"})
    assert why in str(refused.value)
    assert "'ops'" in str(refused.value)
    assert secret not in str(refused.value)


def test_generated_keys_are_accepted() -> None:
    other = secrets.token_hex(16)
    s = Settings.from_env({"QCARE_API_KEYS": f"qcare:{STRONG},ops:{other}"})
    assert set(s.api_keys) == {STRONG, other}


def test_server_context_is_tls_1_2_or_newer(issued: Issued) -> None:
    context = server_context(str(issued.cert), str(issued.key))
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2


def test_amqp_context_verifies_the_broker(authority: Authority) -> None:
    assert amqp_context("amqp://guest:guest@127.0.0.1:5672/", str(authority.cert)) is None
    context = amqp_context("amqps://u:p@rabbit.internal:5671/qcare", str(authority.cert))
    assert context is not None
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    subjects = [dict(x[0] for x in c["subject"]) for c in context.get_ca_certs()]
    assert {"commonName": "qcare test CA"} in subjects
    # aiormq's own ?cafile= still works without the setting
    from_url = amqp_context(f"amqps://u:p@h/?cafile={authority.cert}", None)
    assert from_url is not None
    assert {"commonName": "qcare test CA"} in [
        dict(x[0] for x in c["subject"]) for c in from_url.get_ca_certs()
    ]


def test_openapi_security_follows_the_settings() -> None:
    keyed = document(auth=True)
    assert keyed["security"] == [{"bearer": []}, {"apiKey": []}]  # no anonymous alternative
    assert "OFF" not in keyed["info"]["description"]
    open_ = document(auth=False)
    assert open_["security"] == [{}]
    assert "AUTHENTICATION IS OFF" in open_["info"]["description"]
    for doc in (keyed, open_):  # probes stay anonymous either way
        assert doc["paths"]["/healthz"]["get"]["security"] == [{}]
