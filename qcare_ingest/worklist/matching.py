"""C-FIND key matching for the worklist (DICOM PS3.4 C.2.2.2 and K.6.1.2), pure.

A key's value is matched against what the item would return, so what matches is what
is shown. The kinds of matching:

* universal: an empty value matches everything (the attribute is returned);
* single value: equal; case-sensitive, except person names (PN), which match whatever
  their case (as most worklist SCPs do: names are typed on a modality's keyboard);
* wildcard: `*` any run of characters, `?` one character, on any text VR;
* person names: the whole name (`CHAN^TAI MAN`) or, when the key names fewer components
  than the item has, component by component (`CHAN` matches `CHAN^TAI MAN`);
* date (DA) and time (TM) ranges: `A-B`, `A-`, `-B`; a time's missing minutes or seconds
  are the start of the period in a lower bound and its end in an upper one;
* UID lists (UI): `uid1\\uid2` matches either.

Wildcards are matched without regular expressions (no backtracking: a key of a thousand
stars costs what its length costs). Keys longer than their VR allows are refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, time

WILDCARDS = frozenset("*?")


class InvalidQuery(ValueError):
    """The identifier cannot be a worklist query (C-FIND status A900)."""


# The longest key value each VR takes (PS3.5 6.2); a PN holds up to three component
# groups of five components, 64 characters per group.
MAX_LENGTH: dict[str, int] = {
    "AE": 16, "AS": 4, "CS": 16, "DA": 18, "DS": 16, "DT": 54, "IS": 12, "LO": 64,
    "PN": 3 * 64 + 2, "SH": 16, "TM": 28, "UI": 64,
}  # fmt: skip
# A key of another VR (LT, UT, UN...) is never matched on; it is bounded all the same.
OTHER_MAX_LENGTH = 1024


def has_wildcard(value: str) -> bool:
    return any(c in WILDCARDS for c in value)


def wildcard_match(pattern: str, value: str) -> bool:
    """`*` and `?` matching of the whole value, in O(len(pattern) * len(value)) at worst."""
    p = v = 0
    star_p, star_v = -1, 0
    while v < len(value):
        if p < len(pattern) and (pattern[p] == "?" or pattern[p] == value[v]):
            p += 1
            v += 1
        elif p < len(pattern) and pattern[p] == "*":
            star_p, star_v = p, v
            p += 1
        elif star_p >= 0:
            p = star_p + 1
            star_v += 1
            v = star_v
        else:
            return False
    while p < len(pattern) and pattern[p] == "*":
        p += 1
    return p == len(pattern)


def like_pattern(pattern: str) -> str:
    """A DICOM wildcard pattern as an SQL LIKE pattern (escape character `\\`)."""
    out = []
    for c in pattern:
        if c == "*":
            out.append("%")
        elif c == "?":
            out.append("_")
        elif c in "%_\\":
            out.append("\\" + c)
        else:
            out.append(c)
    return "".join(out)


def literal_runs(pattern: str) -> list[str]:
    """The runs of a name pattern every matching name contains: split at wildcards, at the
    PN separators `^` and `=`, and at spaces (names are split into components at spaces)."""
    return [run for run in re.split(r"[*?^=\s]+", pattern) if run]


def text_match(pattern: str, value: str, *, fold: bool = False) -> bool:
    if fold:
        pattern, value = pattern.upper(), value.upper()
    if has_wildcard(pattern):
        return wildcard_match(pattern, value)
    return pattern == value


def name_match(pattern: str, value: str) -> bool:
    """A person name key against a PN value, case-insensitive: the whole value, or each
    component the key gives against the item's (missing components are universal)."""
    if text_match(pattern, value, fold=True):
        return True
    if "=" in pattern:
        return False
    wanted = pattern.upper().split("^")
    have = value.split("=", 1)[0].upper().split("^")
    if any(wanted[len(have) :]):  # components the item does not have must be empty
        return False
    return all(
        not w or text_match(w, have[i] if i < len(have) else "") for i, w in enumerate(wanted)
    )


# --- dates and times -----------------------------------------------------------------

_DA = re.compile(r"(\d{4})(\d{2})(\d{2})", re.ASCII)
_TM = re.compile(r"(\d{2})(?::?(\d{2})(?::?(\d{2})(?:\.(\d{1,6}))?)?)?", re.ASCII)


def parse_da(text: str) -> date:
    m = _DA.fullmatch(text.strip())
    if m is None:
        raise InvalidQuery("a date must be YYYYMMDD")
    try:
        return date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        raise InvalidQuery("not a real date") from None


def parse_tm(text: str, *, upper: bool = False) -> time:
    """A TM value; its missing parts are the start of the period, or its end (`upper`)."""
    m = _TM.fullmatch(text.strip())
    if m is None:
        raise InvalidQuery("a time must be HH[MM[SS[.FFFFFF]]]")
    hour, minute, second, fraction = m[1], m[2], m[3], m[4]
    try:
        return time(
            int(hour),
            int(minute) if minute else (59 if upper else 0),
            int(second) if second else (59 if upper else 0),
            int(fraction.ljust(6, "0")) if fraction else (999999 if upper and not second else 0),
        )
    except ValueError:
        raise InvalidQuery("not a real time") from None


@dataclass(frozen=True)
class DateRange:
    low: date | None
    high: date | None

    def __contains__(self, day: date) -> bool:
        return (self.low is None or day >= self.low) and (self.high is None or day <= self.high)


@dataclass(frozen=True)
class TimeRange:
    low: time | None
    high: time | None

    def __contains__(self, at: time) -> bool:
        return (self.low is None or at >= self.low) and (self.high is None or at <= self.high)


def _split_range(text: str) -> tuple[str, str] | None:
    if "-" not in text:
        return None
    low, _, high = text.partition("-")
    if "-" in high or not (low.strip() or high.strip()):
        raise InvalidQuery("a range is A-B, A- or -B")
    return low.strip(), high.strip()


def date_range(text: str) -> DateRange:
    parts = _split_range(text)
    if parts is None:
        day = parse_da(text)
        return DateRange(day, day)
    low, high = parts
    found = DateRange(parse_da(low) if low else None, parse_da(high) if high else None)
    if found.low and found.high and found.low > found.high:
        raise InvalidQuery("a date range's start is after its end")
    return found


def time_range(text: str) -> TimeRange:
    parts = _split_range(text)
    if parts is None:
        return TimeRange(parse_tm(text), parse_tm(text, upper=True))
    low, high = parts
    return TimeRange(parse_tm(low) if low else None, parse_tm(high, upper=True) if high else None)


def item_date(value: str) -> date | None:
    try:
        return parse_da(value) if value else None
    except InvalidQuery:
        return None


def item_time(value: str) -> time | None:
    try:
        return parse_tm(value) if value else None
    except InvalidQuery:
        return None


# --- one key -------------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    """One key of the identifier: its tag, VR and value (`""`: universal matching)."""

    tag: int
    vr: str
    value: str
    keyword: str = ""

    @property
    def universal(self) -> bool:
        return self.value == "" or (self.value.strip("*") == "" and self.vr != "UI")


def check_length(key: Key) -> None:
    limit = MAX_LENGTH.get(key.vr, OTHER_MAX_LENGTH)
    parts = key.value.split("\\") if key.vr == "UI" else [key.value]
    if any(len(p) > limit for p in parts) or len(parts) > 1000:
        raise InvalidQuery(f"the {key.keyword or hex(key.tag)} key is longer than its VR allows")


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # no stored text holds these


def prepare(key: Key) -> None:
    """Refuse a key that cannot be matched (too long, a NUL or a lone surrogate, which
    PostgreSQL refuses, a malformed date or time range)."""
    check_length(key)
    if _UNSTORABLE.search(key.value):
        raise InvalidQuery(f"the {key.keyword or hex(key.tag)} key holds a NUL or a surrogate")
    if key.universal:
        return
    if key.vr == "DA":
        date_range(key.value)
    elif key.vr == "TM":
        time_range(key.value)


Predicate = Callable[[str], bool]


def compile_key(key: Key) -> Predicate:
    """key_matches(key, ·), with the key's ranges and pattern worked out once."""
    if key.universal:
        return lambda value: True
    if key.vr == "DA":
        days = date_range(key.value)
        return lambda value: (day := item_date(value)) is not None and day in days
    if key.vr == "TM":
        times = time_range(key.value)
        return lambda value: (at := item_time(value)) is not None and at in times
    if key.vr == "UI":
        uids = frozenset(key.value.split("\\"))
        return lambda value: value in uids
    if key.vr == "PN":
        pattern = key.value
        return lambda value: name_match(pattern, value)
    pattern = key.value.strip(" ")
    if has_wildcard(pattern):
        return lambda value: wildcard_match(pattern, value)
    return lambda value: value == pattern


def key_matches(key: Key, value: str) -> bool:
    """Whether an item's value (as returned) matches the key."""
    return compile_key(key)(value)
