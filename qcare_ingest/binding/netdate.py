"""STUB of .NET `DateTime.Parse(text, InvariantCulture, RoundtripKind)`.

The real emulation is written on another branch and replaces this file at merge; the
interface is exactly this one. Until then the stub knows only the shapes the old binder
already accepted by that route (date only, `yyyy-MM-dd HH:mm:ss`, `M/d/yyyy`), so no
body bound before is refused now.
"""

from __future__ import annotations

import re

_ISO_LIKE = re.compile(
    r"^\s*(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,7}))?)?)?\s*$",
    re.ASCII,
)
_US = re.compile(
    r"^\s*(\d{1,2})/(\d{1,2})/(\d{4})(?:\s+(\d{1,2}):(\d{2})(?::(\d{2}))?)?\s*$", re.ASCII
)


def _valid(y: int, mo: int, d: int, h: int, mi: int, s: int) -> bool:
    import calendar

    return (
        y >= 1
        and 1 <= mo <= 12
        and 1 <= d <= calendar.monthrange(y, mo)[1]
        and h < 24
        and mi < 60
        and s < 60
    )


def parse_invariant(text: str) -> str | None:
    """What .NET DateTime.Parse(text, InvariantCulture, RoundtripKind) yields, as an ISO
    string that dates.parse_dotnet reads back to the same value and kind
    ("2025-01-06T00:00:00" Unspecified, "...Z" Utc, "...+08:00" Local), or None."""
    m = _ISO_LIKE.match(text)
    if m:
        y, mo, d = int(m[1]), int(m[2]), int(m[3])
        h, mi, s = int(m[4] or 0), int(m[5] or 0), int(m[6] or 0)
        frac = (m[7] or "").ljust(7, "0")
    else:
        m = _US.match(text)
        if not m:
            return None
        mo, d, y = int(m[1]), int(m[2]), int(m[3])
        h, mi, s = int(m[4] or 0), int(m[5] or 0), int(m[6] or 0)
        frac = "0000000"
    if not _valid(y, mo, d, h, mi, s):
        return None
    return f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}.{frac}"
