"""Worklist key matching (PS3.4 C.2.2.2): wildcards, names, date and time ranges."""

from __future__ import annotations

from datetime import date, time

import pytest

from qcare_ingest.worklist.matching import (
    InvalidQuery,
    Key,
    date_range,
    key_matches,
    like_pattern,
    literal_runs,
    name_match,
    prepare,
    time_range,
    wildcard_match,
)


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("CR", "CR", True),
        ("C*", "CR", True),
        ("*", "", True),
        ("C?", "CR", True),
        ("C?", "C", False),
        ("*R", "CR", True),
        ("*X*", "CR", False),
        ("A*B*C", "AxxBxxC", True),
        ("A*B*C", "AxxBxxCx", False),
        ("a*", "ABC", False),  # case-sensitive
        ("??", "陳大", True),  # ? is one character, not one byte
    ],
)
def test_wildcards(pattern: str, value: str, expected: bool) -> None:
    assert wildcard_match(pattern, value) is expected


def test_a_pathological_pattern_is_linear_enough() -> None:
    """No regular expression, no backtracking blow-up: a pattern that would take a
    backtracking matcher ages (nested stars that almost match) finishes at once."""
    assert wildcard_match("*a" * 200 + "b", "a" * 2000) is False
    assert wildcard_match("*" * 5000, "x" * 5000) is True


def test_like_pattern_escapes_sql_wildcards() -> None:
    assert like_pattern("A%B_C\\D*E?") == "A\\%B\\_C\\\\D%E_"
    assert literal_runs("CHAN*^TAI M?N") == ["CHAN", "TAI", "M", "N"]
    assert literal_runs("*") == []


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("CHAN^TAI MAN", True),
        ("chan^tai man", True),  # PN: any case
        ("CHAN", True),  # the family name alone: the given name is universal
        ("CHAN^", True),
        ("CHAN^TAI*", True),
        ("*TAI*", True),  # anywhere in the whole name
        ("C*", True),
        ("^TAI MAN", True),
        ("WONG", False),
        ("CHAN^SIU MING", False),
        ("CHAN^TAI MAN^^MR", False),  # a prefix the item does not have
        ("CHAN^TAI MAN^^", True),  # empty trailing components are universal
    ],
)
def test_person_names(pattern: str, expected: bool) -> None:
    assert name_match(pattern, "CHAN^TAI MAN") is expected


def test_date_ranges() -> None:
    assert date_range("20251026") == date_range("20251026-20251026")
    r = date_range("20251020-20251026")
    assert date(2025, 10, 20) in r
    assert date(2025, 10, 26) in r
    assert date(2025, 10, 27) not in r
    assert date(1900, 1, 1) in date_range("-20251026")
    assert date(2999, 1, 1) in date_range("20251026-")
    for bad in ("2025-10-26", "20251301", "20251026-20251001", "-", "abc", "2025102"):
        with pytest.raises(InvalidQuery):
            date_range(bad)


def test_time_ranges_take_partial_times_as_periods() -> None:
    r = time_range("10-11")  # 10:00:00 to 11:59:59.999999
    assert time(10, 0) in r
    assert time(11, 59, 59) in r
    assert time(12, 0) not in r
    assert time(9, 59, 59) not in r
    r = time_range("1030-")
    assert time(10, 30) in r
    assert time(10, 29, 59) not in r
    assert time(10, 30, 5) in time_range("103005")
    assert time(10, 30, 6) not in time_range("103005")
    assert time(0, 0) in time_range("-0900")
    with pytest.raises(InvalidQuery):
        time_range("2500")


def test_keys_match_the_value_returned() -> None:
    def k(vr: str, value: str) -> Key:
        return Key(0, vr, value, "X")

    assert key_matches(k("DA", ""), "")  # universal, even with no value
    assert not key_matches(k("DA", "20251026"), "")  # no date never matches a date
    assert key_matches(k("DA", "20251020-20251030"), "20251026")
    assert key_matches(k("TM", "08-09"), "081500")
    assert key_matches(k("UI", "1.2.3\\2.25.9"), "2.25.9")
    assert not key_matches(k("UI", "1.2.3"), "1.2.34")
    assert key_matches(k("SH", "ACC*"), "ACC1")
    assert not key_matches(k("SH", "acc1"), "ACC1")  # not a name: case-sensitive
    assert key_matches(k("CS", "CR "), "CR")  # space padding is not significant
    assert key_matches(k("LO", "*"), "")


def test_keys_longer_than_their_vr_are_refused() -> None:
    prepare(Key(0, "SH", "A" * 16, "AccessionNumber"))
    with pytest.raises(InvalidQuery):
        prepare(Key(0, "SH", "*" * 17, "AccessionNumber"))
    with pytest.raises(InvalidQuery):
        prepare(Key(0, "PN", "*" * 100_000, "PatientName"))
    with pytest.raises(InvalidQuery):
        prepare(Key(0, "DA", "2025", "PatientBirthDate"))


@pytest.mark.parametrize(
    ("vr", "keyword", "value"),
    [("LO", "PatientID", "A12\x00"), ("PN", "PatientName", "CH\x00AN*"),
     ("SH", "AccessionNumber", "A\x00*"), ("PN", "PatientName", "CHAN\udcff")],
)  # fmt: skip
def test_a_key_no_stored_text_can_hold_is_an_invalid_query(
    vr: str, keyword: str, value: str
) -> None:
    """A NUL (or a lone surrogate) reached PostgreSQL, which refused the statement: the
    query was answered C001 and counted as a database failure (and asyncpg's message for
    a surrogate quotes the value, a name, into the log). It is the peer's error: A900."""
    with pytest.raises(InvalidQuery):
        prepare(Key(0, vr, value, keyword))
