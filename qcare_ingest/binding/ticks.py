""".NET DateTime ticks (100 ns since 0001-01-01) and the text the DTO stores for them.

One place for the constants and the formatter the JSON, form (netdate) and XML (xsdtime)
date readers share: each turns what .NET parsed into a string dates.parse_dotnet reads
back to the same value.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

TICKS_PER_SECOND = 10_000_000
TICKS_PER_DAY = 86_400 * TICKS_PER_SECOND
MAX_TICKS = 3_155_378_975_999_999_999  # DateTime.MaxValue
HONG_KONG_TICKS = 8 * 3600 * TICKS_PER_SECOND  # the reference server runs in Asia/Hong_Kong

Fraction = Literal["always", "nonzero", "trimmed"]


def ticks_text(ticks: int, fraction: Fraction = "nonzero") -> str:
    """`YYYY-MM-DDTHH:MM:SS` and the 7 fraction digits: always, only when not all zero, or
    with trailing zeros dropped (each reader keeps the spelling its tests pinned down)."""
    days, rest = divmod(ticks, TICKS_PER_DAY)
    seconds, frac = divmod(rest, TICKS_PER_SECOND)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    day = date.fromordinal(days + 1)
    text = f"{day.year:04d}-{day.month:02d}-{day.day:02d}T{hours:02d}:{minutes:02d}:{seconds:02d}"
    if fraction == "always" or frac:
        digits = f"{frac:07d}"
        text += "." + (digits.rstrip("0") if fraction == "trimmed" else digits)
    return text
