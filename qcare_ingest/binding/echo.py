"""What a binding error may quote back: only values that cannot be personal data.

Error bodies and logs must never carry an HKID, a passport number or a name
(SPEC §5), so a bad value is quoted only when it is made of the characters of
a number or a date; anything else is described, not shown.
"""

from __future__ import annotations

import re

# shapes, not alphabets: "E99887766" is made of number characters and is a passport
_NUMBERISH = re.compile(r"^\s*[+-]?(\d[\d_,]*\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$")
_DATEISH = re.compile(
    r"^\s*(\d{1,4}[-/]\d{1,2}[-/]\d{1,4}([T ][\d:.]{1,20})?(Z|\s?[+-]?\d{2}:?\d{2})?"
    r"|\\?/Date\(-?\d{1,15}([+-]\d{4})?\)\\?/)\s*$"
)


def quote_number(value: str, fallback: str = "text that is not a number") -> str:
    if not _NUMBERISH.match(value):
        return fallback
    return f"'{value}'" if len(value) <= 12 else "a number too long to show"


def quote_date(value: str, fallback: str = "text that is not a date") -> str:
    return f"'{value}'" if _DATEISH.match(value) else fallback
