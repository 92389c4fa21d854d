"""Dates as .NET writes them (WIRE.md §3), without losing the 7th fraction digit.

`parse_dotnet` is the Json.NET reader's acceptance rule; `to_instant` turns an
accepted value into an aware instant (no offset means Hong Kong time, SPEC §3).
The raw string is always kept by callers: Python's datetime stops at µs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from functools import lru_cache

HONG_KONG = timezone(timedelta(hours=8), "HKT")

_ISO = re.compile(
    r"""^\s*(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})
        (?:[T ](?P<h>\d{2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:\.(?P<f>\d{1,7}))?)?
           (?P<tz>Z|[+-]\d{2}:?\d{2})?)?\s*$""",
    re.VERBOSE | re.ASCII,  # ASCII digits only: int() would read "٣" too
)
# a long is at most 19 digits: never hand int() more (its limit is 4,300)
_MS_DATE = re.compile(r"^\s*\\?/Date\((?P<ms>-?\d{1,19})(?P<tz>[+-]\d{4})?\)\\?/\s*$", re.ASCII)
_US_DATE = re.compile(
    r"^\s*(?P<mo>\d{1,2})/(?P<d>\d{1,2})/(?P<y>\d{4})"
    r"(?:\s+(?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{2}))?)?\s*$",
    re.ASCII,
)


@dataclass(frozen=True)
class DotNetDate:
    """A parsed .NET date: wall-clock/instant to µs, ticks beyond µs, and its kind."""

    value: datetime  # aware when the text had an offset (or was /Date()/), else naive
    extra_ticks: int = 0  # the 7th fraction digit (100 ns units), 0-9
    date_only: bool = False


def _tz(text: str | None) -> timezone | None:
    if text is None:
        return None
    if text == "Z":
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    if offset >= timedelta(hours=24):
        raise ValueError("offset out of range")
    return timezone(sign * offset)


def _wall_clock(m: re.Match[str], micros: int = 0, tz: timezone | None = None) -> datetime | None:
    """The date and time a regex match names, or None when it is not a real one."""
    try:
        return datetime(
            int(m["y"]), int(m["mo"]), int(m["d"]),
            int(m["h"] or 0), int(m["mi"] or 0), int(m["s"] or 0), micros, tzinfo=tz,
        )  # fmt: skip
    except ValueError:
        return None


@lru_cache(maxsize=1024)  # the binder, the model and the worker each read the same date
def parse_dotnet(text: str, *, xml: bool = False) -> DotNetDate | None:
    """The value Json.NET (or XmlSerializer with `xml=True`) would read, else None.
    The result is immutable, so one parse serves every caller."""
    m = _ISO.match(text)
    if m:
        if xml and m["h"] is not None and "T" not in text:
            return None  # xsd:dateTime needs 'T' (x14)
        frac = (m["f"] or "").ljust(7, "0")
        try:
            tz = _tz(m["tz"])
        except ValueError:
            return None  # an offset of a day or more is no offset (fuzzing found "+58:49")
        value = _wall_clock(m, int(frac[:6]), tz)
        return DotNetDate(value, int(frac[6]), date_only=m["h"] is None) if value else None
    if xml:
        return None
    m = _MS_DATE.match(text)
    if m:
        try:
            instant = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=int(m["ms"]))
        except OverflowError:
            return None
        return DotNetDate(instant)
    m = _US_DATE.match(text)
    if m:
        value = _wall_clock(m)
        return DotNetDate(value, date_only=m["h"] is None) if value else None
    return None


_STUDY_TIME = re.compile(r"^\s*(\d{2}):?(\d{2})(?::?(\d{2}))?\s*$", re.ASCII)


def parse_study_time(text: str | None) -> time | None:
    """`HH:mm`, `HH:mm:ss`, `HHmm`, `HHmmss` (SPEC §3)."""
    if not text:
        return None
    m = _STUDY_TIME.match(text)
    if not m:
        return None
    try:
        return time(int(m[1]), int(m[2]), int(m[3] or 0))
    except ValueError:
        return None


def to_instant(parsed: DotNetDate, study_time: time | None = None) -> datetime | None:
    """The instant the value names (no offset means Hong Kong wall-clock time), or None
    when it cannot be one: .NET's DateTime.MinValue in Hong Kong time, or MaxValue with a
    negative offset, lies outside what UTC (and Python) can hold, and the first and last
    microseconds UTC holds are the ones asyncpg writes as -infinity / infinity (the
    `0001-01-01T00:00:00Z` a client sends would be read back as a naive datetime.min).
    Callers keep the text."""
    value = parsed.value
    if parsed.date_only and study_time is not None:
        value = datetime.combine(value.date(), study_time, value.tzinfo)
    if value.tzinfo is None:
        value = value.replace(tzinfo=HONG_KONG)
    try:
        utc = value.astimezone(UTC)
        value.astimezone(HONG_KONG)  # reads show it in Hong Kong time
    except OverflowError:
        return None
    if utc.replace(tzinfo=None) in (datetime.min, datetime.max):
        return None  # asyncpg would store these two as -infinity / infinity
    return value


def stored_instant(value: datetime | None) -> datetime | None:
    """A timestamptz as asyncpg reads it back, or None for PostgreSQL's -infinity and
    infinity, which asyncpg returns as naive datetime.min / datetime.max (rows written
    before `to_instant` refused those two instants hold them; `rebuild` reports them).
    Readers that show an instant in a time zone call this first: a naive value there
    raised ValueError (year 0) and turned a search into a 500."""
    if value is None or value.tzinfo is None:
        return None
    return value


_DOB_FORMATS = ("%Y-%m-%d", "%Y%m%d", "%d/%m/%Y", "%d-%m-%Y", "%Y/%m/%d")


def parse_dob(text: str | None) -> date | None:
    """`yyyy-MM-dd`, `yyyyMMdd`, `dd/MM/yyyy`, ISO datetime; None when unparseable."""
    if not text or not text.strip():
        return None
    raw = text.strip()
    for fmt in _DOB_FORMATS:
        try:
            return datetime.strptime(raw, fmt).date()
        except ValueError:
            continue
    parsed = parse_dotnet(raw)
    if parsed is not None and not _MS_DATE.match(raw):
        return parsed.value.date()
    return None
