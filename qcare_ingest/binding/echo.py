"""What a binding error may quote back: only values that cannot be personal data.

Error bodies and logs must never carry an HKID, a passport number or a name
(SPEC §5), so a bad value is quoted only when it is made of the characters of
a number or a date; anything else is described, not shown.
"""

from __future__ import annotations

import re

_NUMBERISH = re.compile(r"^[\s0-9+\-.eE,_]{1,24}$")
_DATEISH = re.compile(r"^[\s0-9TZ:+\-./()Date\\]{1,48}$")


def quote_number(value: str) -> str:
    return f"'{value}'" if _NUMBERISH.match(value) else "text that is not a number"


def quote_date(value: str) -> str:
    return f"'{value}'" if _DATEISH.match(value) else "text that is not a date"
