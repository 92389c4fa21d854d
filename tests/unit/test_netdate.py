"""netdate.parse_invariant against what the reference server's DateTime.Parse answered.

Every row of AGREED was posted to the reference server as the form field `studyDate` (form
binding converts with DateTime.Parse, InvariantCulture): the expected value is the wall clock
it bound (no offset) or the UTC instant (`...Z`) when it bound a Local or Utc value, or None
when it refused the text.
"""

from __future__ import annotations

import time
from datetime import UTC

import pytest

from qcare_ingest.binding.netdate import MAX_LENGTH, parse_invariant
from qcare_ingest.dates import parse_dotnet

AGREED = [
    ("2025-10", "2025-10-01T00:00:00"),
    ("10/2025", "2025-10-01T00:00:00"),
    ("2025.1", "2025-01-01T00:00:00"),
    ("Oct 2025", "2025-10-01T00:00:00"),
    ("October, 2025", "2025-10-01T00:00:00"),
    ("2025 Oct", "2025-10-01T00:00:00"),
    ("2025-13", None),
    ("2025-10 10:00", None),
    ("2025-10Z", None),
    ("2025-01-06", "2025-01-06T00:00:00"),
    ("2025-1-6", "2025-01-06T00:00:00"),
    ("2025/10/26", "2025-10-26T00:00:00"),
    ("2025.10.26", "2025-10-26T00:00:00"),
    ("0025-01-06", "0025-01-06T00:00:00"),
    ("2024-02-29", "2024-02-29T00:00:00"),
    ("2023-02-29", None),
    ("2025-13-01", None),
    ("2025-10-26T10:00:00Z", "2025-10-26T10:00:00Z"),
    ("2025-10-26t10:00z", "2025-10-26T10:00:00Z"),
    ("2025-10-26T10:00:00 Z", "2025-10-26T10:00:00Z"),
    ("2025-10-26T10:00:00+08", "2025-10-26T02:00:00Z"),
    ("2025-10-26T10:00:00+0800", "2025-10-26T02:00:00Z"),
    ("2025-10-26T10:00:00+08:00", "2025-10-26T02:00:00Z"),
    ("2025-10-26T10:00:00+8", "2025-10-26T02:00:00Z"),
    ("2025-10-26T10:00:00-05:30", "2025-10-26T15:30:00Z"),
    ("2025-10-26T10:00:00+14:00", "2025-10-25T20:00:00Z"),
    ("2025-10-26T10:00:00+14:01", None),
    ("2025-10-26T10:00:00+08:60", None),
    ("2025-10-26T10:00:00.1234567", "2025-10-26T10:00:00.1234567"),
    ("2025-10-26T10:00:00.12345678", "2025-10-26T10:00:00.1234568"),
    ("2025-10-26T10:00:00.00000005", "2025-10-26T10:00:00.0000001"),
    ("2025-10-26T10:00:00.00000015", "2025-10-26T10:00:00.0000002"),
    ("2025-10-26T23:59:59.99999999", "2025-10-27T00:00:00"),
    ("2025-10-26T10:00:00.", None),
    ("2025-10-26T10", None),
    ("2025-10-26T1:2:3", None),
    ("2025-10-26T24:00", None),
    ("2025-10-26 10:00", "2025-10-26T10:00:00"),
    ("2025-10-26 1:2:3", "2025-10-26T01:02:03"),
    ("2025-10-26  10:00", "2025-10-26T10:00:00"),
    ("2025-10-26\t10:00", "2025-10-26T10:00:00"),
    ("2025-10-26, 10:00", "2025-10-26T10:00:00"),
    ("2025-10-26 10:00:00.5+08", "2025-10-26T02:00:00.5000000Z"),
    ("2025-10-26 10:00:00 +08:00", "2025-10-26T02:00:00Z"),
    ("2025-10-26 10:00:00 GMT", "2025-10-26T10:00:00Z"),
    ("2025-10-26 10:00:00 gmt", "2025-10-26T10:00:00Z"),
    ("2025-10-26 10:00:00Z", "2025-10-26T10:00:00Z"),
    ("2025-10-26 10:00:00 UTC", None),
    ("2025-10-26 10:00:00 +15", None),
    ("2025-10-26 10:00 PM", "2025-10-26T22:00:00"),
    ("2025-10-26 10:00PM", "2025-10-26T22:00:00"),
    ("2025-10-26 10 PM", "2025-10-26T22:00:00"),
    ("2025-10-26 10PM", "2025-10-26T22:00:00"),
    ("2025-10-26 22:00 PM", "2025-10-26T22:00:00"),
    ("2025-10-26 22:00 AM", None),
    ("2025-10-26 12:00 AM", "2025-10-26T00:00:00"),
    ("2025-10-26 12:30 pm", "2025-10-26T12:30:00"),
    ("2025-10-26 0:00 PM", "2025-10-26T12:00:00"),
    ("2025-10-26 10", None),
    ("2025-10-26 10:00 +08 AM", "2025-10-26T02:00:00Z"),
    ("2025-10-26 10 PM +08", "2025-10-26T14:00:00Z"),
    ("2025-10-26 10+08:00 PM", None),
    ("2025-10-26 10:00:00 GMT+08:00", None),
    ("2025-10-26Z", "2025-10-26T00:00:00Z"),
    ("2025-10-26+08:00", "2025-10-25T16:00:00Z"),
    ("10/26/2025", "2025-10-26T00:00:00"),
    ("1/6/25", "2025-01-06T00:00:00"),
    ("1/6/29", "2029-01-06T00:00:00"),
    ("1/6/30", "1930-01-06T00:00:00"),
    ("10-26-2025", "2025-10-26T00:00:00"),
    ("10.26.2025", "2025-10-26T00:00:00"),
    ("13/6/2025", None),
    ("6/13/2025", "2025-06-13T00:00:00"),
    ("10/11/12", "2012-10-11T00:00:00"),
    ("10/26/2025 10:00 AM", "2025-10-26T10:00:00"),
    ("10/26/2025 12:00 AM", "2025-10-26T00:00:00"),
    ("10/26/2025 10:00:00 PM Z", "2025-10-26T22:00:00Z"),
    ("Oct 26 2025", "2025-10-26T00:00:00"),
    ("OCT 26 2025", "2025-10-26T00:00:00"),
    ("26 October 2025", "2025-10-26T00:00:00"),
    ("October 26, 2025", "2025-10-26T00:00:00"),
    ("October 26,2025", "2025-10-26T00:00:00"),
    ("26-Oct-2025", "2025-10-26T00:00:00"),
    ("2025-Oct-26", "2025-10-26T00:00:00"),
    ("Oct-26-2025", "2025-10-26T00:00:00"),
    ("2025 Oct 26", "2025-10-26T00:00:00"),
    ("Sept 26 2025", None),
    ("Feb 29 2023", None),
    ("Oct 26 2025 10:00 AM", "2025-10-26T10:00:00"),
    ("Oct 26, 2025, 10:00", "2025-10-26T10:00:00"),
    ("Sun, 26 Oct 2025 10:00:00 GMT", "2025-10-26T10:00:00Z"),
    ("sun, 26 oct 2025 10:00:00 gmt", "2025-10-26T10:00:00Z"),
    ("Mon, 26 Oct 2025 10:00:00 GMT", None),
    ("Sunday, 26 Oct 2025 10:00:00 GMT", "2025-10-26T10:00:00Z"),
    ("Sun 26 Oct 2025", "2025-10-26T00:00:00"),
    ("Sun, Oct 26, 2025", "2025-10-26T00:00:00"),
    ("Sun, 26 Oct 2025 23:59:59.99999999", None),
    ("  2025-10-26  ", "2025-10-26T00:00:00"),
    ("\t2025-10-26\n", "2025-10-26T00:00:00"),
    ("\xa02025-10-26\u3000", "2025-10-26T00:00:00"),
    ("2025-10-26 10:00:00 +08:00 GMT", None),
    ("٢٠٢٥-10-26", None),
    ("２０２５-10-26", None),
    ("2025--10-26", None),
    ("2025-10-26#", None),
    ("0001-01-01T00:00:00", "0001-01-01T00:00:00"),
    ("9999-12-31T23:59:59.9999999", "9999-12-31T23:59:59.9999999"),
    ("9999-12-31T23:59:59.99999999", None),
]

# The reference takes these; we refuse them (netdate.REFUSED says why).
STRICTER = [
    "10:00",  # today's date
    "Oct 26",  # this year
    "2025-10 10 PM",  # a month of a year with a time
    "2025-10 +08:00",  # or a zone
    "125-01-06",  # three-digit year
    "26 Oct 25",  # two-digit year beside a month name
    "2025-10-26.",  # trailing punctuation
    "2025-10-26,",
    "2025-10-26 T10:00",  # 'T' after whitespace
    "2025-10/26",  # mixed separators
    "2025-10-26\u00a010:00",  # non-ASCII whitespace inside
    "2025-10-26T10:00:00+0800Z",
    "0001-01-01T00:00:00+00:01",  # within a day of MinValue once the offset applies
    " " * MAX_LENGTH + "2025-10-26",
    "2025-10-26\x00",  # .NET ignores trailing NULs; no store holds one (limits.py)
    "2025-10-26 10:00\x00 ",
]


def _normal(text: str | None) -> str | None:
    """Our answer as the table writes it: the wall clock, or the UTC instant."""
    if text is None:
        return None
    parsed = parse_dotnet(text)
    assert parsed is not None, f"dates.parse_dotnet cannot read {text!r} back"
    value = parsed.value
    if value.tzinfo is None:
        return text
    utc = value.astimezone(UTC)
    fraction = utc.microsecond * 10 + parsed.extra_ticks
    return utc.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction:07d}" if fraction else "") + "Z"


@pytest.mark.parametrize(("text", "expected"), AGREED)
def test_as_the_reference_parsed_it(text: str, expected: str | None) -> None:
    assert _normal(parse_invariant(text)) == expected


@pytest.mark.parametrize("text", STRICTER)
def test_refused_where_dotnet_is_too_lenient_or_not_repeatable(text: str) -> None:
    assert parse_invariant(text) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-01-06", "2025-01-06T00:00:00"),
        ("2025-10-26T10:00:00.1234567", "2025-10-26T10:00:00.1234567"),
        ("2025-10-26 10:00:00 GMT", "2025-10-26T10:00:00Z"),
        ("2025-10-26T10:00:00-05:30", "2025-10-26T23:30:00+08:00"),
        ("0025-01-06 10:00", "0025-01-06T10:00:00"),
    ],
)
def test_kinds_as_iso_strings(text: str, expected: str) -> None:
    """Unspecified: no suffix; Utc: Z; Local: the instant in Hong Kong time (+08:00)."""
    assert parse_invariant(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "\x00",
        "\ud800",
        "2025-10-26\x00",
        "9" * 10_000,
        "2025-10-26 " + "1" * 5000,
        "2025-10-26T10:00:00." + "9" * 200,
        "Sun, " * 60,
        "2025-10-26T10:00:00+99999999999999999999",
    ],
)
def test_never_raises(text: str) -> None:
    parse_invariant(text)


def test_linear_time_on_hostile_text() -> None:
    hostile = [
        "2025-10-26T10:00" + " " * 200 + "x",
        "2025-10-26 " + " ," * 120,
        "a" * MAX_LENGTH,
        "1/" * 128,
    ]
    start = time.perf_counter()
    for text in hostile * 20:
        assert parse_invariant(text) is None
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Oct 26 2025", "2025-10-26"),
        ("Sun, 26 Oct 2025", "2025-10-26"),
        ("10/26/25", "2025-10-26"),
        ("2025-10", "2025-10-01"),
        ("2025-10-26 0:00", "2025-10-26T00:00:00"),  # a time of day was given
        ("2025-10-26T00:00", "2025-10-26T00:00:00"),
        ("2025-10-26Z", "2025-10-26T00:00:00Z"),  # a zone makes it an instant
        ("2025-10-26+08:00", "2025-10-26T00:00:00+08:00"),
    ],
)
def test_a_day_alone_on_request(text: str, expected: str) -> None:
    assert parse_invariant(text, date_only=True) == expected
    parsed = parse_dotnet(expected)
    assert parsed is not None
    assert parsed.date_only is (len(expected) == 10)
