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


# ModelState keys are member paths as the client wrote them (Json.NET keys an error at its
# JSON path), so a client decides their text: a member name is shown when it could be a
# programmer's (letters, `_`, `$`, up to 64), else as `<member>`; a key stops at 1,000.
_KEY_PART = re.compile(r"(\[\d+\])|([^.\[\]]+)|(.)")
_SAFE_NAME = re.compile(r"[A-Za-z_$][A-Za-z_$]{0,63}")
MAX_KEY = 1000
MASKED_MEMBER = "<member>"


def safe_key(key: str) -> str:
    """The ModelState key to answer and log: never a client's text value."""
    if len(key) <= MAX_KEY and (not key or _SAFE_KEY.fullmatch(key)):
        return key  # the common case: known names, plain names, indices
    out: list[str] = []
    size = 0
    for m in _KEY_PART.finditer(key[: MAX_KEY * 4]):
        part = m[0]
        unsafe_name = m[2] is not None and not _SAFE_NAME.fullmatch(part)
        if unsafe_name or (m[3] is not None and part != "."):
            part = MASKED_MEMBER
        if size + len(part) > MAX_KEY:
            out.append("…")
            break
        out.append(part)
        size += len(part)
    return "".join(out)


_SAFE_KEY = re.compile(
    r"(?:[A-Za-z_$][A-Za-z_$]{0,63}|\[\d+\])(?:\.?[A-Za-z_$][A-Za-z_$]{0,63}|\[\d+\])*"
)
