from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from qcare_ingest.dates import HONG_KONG
from qcare_ingest.fhir_search import (
    MAX_COUNT,
    DateRange,
    Paging,
    SearchError,
    Token,
    date_range,
    patient_search,
    request_search,
    token,
)
from qcare_ingest.identifiers import IdRef


def hk(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=HONG_KONG)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025", DateRange("eq", hk(2025, 1, 1), hk(2026, 1, 1))),
        ("ge2025-12", DateRange("ge", hk(2025, 12, 1), hk(2026, 1, 1))),
        ("lt2025-10-26", DateRange("lt", hk(2025, 10, 26), hk(2025, 10, 27))),
        ("le2025-10-26T15:51", DateRange("le", hk(2025, 10, 26, 15, 51), hk(2025, 10, 26, 15, 52))),
        (
            "gt2025-10-26T15:51:31Z",
            DateRange(
                "gt",
                datetime(2025, 10, 26, 15, 51, 31, tzinfo=UTC),
                datetime(2025, 10, 26, 15, 51, 32, tzinfo=UTC),
            ),
        ),
        (
            "eq2025-10-26T15:51:31.5+08:00",
            DateRange(
                "eq", hk(2025, 10, 26, 15, 51, 31, 500000), hk(2025, 10, 26, 15, 51, 31, 600000)
            ),
        ),
    ],
)
def test_date_precision_is_a_range(value: str, expected: DateRange) -> None:
    assert date_range("occurrence", value) == expected


def test_an_unencoded_plus_arrives_as_a_space() -> None:
    got = date_range("authored", "ge2025-10-26T15:51:31 08:00")
    assert got.start.utcoffset() == timedelta(hours=8)


@pytest.mark.parametrize(
    "value", ["", "26/10/2025", "xx2025", "2025-13", "2025-02-30", "2025-10-26T25:00", "ge2025-1"]
)
def test_bad_dates_are_refused(value: str) -> None:
    with pytest.raises(SearchError) as err:
        request_search([("authored", value)])
    assert "authored" in err.value.diagnostics


def test_tokens() -> None:
    assert token("identifier", "ACC-1") == Token(None, "ACC-1")
    assert token("identifier", "urn:qcare:id:accession|ACC-1") == Token(
        "urn:qcare:id:accession", "ACC-1"
    )
    assert token("identifier", "|ACC-1") == Token("", "ACC-1")
    assert token("identifier", "urn:qcare:id:chitno|") == Token("urn:qcare:id:chitno", None)
    assert token("identifier", r"sys|a\|b") == Token("sys", "a|b")


def test_request_search_ands_repeats_and_ors_commas() -> None:
    search = request_search(
        [
            ("identifier", r"ACC-1,ACC\,2"),
            ("patient", "Patient/hkid-A1234563"),
            ("occurrence", "ge2025-10-01"),
            ("occurrence", "lt2025-11-01"),
            ("status", "active,completed"),
            ("_count", "500"),
            ("_offset", "40"),
            ("_format", "json"),
        ]
    )
    assert search.identifiers == ((Token(None, "ACC-1"), Token(None, "ACC,2")),)
    assert search.patients == ((IdRef("HKID:A1234563", None),),)
    assert [r[0].prefix for r in search.occurrence] == ["ge", "lt"]
    assert search.statuses == (("active", "completed"),)
    assert search.paging == Paging(MAX_COUNT, 40)


def test_patient_reference_forms() -> None:
    for value in ["hkid-A1234563", "Patient/hkid-A1234563", "http://h/fhir/Patient/hkid-A1234563"]:
        assert request_search([("patient", value)]).patients == ((IdRef("HKID:A1234563", None),),)
    assert request_search([("patient", "someone")]).patients == ((None,),)
    with pytest.raises(SearchError, match="must reference a Patient"):
        request_search([("patient", "Practitioner/1")])


@pytest.mark.parametrize(
    ("pairs", "says"),
    [
        ([("name", "CHAN")], "'name' is not supported"),
        ([("identifier:text", "x")], "modifiers are not supported"),
        ([("status", "done")], "'status' must be one of"),
        ([("_count", "-1")], "'_count'"),
        ([("_count", "ten")], "'_count'"),
        ([("_offset", "1"), ("_offset", "2")], "more than once"),
        ([("_format", "xml")], "only JSON"),
        ([("identifier", "")], "empty value"),
        ([("identifier", "a,,b")], "empty value"),
        ([("identifier", "a|b|c")], "more than one '|'"),
    ],
)
def test_refusals_name_the_parameter(pairs: list[tuple[str, str]], says: str) -> None:
    with pytest.raises(SearchError, match=says):
        request_search(pairs)


def test_refusals_never_echo_a_value() -> None:
    with pytest.raises(SearchError) as err:
        request_search([("identifier", "A123456(3)|x|y")])
    assert "A123456" not in err.value.diagnostics
    with pytest.raises(SearchError) as err:
        patient_search([("A1234563", "x")])
    assert "A1234563" not in err.value.diagnostics  # nor a name that could be an identifier
    with pytest.raises(SearchError, match="'given' is not supported"):
        patient_search([("given", "TAI MAN")])


def test_patient_search_needs_an_identifier_or_id() -> None:
    with pytest.raises(SearchError, match="needs 'identifier'"):
        patient_search([("_count", "5")])
    search = patient_search([("identifier", "urn:qcare:id:hkid|a123456(3)")])
    assert search.identifiers == ((Token("urn:qcare:id:hkid", "a123456(3)"),),)
    assert patient_search([("_id", "passno-K1")]).ids == ((IdRef("PASSNO:K1", None),),)


@pytest.mark.parametrize(
    "value",
    ["0001", "0001-01-01", "lt0001-01-01", "9999", "9999-12-31", "gt9999-12-31",
     "9999-12-31T23:59:59.999999Z", "0001-01-01T00:00+14:00"],
)  # fmt: skip
def test_dates_at_the_calendar_s_ends_are_searchable(value: str) -> None:
    """Real dates: 9999-12-31's end overflowed (400 "does not exist"), and 0001-01-01 in
    Hong Kong time is year 0 in UTC, which asyncpg cannot send (503 "database unavailable",
    Retry-After, for a search that can never succeed)."""
    got = date_range("occurrence", value)
    assert got.start <= got.end
    got.start.astimezone(UTC)  # what asyncpg does to a timestamptz
    got.end.astimezone(UTC)


@pytest.mark.parametrize(
    "value",
    ["urn:qcare:id:hkid|", "urn:qcare:id:passport|", "urn:qcare:id:hkid|,urn:qcare:id:passport|",
     "urn:qcare:id:hkid|A1234563,urn:qcare:id:passport|"],
)  # fmt: skip
def test_a_patient_search_by_a_system_alone_is_refused(value: str) -> None:
    """`system|` means any value of the system: every patient with an HKID, a wholesale
    listing the README says Patient search never gives."""
    with pytest.raises(SearchError) as err:
        patient_search([("identifier", value)])
    assert "identifier" in err.value.diagnostics


@pytest.mark.parametrize("value", ["1000000000", "99999999999", "0" * 12 + "150", "9" * 200])
def test_any_larger_count_is_read_as_the_maximum(value: str) -> None:
    """README: `_count` "at most 100 (more is read as 100)"; ten digits or more were a 400."""
    assert request_search([("_count", value)]).paging.count == MAX_COUNT
