"""What one update may hold, checked at the gateway before anything is published (issue 12).

Every string field has a length in characters (code points) and in UTF-8 bytes; `msg_id`
and `accessionNo` also refuse control characters (they travel as the AMQP message-id,
a 255-byte short string, and are primary keys). A message has at most
`MAX_SERVICE_LINES` service lines, however they were written (`$ref`, `$values`,
repeated form indices), so the canonical message is never larger than
`MAX_MESSAGE_BYTES`, whatever the request body.

Two characters cannot be stored at all: an unpaired UTF-16 surrogate (a .NET string
cut through an emoji) and NUL (PostgreSQL text). The old server took both, so outside
the two identifiers they are replaced with U+FFFD and the message carries a warning.
"""

from __future__ import annotations

import operator
import re
from typing import Any

from .dto import QCareDto, ServicesInfo
from .fields import FIELDS, SERVICE_FIELDS
from .textlimit import TextLimit as TextLimit  # re-exported: limits.TextLimit

# canonical field name -> its limit, in the DTO's order (fields.py holds them)
DTO_LIMITS: dict[str, TextLimit] = {f.name: f.limit for f in FIELDS if f.limit is not None}
SERVICE_LIMITS: dict[str, TextLimit] = {
    f.name: f.limit for f in SERVICE_FIELDS if f.limit is not None
}
MAX_SERVICE_LINES = 100
# A body is parsed whole before it is bound: these bound what parsing can build (the
# largest DTO needs about 700; 4 MiB of "{}," would be 1.4 million objects).
MAX_JSON_PARTS = 20_000  # objects, arrays and values: brackets and commas outside strings
MAX_XML_MARKUP = 20_000  # every `<` and `=` counts: tags, comments, instructions, attributes
# Whole numbers: Int32 fields hold at most 10 digits; any longer literal is refused or,
# bound to a string, limited as that string. Never parsed past this many digits.
MAX_INT_DIGITS = 18
# The largest canonical message the limits allow (JSON escapes a control character in
# six bytes): tests/unit/test_limits.py builds it.
MAX_MESSAGE_BYTES = 512 * 1024

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def check(dto: QCareDto) -> dict[str, list[str]]:
    """ModelState errors (keys are canonical field paths) for a bound model, or {}."""
    errors: dict[str, list[str]] = {}
    values = dto.__dict__  # pydantic keeps the fields there; getattr costs more per field
    texts = [values[name] or "" for name in _DTO_NAMES]
    if not (
        all(map(operator.le, map(len, texts), _DTO_CHARS))
        and "".join(texts).isascii()  # then bytes = characters <= chars <= utf8_bytes
        and (values["msg_id"] or "").isprintable()  # the identifiers (ASCII now): no controls
        and (values["accessionNo"] or "").isprintable()
    ):  # the common case passes in a few C calls; the rest is looked at field by field
        for name, limit in DTO_LIMITS.items():
            value = values[name]
            if value is not None and (why := limit.problem(value)):
                errors.setdefault(name, []).append(f"{name} {why}.")
    services = dto.services or []
    if len(services) > MAX_SERVICE_LINES:
        errors["services"] = [f"An update holds at most {MAX_SERVICE_LINES} service lines."]
        return errors
    for index, line in enumerate(services):
        if line is None:
            continue
        for name, limit in SERVICE_LIMITS.items():
            value = getattr(line, name)
            if value is not None and (why := limit.problem(value)):
                errors.setdefault(f"services[{index}].{name}", []).append(f"{name} {why}.")
    return errors


_DTO_NAMES = tuple(DTO_LIMITS)
_DTO_CHARS = tuple(limit.chars for limit in DTO_LIMITS.values())
_CLEANABLE = tuple(name for name, limit in DTO_LIMITS.items() if not limit.identifier)


def _clean(value: str) -> str:
    return _UNSTORABLE.sub("\ufffd", value)


def _needs_cleaning(value: str | None) -> bool:
    if value is None:
        return False
    if value.isascii():
        return "\x00" in value
    return _UNSTORABLE.search(value) is not None


def make_storable(dto: QCareDto) -> tuple[QCareDto, list[str]]:
    """The model with unpaired surrogates and NUL replaced by U+FFFD, and a warning per
    field that had any (the field is named, its value is not)."""
    values = dto.__dict__
    lines = dto.services or []
    if len(lines) > MAX_SERVICE_LINES:
        return dto, []  # check() refuses it: nothing to store
    # `$ref` repeats one line up to MAX_SERVICE_LINES times, its strings shared: each
    # distinct string is scanned and cleaned once, by identity (a 4 MiB body's text
    # scanned a hundred times over held the event loop 1.5 s)
    texts = {id(v): v for name in _CLEANABLE if (v := values[name]) is not None}
    texts.update(
        (id(v), v)
        for line in lines
        if line is not None
        for name in SERVICE_LIMITS
        if (v := line.__dict__[name]) is not None
    )
    if not _needs_cleaning("".join(texts.values())):
        return dto, []  # the common case: one scan of all the text
    # only what changes: msg_id and accessionNo are refused by check(), not changed (an
    # id arrives as sent), so they are not in _CLEANABLE
    cleaned = {key: _clean(v) for key, v in texts.items() if _needs_cleaning(v)}
    changed: dict[str, Any] = {
        name: cleaned[id(v)] for name in _CLEANABLE if id(v := values[name]) in cleaned
    }
    storable = [_storable_line(line, cleaned) for line in lines]
    if any(new is not old for new, old in zip(storable, lines, strict=True)):
        changed["services"] = storable
    warnings = [
        f"{name}: an unpaired UTF-16 surrogate or NUL was stored as U+FFFD" for name in changed
    ]
    return dto.model_copy(update=changed), warnings


def _storable_line(line: ServicesInfo | None, cleaned: dict[int, str]) -> ServicesInfo | None:
    """The line with its cleaned strings (`cleaned`: by id of the string they replace)."""
    if line is None:
        return None
    update = {
        name: cleaned[id(v)] for name in SERVICE_LIMITS if id(v := line.__dict__[name]) in cleaned
    }
    return line.model_copy(update=update) if update else line


def parse_int_text(text: str) -> int | None:
    """The integer a decimal text names (`[+-]digits`, whitespace around), or None.
    Magnitudes past MAX_INT_DIGITS digits come back as ±10**MAX_INT_DIGITS, outside
    every range callers accept, so int()'s 4,300-digit limit is never reached."""
    m = _INT_TEXT.match(text)
    if m is None:
        return None
    digits = m[2].lstrip("0") or "0"
    sign = -1 if m[1] == "-" else 1
    magnitude: int = 10**MAX_INT_DIGITS if len(digits) > MAX_INT_DIGITS else int(digits)
    return sign * magnitude


_INT_TEXT = re.compile(r"^\s*([+-]?)(\d+)\s*$", re.ASCII)
