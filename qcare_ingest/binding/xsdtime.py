"""XML studyDate: XmlConvert.ToDateTime(text, RoundtripKind), as the reference server reads it.

Every xsd date/time form is read, not only xsd:dateTime: `2024-01-02T03:04:05[.f+][Z|±hh:mm]`,
`2024-01-02` (a date), `2024-01`, `2024`, `--01-02` (in 1904); `03:04:05` (today), `--01` and
`---02` (this year) are refused on purpose (see xsd_datetime). Seconds are required;
fraction digits beyond the 7th are rounded half to even; `Z` or `z`; an offset is two
digits, a colon and two digits (up to 99:99). Whitespace (char.IsWhiteSpace) around the value
is ignored. ASCII digits only.

The result is the DTO's text: `YYYY-MM-DD` for a plain date, else `YYYY-MM-DDTHH:MM:SS[.f]`
followed by `Z` (Utc), the offset sent (Local: the same instant), or nothing (Unspecified).
Where .NET clamps a Local value at DateTime.MinValue/MaxValue, or the offset is a day or more,
the instant is written in UTC.
"""

from __future__ import annotations

import calendar
from datetime import datetime

from .ticks import HONG_KONG_TICKS, MAX_TICKS, TICKS_PER_SECOND, ticks_text

_LEAP_YEAR = 1904
# char.IsWhiteSpace
_WHITE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
)
_DIGITS = "0123456789"


class _Text:
    def __init__(self, text: str) -> None:
        self.s = text
        self.n = len(text)

    def digits(self, pos: int, count: int) -> int | None:
        part = self.s[pos : pos + count]
        if len(part) != count or any(c not in _DIGITS for c in part):
            return None
        return int(part)

    def char(self, pos: int, ch: str) -> bool:
        return pos < self.n and self.s[pos] == ch


def _days_in_month(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


class _Parsed:
    def __init__(self) -> None:
        self.kind = "datetime"
        self.year, self.month, self.day = _LEAP_YEAR, 1, 1
        self.hour = self.minute = self.second = 0
        self.fraction = 0  # in ticks, after rounding (may be 10**7)
        self.zone: str | None = None  # None, "Z", "+" or "-"
        self.zone_minutes = 0


class _Parser:
    def __init__(self, text: str) -> None:
        self.t = _Text(text)
        self.p = _Parsed()

    def date(self, pos: int) -> bool:
        t, p = self.t, self.p
        year, month, day = t.digits(pos, 4), t.digits(pos + 5, 2), t.digits(pos + 8, 2)
        if year is None or month is None or day is None or year < 1:
            return False
        if not (t.char(pos + 4, "-") and t.char(pos + 7, "-") and 1 <= month <= 12):
            return False
        if not 1 <= day <= _days_in_month(year, month):
            return False
        p.year, p.month, p.day = year, month, day
        return True

    def zone_and_white(self, pos: int) -> bool:
        t, p = self.t, self.p
        p.zone, p.zone_minutes = None, 0
        if pos < t.n and t.s[pos] in "Zz":
            p.zone = "Z"
            pos += 1
        elif pos + 5 < t.n and t.s[pos] in "+-" and t.char(pos + 3, ":"):
            hours, minutes = t.digits(pos + 1, 2), t.digits(pos + 4, 2)
            if hours is not None and minutes is not None:
                p.zone, p.zone_minutes = t.s[pos], hours * 60 + minutes
                pos += 6
        while pos < t.n and t.s[pos] in _WHITE:
            pos += 1
        return pos == t.n

    def fraction(self, pos: int) -> int | None:
        """Where the fraction after '.' ends (p.fraction set), or None without a digit."""
        t = self.t
        digits, fraction, round_up = 0, 0, 0
        while pos < t.n and t.s[pos] in _DIGITS:
            d = ord(t.s[pos]) - 48
            if digits < 7:
                fraction = fraction * 10 + d
            elif digits == 7:
                round_up = 1 if d > 5 else (-1 if d == 5 else 0)
            elif round_up < 0 and d != 0:
                round_up = 1
            digits += 1
            pos += 1
        if digits == 0:
            return None
        if digits < 7:
            fraction *= 10 ** (7 - digits)
        else:  # half to even, past the 7th digit
            fraction += (fraction & 1) if round_up < 0 else round_up
        self.p.fraction = fraction
        return pos

    def time_zone_and_white(self, pos: int) -> bool:
        t, p = self.t, self.p
        hour, minute, second = t.digits(pos, 2), t.digits(pos + 3, 2), t.digits(pos + 6, 2)
        if hour is None or minute is None or second is None:
            return False
        if not (t.char(pos + 2, ":") and t.char(pos + 5, ":")):
            return False
        if hour > 23 or minute > 59 or second > 59:
            return False
        p.hour, p.minute, p.second, p.fraction = hour, minute, second, 0
        pos += 8
        if t.char(pos, "."):
            end = self.fraction(pos + 1)
            if end is None:
                return False
            pos = end
        return self.zone_and_white(pos)

    def _found(self, kind: str, year: int, month: int, day: int) -> _Parsed:
        p = self.p
        p.kind, p.year, p.month, p.day = kind, year, month, day
        return p

    def _dated(self, start: int) -> _Parsed | None:
        """xsd:dateTime, xsd:date, xsd:time."""
        p = self.p
        if self.date(start):
            if self.t.char(start + 10, "T") and self.time_zone_and_white(start + 11):
                return self._found("datetime", p.year, p.month, p.day)
            p.hour = p.minute = p.second = p.fraction = 0
            if self.zone_and_white(start + 10):
                return self._found("date", p.year, p.month, p.day)
        if self.time_zone_and_white(start):
            return self._found("time", _LEAP_YEAR, 1, 1)
        p.hour = p.minute = p.second = p.fraction = 0
        return None

    def _partial(self, start: int) -> _Parsed | None:
        """gYearMonth, gYear, gMonthDay, gMonth, gDay."""
        t = self.t
        year, month = t.digits(start, 4), t.digits(start + 5, 2)
        if year is not None and year >= 1:
            if (
                t.char(start + 4, "-")
                and month is not None
                and 1 <= month <= 12
                and self.zone_and_white(start + 7)
            ):
                return self._found("gYearMonth", year, month, 1)
            if self.zone_and_white(start + 4):
                return self._found("gYear", year, 1, 1)
        month, day = t.digits(start + 2, 2), t.digits(start + 5, 2)
        if t.s[start : start + 2] == "--" and month is not None and 1 <= month <= 12:
            if (
                t.char(start + 4, "-")
                and day is not None
                and 1 <= day <= _days_in_month(_LEAP_YEAR, month)
                and self.zone_and_white(start + 7)
            ):
                return self._found("gMonthDay", _LEAP_YEAR, month, day)
            if self.zone_and_white(start + 4) or (
                t.s[start + 4 : start + 6] == "--" and self.zone_and_white(start + 6)
            ):
                return self._found("gMonth", _LEAP_YEAR, month, 1)
        day = t.digits(start + 3, 2)
        ok = t.s[start : start + 3] == "---" and day is not None and 1 <= day <= 31
        if ok and day is not None and self.zone_and_white(start + 5):
            return self._found("gDay", _LEAP_YEAR, 1, day)
        return None

    def parse(self) -> _Parsed | None:
        t = self.t
        start = 0
        while start < t.n and t.s[start] in _WHITE:
            start += 1
        return self._dated(start) or self._partial(start)


def _ticks(value: datetime) -> int:
    delta = value - datetime(1, 1, 1)
    return (delta.days * 86_400 + delta.seconds) * TICKS_PER_SECOND


def xsd_datetime(text: str) -> str | None:
    """The DTO text for an XML studyDate, or None when XmlConvert refuses it or when its
    value would depend on the day the message arrives (a time alone, a month or day without
    a year: .NET fills in today or this year). Refused on purpose, as netdate refuses them
    for JSON and forms: a re-post of the same msg_id on another day would bind differently
    and be taken for a conflict."""
    parsed = _Parser(text).parse()
    if parsed is None or parsed.kind in ("time", "gMonth", "gDay"):
        return None
    year, month, day = parsed.year, parsed.month, parsed.day
    wall = _ticks(datetime(year, month, day, parsed.hour, parsed.minute, parsed.second))
    wall += parsed.fraction
    if wall > MAX_TICKS:
        return None
    if parsed.zone is None:
        if parsed.kind == "date":
            return f"{year:04d}-{month:02d}-{day:02d}"
        return ticks_text(wall, "trimmed")
    if parsed.zone == "Z":
        return ticks_text(wall, "trimmed") + "Z"
    offset = parsed.zone_minutes * 60 * TICKS_PER_SECOND
    utc = wall - offset if parsed.zone == "+" else wall + offset
    if utc < 0:
        return ticks_text(0, "trimmed") + "Z"  # clamped at DateTime.MinValue
    if utc > MAX_TICKS - HONG_KONG_TICKS:
        return ticks_text(MAX_TICKS - HONG_KONG_TICKS, "trimmed") + "Z"  # Local clamped at MaxValue
    if parsed.zone_minutes >= 24 * 60:
        return ticks_text(utc, "trimmed") + "Z"
    hours, minutes = divmod(parsed.zone_minutes, 60)
    return f"{ticks_text(wall, 'trimmed')}{parsed.zone}{hours:02d}:{minutes:02d}"
