"""`qcare-ingest audit --since` and the CLI's "who" (issue 14)."""

from __future__ import annotations

import getpass
from datetime import UTC, datetime, timedelta

import pytest

from qcare_ingest.audit import cli_user, parse_since

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", NOW - timedelta(days=7)),
        ("12h", NOW - timedelta(hours=12)),
        ("30m", NOW - timedelta(minutes=30)),
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC)),  # no offset: UTC
        ("2026-11-01T08:00:00+08:00", datetime(2026, 11, 1, tzinfo=UTC)),
    ],
)
def test_since(text: str, expected: datetime) -> None:
    assert parse_since(text, NOW) == expected


@pytest.mark.parametrize("text", ["7 days", "d", "yesterday", "-1d"])
def test_since_refuses_what_it_cannot_read(text: str) -> None:
    with pytest.raises(ValueError, match="isoformat"):
        parse_since(text, NOW)


def test_as_names_who_but_the_os_user_is_kept() -> None:
    user = getpass.getuser()
    who, where = cli_user("dr-chan")
    assert who == "dr-chan"
    assert where.startswith(f"cli:{user}@")
    assert cli_user(None)[0] == user
