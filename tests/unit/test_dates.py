from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from qcare_ingest.dates import (
    HONG_KONG,
    parse_dob,
    parse_dotnet,
    parse_study_time,
    stored_instant,
    to_instant,
)


def test_seven_fraction_digits_keep_the_tick() -> None:
    parsed = parse_dotnet("2025-10-26T15:51:31.8166249+08:00")
    assert parsed is not None
    assert parsed.value.microsecond == 816624
    assert parsed.extra_ticks == 9


def test_no_offset_is_hong_kong_time() -> None:
    parsed = parse_dotnet("2025-10-26T15:51:31")
    assert parsed is not None
    assert to_instant(parsed) == datetime(2025, 10, 26, 7, 51, 31, tzinfo=UTC)


def test_ms_date_form_is_the_utc_instant() -> None:
    parsed = parse_dotnet("/Date(1761465091816+0800)/")
    assert parsed is not None
    assert to_instant(parsed) == datetime(2025, 10, 26, 7, 51, 31, 816000, tzinfo=UTC)


def test_date_only_plus_study_time() -> None:
    parsed = parse_dotnet("2025-10-26")
    assert parsed is not None
    assert parsed.date_only
    instant = to_instant(parsed, parse_study_time("1551"))
    assert instant == datetime(2025, 10, 26, 15, 51, tzinfo=HONG_KONG)


@pytest.mark.parametrize(
    "text",
    ["", "2025-13-01", "1761465091", "yesterday", "2025-10-26T25:00", "2025-10-26T10:55+58:49"],
)
def test_rejected_dates(text: str) -> None:
    assert parse_dotnet(text) is None


def test_xml_needs_the_t() -> None:
    assert parse_dotnet("2025-10-26 15:51:31") is not None
    assert parse_dotnet("2025-10-26 15:51:31", xml=True) is None


@pytest.mark.parametrize("text", ["15:51", "15:51:31", "1551", "155131"])
def test_study_time_forms(text: str) -> None:
    assert parse_study_time(text) in (time(15, 51), time(15, 51, 31))


@pytest.mark.parametrize(
    "text", ["1980-02-29", "19800229", "29/02/1980", "1980-02-29T00:00:00+08:00"]
)
def test_dob_forms(text: str) -> None:
    assert parse_dob(text) == date(1980, 2, 29)


def test_unparseable_dob_is_none() -> None:
    assert parse_dob("sample string 6") is None


def test_largest_offset_below_a_day_is_kept() -> None:
    parsed = parse_dotnet("2025-10-26T10:55-23:59")
    assert parsed is not None
    assert parsed.value.utcoffset() == -timedelta(hours=23, minutes=59)


@pytest.mark.parametrize(
    "text",
    [
        "0001-01-01T00:00:00Z",
        "0001-01-01T08:00:00+08:00",
        "9999-12-31T23:59:59.9999999Z",
        "9999-12-31T23:59:59.999999+00:00",
        "0001-01-01T07:59:59",  # Hong Kong time: before year 1 in UTC
    ],
)
def test_the_instants_asyncpg_stores_as_infinity_are_no_instant(text: str) -> None:
    """asyncpg writes UTC's first and last microsecond as -infinity / infinity and reads
    them back naive: to_instant refuses them like the values outside UTC (text kept)."""
    parsed = parse_dotnet(text)
    assert parsed is not None
    assert to_instant(parsed) is None


def test_the_microseconds_next_to_the_ends_are_instants() -> None:
    first = parse_dotnet("0001-01-01T00:00:00.000001Z")
    last = parse_dotnet("9999-12-31T15:59:59.999998Z")
    assert first is not None
    assert last is not None
    assert to_instant(first) == datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC)
    assert to_instant(last) == datetime(9999, 12, 31, 15, 59, 59, 999998, tzinfo=UTC)


def test_stored_infinity_reads_as_no_instant() -> None:
    aware = datetime(2025, 10, 26, 7, 51, tzinfo=UTC)
    assert stored_instant(aware) is aware
    assert stored_instant(None) is None
    assert stored_instant(datetime.min) is None  # asyncpg's -infinity
    assert stored_instant(datetime.max) is None  # and infinity
