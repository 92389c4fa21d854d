"""QCARE_AMQP_URL naming a cluster's nodes (issue 17): the forms, and masking every password."""

from __future__ import annotations

import pytest

from qcare_ingest.amqp_urls import addresses, where
from qcare_ingest.config import Settings


def test_one_url_is_one_address() -> None:
    assert addresses("amqp://guest:guest@127.0.0.1:5672/") == ["amqp://guest:guest@127.0.0.1:5672/"]


def test_full_urls() -> None:
    value = "amqps://a:pw@h1:5681/v, amqps://b:pw2@h2/v?heartbeat=5"
    assert addresses(value) == ["amqps://a:pw@h1:5681/v", "amqps://b:pw2@h2/v?heartbeat=5"]


@pytest.mark.parametrize(
    "value",
    [
        "amqps://a:pw@h1/v,amqp://a:pw@h2/v",  # a failover would send the password in clear
        "amqp://a:pw@h1/v,http://h2/v",
        "http://h1/v",
    ],
)
def test_mixed_or_foreign_schemes_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="amqp"):
        addresses(value)


def test_host_port_items_share_the_first_urls_scheme_credentials_vhost_and_query() -> None:
    value = "amqps://qcare:s3cret@rmq1:5671/qcare%2Fprod?heartbeat=30,rmq2:5672,rmq3,[::1]:5673"
    assert addresses(value) == [
        "amqps://qcare:s3cret@rmq1:5671/qcare%2Fprod?heartbeat=30",
        "amqps://qcare:s3cret@rmq2:5672/qcare%2Fprod?heartbeat=30",
        "amqps://qcare:s3cret@rmq3/qcare%2Fprod?heartbeat=30",  # the scheme's port
        "amqps://qcare:s3cret@[::1]:5673/qcare%2Fprod?heartbeat=30",
    ]
    assert [where(a) for a in addresses(value)] == [
        "rmq1:5671", "rmq2:5672", "rmq3:5671", "[::1]:5673"
    ]  # fmt: skip


def test_a_comma_in_a_single_urls_password_is_still_one_url() -> None:
    assert addresses("amqp://u:a,b,c@h:5672/v") == ["amqp://u:a,b,c@h:5672/v"]


@pytest.mark.parametrize("value", ["", "h1:5672,h2:5672", " ,amqp://h/"])
def test_a_list_must_start_with_a_full_url(value: str) -> None:
    with pytest.raises(ValueError, match="full URL"):
        addresses(value)


def test_a_bad_port_is_refused() -> None:
    with pytest.raises(ValueError, match="bad port"):
        addresses("amqp://h1/,h2:99999")


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (
            "amqp://qcare:s3cr3t@h1:5672/v,h2:5672,h3",
            "amqp://qcare:****@h1:5672/v,h2:5672,h3",
        ),
        (
            "amqp://h1:5672/,amqp://u:s3cr3t@h2/,amqp://w:s3cr3t2@h3/?password=s3cr3t",
            "amqp://h1:5672/,amqp://u:****@h2/,amqp://w:****@h3/?password=****",
        ),
    ],
)
def test_config_masks_the_password_of_every_address(value: str, shown: str) -> None:
    masked = Settings.from_env({"QCARE_AMQP_URL": value}).masked()["QCARE_AMQP_URL"]
    assert masked == shown


def test_a_malformed_node_list_is_a_configuration_error() -> None:
    """Refused when the settings are read (exit 2 at start), not at the first connect."""
    import pytest

    from qcare_ingest.config import Settings
    from qcare_ingest.errors import ConfigError

    with pytest.raises(ConfigError, match="QCARE_AMQP_URL"):
        Settings.from_env({"QCARE_AMQP_URL": "h1:5672,h2"})
    ok = Settings.from_env({"QCARE_AMQP_URL": "amqp://u:p@h1:5672/v,h2:5673"})
    assert ok.amqp_url == "amqp://u:p@h1:5672/v,h2:5673"
