"""Form posts as MVC model binding read them (WIRE.md §5)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_plus

from ..dates import parse_dotnet
from ..dto import DTO_FIELDS, INT32_MAX, INT32_MIN, SERVICE_FIELDS, SERVICE_INT_FIELDS, QCareDto
from ..limits import MAX_SERVICE_LINES, parse_int_text
from .echo import quote_date, quote_number
from .result import BindResult

MAX_KEYS = 1000
MAX_RAW_KEY = 256  # percent-encoded: far longer than any field's key
# A value cut here still decodes to more than any limit allows (16 KiB at least), so it is
# refused as too long, as it would be whole.
MAX_RAW_VALUE = 48 * 1024
_JQUERY_NAMED = re.compile(r"\[([^\]\d][^\]]*)\]")  # a[b] -> a.b (a[0] stays)
_INDEX = re.compile(r"^services\[([^\]]*)\](?:\.(.*))?$")

_DTO_NAMES = {name.lower(): name for name in DTO_FIELDS}
_SERVICE_NAMES = {name.lower(): name for name in SERVICE_FIELDS}


class TooManyKeysError(ValueError):
    pass


def parse_pairs(body: bytes) -> dict[str, list[str]]:
    """Keys normalised to MVC style and lower-cased, each with all its values in order."""
    text = body.decode("utf-8", errors="replace")  # charset is ignored; bad bytes -> U+FFFD
    values: dict[str, list[str]] = {}
    count = 0
    for segment in text.split("&"):
        if not segment:
            continue
        count += 1
        if count > MAX_KEYS:
            raise TooManyKeysError
        raw_key, _, raw_value = segment.partition("=")
        if len(raw_key) > MAX_RAW_KEY:
            continue  # no field has such a name
        key = unquote_plus(raw_key, errors="replace")
        key = _JQUERY_NAMED.sub(r".\1", key).replace("[]", "")
        # unquote costs ~200 bytes per %XX: decode no more than any limit can let through
        value = unquote_plus(raw_value[:MAX_RAW_VALUE], errors="replace")
        values.setdefault(key.lower(), []).append(value)
    return values


def _null_if_blank(value: str | None) -> str | None:
    return None if value is None or not value.strip() else value


def _indices(pairs: dict[str, list[str]]) -> list[str]:
    explicit = pairs.get("services.index")
    if explicit is not None:  # every value counts here, comma-separated or repeated
        return [i.strip() for v in explicit for i in v.split(",") if i.strip()]
    present = {m[1] for key in pairs if (m := _INDEX.match(key))}
    out, n = [], 0
    while str(n) in present:  # read in order, stop at the first gap
        out.append(str(n))
        n += 1
    return out


def bind_form(body: bytes) -> BindResult:
    result = BindResult(None)
    try:
        all_pairs = parse_pairs(body)
    except TooManyKeysError:
        result.add("", f"The form has more than {MAX_KEYS} keys")
        return result
    pairs = {key: values[0] for key, values in all_pairs.items()}  # the first value wins
    fields: dict[str, Any] = {}
    for lower, cs_name in _DTO_NAMES.items():
        if cs_name == "services" or lower not in pairs:
            continue
        value = _null_if_blank(pairs[lower])
        canon = DTO_FIELDS[cs_name]
        if canon == "studyDate" and value is not None and parse_dotnet(value) is None:
            result.add(
                cs_name, f"The value {quote_date(value, 'sent')} is not valid for {cs_name}."
            )
            continue
        fields[canon] = value
    # never bind more lines than the limit lets through (limits.check refuses those)
    indices = _indices(all_pairs)[: MAX_SERVICE_LINES + 1]
    if indices:
        fields["services"] = [_service(pairs, index, result) for index in indices]
    result.model = QCareDto(**fields)
    return result


def _service(pairs: dict[str, str], index: str, result: BindResult) -> dict[str, Any]:
    line: dict[str, Any] = {}
    for lower, cs_name in _SERVICE_NAMES.items():
        key = f"services[{index.lower()}].{lower}"
        if key not in pairs:
            continue
        canon = SERVICE_FIELDS[cs_name]
        value = _null_if_blank(pairs[key])
        path = f"services[{index}].{cs_name}"
        if canon not in SERVICE_INT_FIELDS:
            line[canon] = value
        elif value is None:
            result.add(path, "A value is required.")
        elif (number := parse_int_text(value)) is None or not INT32_MIN <= number <= INT32_MAX:
            result.add(path, f"The value {quote_number(value, 'sent')} is not valid for {cs_name}.")
        else:
            line[canon] = number
    return line
