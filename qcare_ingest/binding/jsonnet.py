"""JSON binding with Json.NET's rules, not pydantic's (WIRE.md §2).

A pre-pass keeps what `json.loads` would lose (number literals, property
order, duplicate keys), then walks the document the way Json.NET's
JsonSerializerInternalReader does: leading `$id`/`$ref`/`$values` metadata,
exact-then-case-insensitive names, per-value errors that leave the rest bound.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..dates import parse_dotnet
from ..dto import DTO_FIELDS, INT32_MAX, INT32_MIN, SERVICE_FIELDS, SERVICE_INT_FIELDS, QCareDto
from ..limits import MAX_INT_DIGITS, MAX_JSON_PARTS, MAX_SERVICE_LINES, parse_int_text
from .echo import quote_date, quote_number
from .result import BindResult
from .text import BodyDecodeError, decode_body

MAX_DEPTH = 256
_METADATA = ("$id", "$ref", "$type", "$values")

_DTO_NAMES = {name.lower(): canon for name, canon in DTO_FIELDS.items()}
_SERVICE_NAMES = {name.lower(): canon for name, canon in SERVICE_FIELDS.items()}
# exact names first (what senders write): no lower-casing on the common path
_DTO_EXACT = {canon: canon for canon in _DTO_NAMES.values()}
_SERVICE_EXACT = {canon: canon for canon in _SERVICE_NAMES.values()}


class _Obj(list[tuple[str, Any]]):
    """A JSON object as its ordered (name, value) pairs."""


class _Num(str):
    """A JSON number with a fraction or exponent, kept as its literal text ("1.50").
    Integers stay ints: their text is str(int), as Json.NET writes them."""


class _BigInt(_Num):
    """An integer literal too long for int() to be worth calling (or allowed: it stops at
    4,300 digits); as a string it is its text, as an Int32 it is out of range."""


def _int_literal(text: str) -> int | _BigInt:
    return int(text) if len(text) <= MAX_INT_DIGITS else _BigInt(text)


_DECODER = json.JSONDecoder(
    object_pairs_hook=_Obj, parse_float=_Num, parse_constant=_Num, parse_int=_int_literal
)


def _describe(value: Any) -> str:
    if isinstance(value, _Obj):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, _Num | int):
        return "a number"
    if value is None:
        return "null"
    return "a string"


def _too_deep(root: Any) -> bool:
    stack: list[tuple[Any, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        if isinstance(node, _Obj):
            stack.extend((v, depth + 1) for _, v in node if isinstance(v, list))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, list))
    return False


# A string, or an unterminated one running to the end: every `"` starts a match, so the
# scan is linear (requiring the closing quote made `"\"\"\"…` quadratic). Unrolled
# ("normal* (special normal*)*"): an alternation under * keeps state per character.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)


def _parts(text: str) -> int:
    """An upper bound on the objects, arrays and values parsing would build: brackets and
    commas outside strings."""
    bare = _STRING.sub("", text)
    return bare.count("[") + bare.count("{") + bare.count(",")


def parse(text: str) -> Any:
    """Parse the first JSON value; content after it is ignored (j15)."""
    start = len(text) - len(text.lstrip())
    value, _ = _DECODER.raw_decode(text, start)
    return value


class _Binder:
    def __init__(self, result: BindResult) -> None:
        self.result = result
        self.ids: dict[str, Any] = {}
        self.root: dict[str, Any] | None = None

    def error(self, path: str, message: str) -> None:
        self.result.add(path, message)

    # -- metadata ---------------------------------------------------------
    def split_metadata(self, obj: _Obj, path: str) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
        """Leading metadata properties, then the rest (non-leading ones are plain, ignored)."""
        if not obj or obj[0][0] not in _METADATA:
            return {}, obj  # no metadata (the common case): nothing to split or copy
        meta: dict[str, Any] = {}
        i = 0
        while i < len(obj) and obj[i][0] in _METADATA and obj[i][0] not in meta:
            meta[obj[i][0]] = obj[i][1]
            i += 1
        return meta, list(obj[i:])

    def register(self, meta: dict[str, Any], target: Any, path: str) -> bool:
        if "$id" not in meta or meta["$id"] is None:
            return True
        ref_id = str(meta["$id"])
        if ref_id in self.ids:
            self.error(
                path,
                f"Error reading object reference {quote_number(ref_id)}: the $id is used twice",
            )
            return False
        self.ids[ref_id] = target
        return True

    def resolve(self, meta: dict[str, Any], rest: list[Any], path: str) -> tuple[bool, Any]:
        """(ok, target) for a `$ref` object."""
        ref = meta["$ref"]
        if len(meta) > 1 or rest:
            self.error(
                path,
                "Additional content found in JSON reference object: "
                "a $ref object must have no other property",
            )
            return False, None
        if ref is None:
            return True, None
        if not isinstance(ref, str) or isinstance(ref, _Num):
            self.error(path, "JSON reference $ref property must have a string or null value")
            return False, None
        return True, self.ids.get(ref)  # an unknown id binds null, silently (j06)

    # -- values -----------------------------------------------------------
    def string(self, value: Any, path: str) -> tuple[bool, str | None]:
        if value is None or isinstance(value, str):  # _Num is a str: its literal text
            return True, value
        if isinstance(value, bool):
            return True, "true" if value else "false"
        if isinstance(value, int):
            return True, str(value)
        self.error(path, f"Expected a string but got {_describe(value)}")
        return False, None

    def integer(self, value: Any, path: str) -> tuple[bool, int]:
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, _BigInt) or (isinstance(value, str) and not isinstance(value, _Num)):
            number = parse_int_text(value)
        if number is not None:
            if INT32_MIN <= number <= INT32_MAX:
                return True, number
            text = str(value).strip()
            self.error(path, f"The value {quote_number(text)} is outside the Int32 range")
            return False, 0
        shown = quote_number(value) if isinstance(value, str) else _describe(value)
        self.error(path, f"Expected a whole number (Int32) but got {shown}")
        return False, 0

    def date(self, value: Any, path: str) -> tuple[bool, str | None]:
        if isinstance(value, str) and not isinstance(value, _Num):
            if parse_dotnet(value) is not None:
                return True, value
            self.error(
                path, f"{quote_date(value)} is not a valid date (expected ISO 8601 or /Date(ms)/)"
            )
            return False, None
        self.error(path, f"Expected a date string but got {_describe(value)}")
        return False, None

    # -- objects ----------------------------------------------------------
    def bind_root(self, obj: _Obj) -> QCareDto | None:
        meta, rest = self.split_metadata(obj, "")
        if "$ref" in meta:
            self.resolve(meta, rest, "")
            return None  # nothing is registered yet: a root $ref is always unknown (j11)
        if "$values" in meta:
            self.error("", "Expected a QCareDto object but got an array ($values)")
            return None
        fields: dict[str, Any] = {}
        self.root = fields
        self.register(meta, fields, "")
        for name, value in rest:
            canon = _DTO_EXACT.get(name) or _DTO_NAMES.get(name.lower())
            path = name
            if canon is None:
                continue  # unknown property: ignored
            if type(value) is str and canon != "studyDate" and canon != "services":
                fields[canon] = value  # the common case, as string() would bind it
            elif canon == "services":
                fields[canon] = self.services(value, path)
            elif canon == "studyDate":
                ok, date = self.date(value, path)
                fields[canon] = date if ok else None
            else:
                ok, text = self.string(value, path)
                fields[canon] = text if ok else None
        return QCareDto(**fields)

    def services(self, value: Any, path: str) -> list[dict[str, Any] | None] | None:
        items: Any = value
        if isinstance(value, _Obj):
            meta, rest = self.split_metadata(value, path)
            if "$ref" in meta:
                ok, target = self.resolve(meta, rest, path)
                return target if ok and isinstance(target, list) else None
            if "$values" not in meta:
                self.error(path, "Expected an array of ServicesInfo but got an object")
                return None
            items = meta["$values"]
            if not isinstance(items, list) or isinstance(items, _Obj):
                self.error(path, f"Expected $values to be an array but got {_describe(items)}")
                return None
            lines: list[dict[str, Any] | None] = []
            self.register(meta, lines, path)
        elif value is None:
            return None
        elif isinstance(value, list) and not isinstance(value, _Obj):
            lines = []
        else:
            self.error(path, f"Expected an array of ServicesInfo but got {_describe(value)}")
            return None
        # never bind more lines than the limit lets through (limits.check refuses those)
        for index, item in enumerate(items[: MAX_SERVICE_LINES + 1]):
            ok, line = self.service(item, f"{path}[{index}]")
            if ok:
                lines.append(line)
        return lines

    def service(self, item: Any, path: str) -> tuple[bool, dict[str, Any] | None]:
        if item is None:
            return True, None  # [null] binds a null item (j29)
        if not isinstance(item, _Obj):
            self.error(path, f"Expected a ServicesInfo object but got {_describe(item)}")
            return False, None
        meta, rest = self.split_metadata(item, path)
        if "$ref" in meta:
            ok, target = self.resolve(meta, rest, path)
            if not ok:
                return False, None
            if target is not None and (target is self.root or not isinstance(target, dict)):
                ref = quote_number(str(meta["$ref"]))
                self.error(path, f"$ref {ref} points to an object that is not a ServicesInfo")
                return False, None
            return True, target
        line: dict[str, Any] = {}
        if not self.register(meta, line, path):
            return False, None
        for name, value in rest:
            canon = _SERVICE_EXACT.get(name) or _SERVICE_NAMES.get(name.lower())
            if canon is None:
                continue
            # the common cases first, as integer()/string() would bind them
            if canon in SERVICE_INT_FIELDS:
                if type(value) is int and INT32_MIN <= value <= INT32_MAX:
                    line[canon] = value
                    continue
                ok, number = self.integer(value, f"{path}.{name}")
                line[canon] = number if ok else line.get(canon, 0)
            elif value is None or type(value) is str:
                line[canon] = value
            else:
                ok, text = self.string(value, f"{path}.{name}")
                line[canon] = text if ok else None
        return True, line


def bind_json(body: bytes, charset: str | None) -> BindResult:
    result = BindResult(None)
    try:
        text = decode_body(body, charset)
    except BodyDecodeError as exc:
        result.add("", str(exc))
        return result
    if not text.strip():
        return result  # whitespace only: null model, no error (j24)
    brackets = text.count("[") + text.count("{")
    if brackets + text.count(",") > MAX_JSON_PARTS and _parts(text) > MAX_JSON_PARTS:
        # 4 MiB of "{}," would be 1.4 million objects (258 MB), of "1.5," a million values
        # (240 MB): for nothing a DTO can hold
        result.add("", f"The JSON holds more than {MAX_JSON_PARTS} objects, arrays and values")
        return result
    try:
        root = parse(text)
    except json.JSONDecodeError as exc:
        result.add(
            "", f"The body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        )
        return result
    except RecursionError:
        result.add("", f"The JSON is nested deeper than {MAX_DEPTH} levels")
        return result
    # a document can only nest deeper than MAX_DEPTH with more brackets than that
    if brackets > MAX_DEPTH and _too_deep(root):
        result.add("", f"The JSON is nested deeper than {MAX_DEPTH} levels")
        return result
    if root is None:
        return result  # JSON null: null model, no error (j23)
    if not isinstance(root, _Obj):
        result.add("", f"Expected a QCareDto object but got {_describe(root)}")
        return result
    result.model = _Binder(result).bind_root(root)
    return result
