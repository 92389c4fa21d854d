"""`DateTime.Parse(text, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind)`, emulated.

Json.NET falls back to it after its own ISO and `/Date()/` readers, and form binding's
DateTime conversion is the same parse (with `DateTimeStyles.None`: a `Z` or `GMT` value comes
out Local instead of Utc, the same instant). .NET's parser is a lexer and a state machine
that takes almost anything with a date in it; this module takes the shapes clients send,
each checked against the reference server (tests/unit/test_netdate.py), and refuses the rest:

* a month of a year alone, as its first day: `2025-10`, `10/2025`, `Oct 2025`, `2025 Oct`;
* numeric dates `yyyy-M-d` (`-`, `/` or `.`, one separator throughout) and `M/d/yyyy` or
  `M/d/yy` (a two-digit year is 1930-2029, .NET's window), month names in English, full or
  three letters (`Oct 26 2025`, `26 October 2025`, `October 26, 2025`, `26-Oct-2025`,
  `2025-Oct-26`, `2025 Oct 26`), with an optional day name that must be the date's (RFC 1123:
  `Sun, 26 Oct 2025 10:00:00 GMT`);
* the ISO 8601 time after `T`: `HH:mm[:ss[.f...]]` with two-digit fields, then `Z` or an offset;
* a time after whitespace or a comma: `H:m[:s[.f...]]`, or `H AM`; then `AM`/`PM`, and
  `Z`, `GMT` or an offset (`+8`, `+08`, `+0800`, `+08:00`), in either order;
* offsets of at most 14 hours; fraction digits beyond the 7th round as .NET rounds a double.

Refused although .NET takes them (stricter, listed in `REFUSED`): no date (today's date is
not repeatable), no year (`Oct 26`: this year), a month of a year with a time or a zone,
three-digit years, two-digit years beside a month name, trailing punctuation (`2025-10-26.`),
a `T` after whitespace, mixed separators, non-ASCII whitespace inside the text, values within
a day of DateTime.MinValue/MaxValue once an offset applies (.NET clamps or uses LMT there),
and the other orders .NET's lexer also reads (a time before the date, `26 Oct2025`, a day
name before a numeric date). Non-ASCII digits are refused as .NET refuses them. Linear time
(and at most MAX_LENGTH characters); never raises.
"""

from __future__ import annotations

import re
from datetime import date

from .ticks import HONG_KONG_TICKS, MAX_TICKS, TICKS_PER_DAY, TICKS_PER_SECOND, ticks_text

MAX_LENGTH = 256  # .NET has no limit; nothing a client sends as a date comes near it

REFUSED = (
    "time without a date (.NET uses today's date)",
    "month and day without a year (.NET uses this year); a month of a year with a time or zone",
    "three-digit years; two-digit years beside a month name",
    "trailing punctuation ('2025-10-26.', '2025-10-26,')",
    "'T' after whitespace, mixed date separators ('2025-10/26')",
    "whitespace other than ASCII inside the text (it is trimmed at both ends)",
    "an instant within a day of DateTime.MinValue or MaxValue once an offset applies",
    "other orders .NET's lexer reads: a time before the date, '26 Oct2025', 'Sun 2025-10-26'",
    "NUL anywhere (.NET ignores trailing NULs): no store holds NUL, and U+FFFD is no date",
    f"text longer than {MAX_LENGTH} characters",
)

_MAX_OFFSET = 14 * 3600 * TICKS_PER_SECOND

# Char.IsWhiteSpace, trimmed at both ends (the reference takes U+00A0 and U+3000 there)
_NET_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
_NET_SPACE += "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"

_MONTH_NAMES = (
    "january february march april may june july august september october november december"
)
_MONTHS = {
    name: number
    for number, full in enumerate(_MONTH_NAMES.split(), start=1)
    for name in (full, full[:3])
}
_DAYS = {
    name: number
    for number, full in enumerate(
        ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
    )
    for name in (full, full[:3])
}

_S = r"[ \t\n\v\f\r]"  # whitespace inside the text (ASCII only: the text is ASCII here)
_OFFSET = r"[+-](?:\d{1,2}(?::\d{1,2})?|\d{3,4})(?!\d)"
_ISO_T = re.compile(
    rf"""(?P<y>\d{{4}})(?P<sep>[-/.])(?P<mo>\d{{1,2}})(?P=sep)(?P<d>\d{{1,2}})[Tt]
         {_S}*(?P<h>\d{{2}}){_S}*:{_S}*(?P<mi>\d{{2}}){_S}*
         (?::{_S}*(?P<s>\d{{2}})(?:\.(?P<f>\d+))?{_S}*)?
         (?P<tz>[Zz]|{_OFFSET})?{_S}*""",
    re.ASCII | re.VERBOSE,
)
_DAY_NAME = rf"(?:(?P<dow>[A-Za-z]+)(?:,{_S}*|{_S}+))?"
_DATES = [
    re.compile(pattern, re.ASCII)
    for pattern in (
        r"(?P<y>\d{4})(?P<sep>[-/.])(?P<mo>\d{1,2})(?P=sep)(?P<d>\d{1,2})",
        r"(?P<mo>\d{1,2})(?P<sep>[-/.])(?P<d>\d{1,2})(?P=sep)(?P<y>\d{4}|\d{2})(?!\d)",
        rf"{_DAY_NAME}(?P<mon>[A-Za-z]+){_S}+(?P<d>\d{{1,2}})(?:,{_S}*|{_S}+)(?P<y>\d{{4}})",
        rf"{_DAY_NAME}(?P<mon>[A-Za-z]+)-(?P<d>\d{{1,2}})-(?P<y>\d{{4}})",
        rf"{_DAY_NAME}(?P<d>\d{{1,2}}){_S}+(?P<mon>[A-Za-z]+){_S}+(?P<y>\d{{4}})",
        rf"{_DAY_NAME}(?P<d>\d{{1,2}})-(?P<mon>[A-Za-z]+)-(?P<y>\d{{4}})",
        rf"{_DAY_NAME}(?P<y>\d{{4}})-(?P<mon>[A-Za-z]+)-(?P<d>\d{{1,2}})",
        rf"{_DAY_NAME}(?P<y>\d{{4}}){_S}+(?P<mon>[A-Za-z]+){_S}+(?P<d>\d{{1,2}})",
    )
]
# a month of a year alone is its first day ('2025-10', '10/2025', 'Oct 2025'); not with a time
_YEAR_MONTH = [
    re.compile(pattern, re.ASCII)
    for pattern in (
        rf"(?P<y>\d{{4}})(?:[-/.]|{_S}+)(?P<mo>\d{{1,2}})",
        rf"(?P<mo>\d{{1,2}})(?:[-/.]|{_S}+)(?P<y>\d{{4}})",
        rf"(?P<mon>[A-Za-z]+)(?:[-/]|,?{_S}+|,)(?P<y>\d{{4}})",
        rf"(?P<y>\d{{4}})(?:-|{_S}+)(?P<mon>[A-Za-z]+)",
    )
]
_TIME = re.compile(
    rf"""(?:,{_S}*|{_S}+)
         (?P<h>\d{{1,2}})(?::(?P<mi>\d{{1,2}})(?::(?P<s>\d{{1,2}})(?:\.(?P<f>\d+))?)?)?""",
    re.ASCII | re.VERBOSE,
)
_TAIL_ITEM = re.compile(
    rf"{_S}*(?:(?P<ap>[AaPp][Mm])|(?P<zone>[Zz]|[Gg][Mm][Tt])|(?P<off>{_OFFSET}))(?![A-Za-z])",
    re.ASCII,
)


def parse_invariant(text: str, *, date_only: bool = False) -> str | None:
    """What .NET DateTime.Parse(text, InvariantCulture, RoundtripKind) yields, as an ISO
    string that dates.parse_dotnet reads back to the same value and kind
    ("2025-01-06T00:00:00" Unspecified, "...Z" Utc, "...+08:00" Local), or None.
    With `date_only`, a text that names a day and no time of day (`Oct 26 2025`) comes back
    as `2025-10-26`, which dates.parse_dotnet reads as a date alone (SPEC §3: studyTime
    completes it)."""
    if len(text) > MAX_LENGTH:
        return None
    text = text.strip(_NET_SPACE)
    if not text.isascii():
        return None  # non-ASCII digits, letters or whitespace: refused (or too obscure)
    try:
        found = _parse(text)
    except (ValueError, OverflowError):  # a date that does not exist
        return None
    if found is None:
        return None
    iso, alone = found
    return iso[:10] if date_only and alone else iso


def _parse(text: str) -> tuple[str, bool] | None:
    """The ISO string, and whether the text named a day alone (no time of day, no zone)."""
    m = _ISO_T.fullmatch(text)
    if m:
        frac = _fraction_ticks(m["f"])
        ticks = _ticks(_date(m), int(m["h"]), int(m["mi"]), int(m["s"] or 0), frac)
        return _timed(_result(ticks, m["tz"]))
    for pattern in _YEAR_MONTH:
        m = pattern.fullmatch(text)
        if m:
            month = _MONTHS.get(m["mon"].lower()) if m.groupdict().get("mon") else int(m["mo"])
            if month is None:
                return None
            return ticks_text(_ticks(date(int(m["y"]), month, 1), 0, 0, 0, 0)), True
    for pattern in _DATES:  # each shape is tried: one may take a prefix another reads whole
        m = pattern.match(text)
        if m is None:
            continue
        try:
            found = _with_time(_date(m), text, m.end(), _day_name(m))
        except ValueError:
            continue
        if found is not None:
            return found
    return None


def _date(m: re.Match[str]) -> date:
    groups = m.groupdict()
    if groups.get("mon") is not None:
        month = _MONTHS.get(m["mon"].lower())
        if month is None:
            raise ValueError("not a month")
    else:
        month = int(m["mo"])
    year = int(m["y"])
    if len(m["y"]) == 2:
        year += 2000 if year < 30 else 1900  # Calendar.TwoDigitYearMax = 2029
    return date(year, month, int(m["d"]))


def _day_name(m: re.Match[str]) -> int | None:
    name = m.groupdict().get("dow")
    if name is None:
        return None
    number = _DAYS.get(name.lower())
    if number is None:
        raise ValueError("not a day name")
    return number


def _timed(iso: str | None) -> tuple[str, bool] | None:
    return None if iso is None else (iso, False)


def _with_time(day: date, text: str, pos: int, weekday: int | None) -> tuple[str, bool] | None:
    m = _TIME.match(text, pos)
    tail = _tail(text, pos if m is None else m.end())
    if tail is None:
        return None
    items = [item for item, _ in tail]
    ampm = next((value for item, value in tail if item == "ap"), None)
    zone = next((value for item, value in tail if item == "zone"), None)
    if m is None:  # a date alone, or a date and a zone ('2025-10-26Z': midnight UTC)
        if ampm:
            return None
        iso = _result(_ticks(day, 0, 0, 0, 0), zone, weekday)
        return None if iso is None else (iso, zone is None)
    hour = int(m["h"])
    if m["mi"] is None and items[:1] != ["ap"]:
        return None  # a bare hour is a time only with AM or PM right after it
    if ampm == "AM":
        if hour > 12:
            return None
        hour = 0 if hour == 12 else hour
    elif ampm == "PM" and hour < 12:
        hour += 12
    ticks = _ticks(day, hour, int(m["mi"] or 0), int(m["s"] or 0), _fraction_ticks(m["f"]))
    return _timed(_result(ticks, zone, weekday))


def _tail(text: str, pos: int) -> list[tuple[str, str]] | None:
    """AM/PM and a zone after the time, at most one of each, in either order."""
    items: list[tuple[str, str]] = []
    while pos < len(text):
        item = _TAIL_ITEM.match(text, pos)
        if item is None:
            return None if text[pos:].strip(" \t\n\v\f\r") else items
        kind, value = (
            ("ap", item["ap"].upper()) if item["ap"] else ("zone", item["zone"] or item["off"])
        )
        if any(seen == kind for seen, _ in items):
            return None
        items.append((kind, value))
        pos = item.end()
    return items


def _fraction_ticks(digits: str | None) -> int:
    """DateTimeParse.ParseFraction's double, rounded as (long)Math.Round(x * TicksPerSecond)."""
    if not digits:
        return 0
    value, base = 0.0, 0.1
    for ch in digits:
        value += (ord(ch) - 48) * base
        base *= 0.1
    return round(value * TICKS_PER_SECOND)  # round half to even, as Math.Round


def _ticks(day: date, hour: int, minute: int, second: int, fraction: int) -> int:
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError("not a time of day")
    seconds = hour * 3600 + minute * 60 + second
    return (day.toordinal() - 1) * TICKS_PER_DAY + seconds * TICKS_PER_SECOND + fraction


def _offset_ticks(zone: str) -> int | None:
    sign = -1 if zone[0] == "-" else 1
    digits = zone[1:]
    if ":" in digits:
        hours_text, minutes_text = digits.split(":")
        hours, minutes = int(hours_text), int(minutes_text)
    elif len(digits) > 2:
        hours, minutes = divmod(int(digits), 100)
    else:
        hours, minutes = int(digits), 0
    if minutes >= 60:
        return None
    offset = (hours * 3600 + minutes * 60) * TICKS_PER_SECOND
    return None if offset > _MAX_OFFSET else sign * offset


def _result(ticks: int, zone: str | None, weekday: int | None = None) -> str | None:
    if not 0 <= ticks <= MAX_TICKS:
        return None  # fraction digits rounded past DateTime.MaxValue
    if weekday is not None and (ticks // TICKS_PER_DAY) % 7 != weekday:
        return None  # checked on the date with its time added (23:59:59.99999999 is the next day)
    if zone is None:
        return ticks_text(ticks)
    offset = 0 if zone.upper() in ("Z", "GMT") else _offset_ticks(zone)
    if offset is None:
        return None
    utc = ticks - offset
    if not TICKS_PER_DAY <= utc <= MAX_TICKS - TICKS_PER_DAY:
        return None  # .NET clamps to MinValue/MaxValue, uses LMT or overflows there: refused
    if zone.upper() in ("Z", "GMT"):
        return ticks_text(utc) + "Z"
    return ticks_text(utc + HONG_KONG_TICKS) + "+08:00"
