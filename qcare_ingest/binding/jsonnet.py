"""JSON binding with Json.NET 6.0.4's rules, not pydantic's (WIRE.md §2).

Two paths that bind alike. The common body (standard JSON, no error, plain metadata) is
parsed by the stdlib's C decoder and walked (`_fast`). Anything else — lenient syntax
(comments, single quotes, unquoted names, `0x1F`), a value Json.NET refuses, unusual
`$id`/`$ref`/`$values` — is bound by `_Serializer`, a port of the parts of
JsonSerializerInternalReader the DTO reaches, reading with `jsonreader.JsonTextReader`.
Its error recovery (which values still bind after a bad one, which ModelState keys
appear) is the original's, so the keys match the old server's.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from ..dates import parse_dotnet
from ..dto import DTO_FIELDS, INT32_MAX, INT32_MIN, SERVICE_FIELDS, QCareDto
from ..limits import MAX_INT_DIGITS, MAX_JSON_PARTS, MAX_SERVICE_LINES
from . import jsonreader as jr
from .jsonreader import JsonReaderError, JsonTextReader, NetDate
from .netdate import parse_invariant
from .result import BindResult
from .text import BodyDecodeError, decode_body
from .ticks import HONG_KONG_TICKS, MAX_TICKS, TICKS_PER_DAY, ticks_text

MAX_DEPTH = jr.MAX_DEPTH
_BIG_INT_CHARS = 380  # Json.NET refuses longer integer literals ("too large to parse")
DUPLICATE_SERVICES_WARNING = (
    "services appeared more than once; the lists were joined as the old server did"
)
SURROGATE_WARNING = "an unpaired UTF-16 surrogate or NUL was stored as U+FFFD"
REPLACED_SERVICES_WARNING = (
    "services appeared more than once; the last one replaced the earlier lines"
    " as the old server did"
)

# JSON (camelCase) property names as the old contract resolver wrote them
_DTO_PROPS = {canon: canon for canon in DTO_FIELDS.values()}
_SVC_PROPS = {canon: canon for canon in SERVICE_FIELDS.values()}


def _upper(name: str) -> str:
    """OrdinalIgnoreCase: char by char, never growing ("ß" stays)."""
    upper = name.upper()
    if len(upper) == len(name):
        return upper  # no character grew, so the same as char by char (at C speed)
    return "".join(c.upper() if len(c.upper()) == 1 else c for c in name)


_DTO_UPPER = {_upper(n): n for n in _DTO_PROPS}
_SVC_UPPER = {_upper(n): n for n in _SVC_PROPS}

# member types
T_DTO, T_LIST, T_SVC, T_STR, T_INT, T_NINT, T_DATE = range(7)
_DTO_TYPES = {name: T_STR for name in _DTO_PROPS} | {"studyDate": T_DATE, "services": T_LIST}
_SVC_TYPES = {"studyDesc": T_STR, "bodypart": T_STR, "noOfImages": T_NINT, "warningTime": T_INT}


class _Obj(list[tuple[str, Any]]):
    """A JSON object as its ordered (name, value) pairs (the fast path's parse)."""


class _Num(str):
    """A JSON number with a fraction or exponent, or NaN/Infinity, kept as its text."""


class _BigInt(str):
    """An integer literal longer than MAX_INT_DIGITS, kept as its text."""


def _int_literal(text: str) -> int | _BigInt:
    if len(text) <= MAX_INT_DIGITS:
        return int(text)
    if len(text) > _BIG_INT_CHARS:
        raise _Slow  # Json.NET's reader fails on it, even in a member nobody binds
    return _BigInt(text)


def _float_literal(text: str) -> _Num:
    if (len(text) > 300 or "e" in text or "E" in text) and float(text) in _INFINITE:
        raise _Slow  # 1e400: .NET Framework's double.TryParse fails, wherever it stands
    return _Num(text)


_INFINITE = (float("inf"), float("-inf"))
_DECODER = json.JSONDecoder(
    object_pairs_hook=_Obj,
    parse_float=_float_literal,
    parse_constant=_Num,
    parse_int=_int_literal,
    strict=False,  # Json.NET takes control characters inside strings
)


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


# A string, or an unterminated one running to the end: linear (see git history).
_STRING = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+(?:"|\\?\Z)', re.DOTALL)


def _parts(text: str) -> int:
    """An upper bound on the objects, arrays, values and comments parsing would read:
    brackets, commas, slashes and parentheses (`new X(`, which nests) outside strings."""
    bare = _STRING.sub("", text)
    parts = bare.count("[") + bare.count("{") + bare.count(",") + bare.count("/")
    return parts + bare.count("(")


def parse(text: str) -> Any:
    """Parse the first standard-JSON value; content after it is ignored (j15)."""
    start = len(text) - len(text.lstrip(" \t\n\r"))
    value, _ = _DECODER.raw_decode(text, start)
    return value


# -- dates --------------------------------------------------------------------------------
_TICK_EPOCH = datetime(1, 1, 1)


def _ticks_of(text: str) -> tuple[str, int] | None:
    """What dates.parse_dotnet reads `text` as: ('naive', wall ticks) or ('aware', UTC)."""
    parsed = parse_dotnet(text)
    if parsed is None:
        return None
    value = parsed.value
    offset = value.utcoffset()
    delta = value.replace(tzinfo=None) - _TICK_EPOCH
    ticks = (delta.days * 86_400_000_000 + delta.seconds * 1_000_000 + delta.microseconds) * 10
    ticks += parsed.extra_ticks
    if offset is None:
        return ("naive", ticks)
    return ("aware", ticks - int(offset.total_seconds()) * 10_000_000)


def _net_fallback(text: str) -> NetDate | None:
    """DateTime.TryParse(text, InvariantCulture, RoundtripKind), through netdate."""
    iso = parse_invariant(text)
    if iso is None:
        return None
    key = _ticks_of(iso)
    if key is None:
        return None
    if key[0] == "naive":
        return NetDate(key[1], "Unspecified")
    return NetDate(key[1], "Utc" if iso.endswith(("Z", "z")) else "Local")


def _date_text(sent: str, value: NetDate) -> str:
    """The string to keep: as sent when dates.parse_dotnet reads it as the same value,
    else the canonical form of the value Json.NET produced (same instant and kind)."""
    want = ("naive", value.ticks) if value.kind == "Unspecified" else ("aware", value.ticks)
    if _ticks_of(sent) == want:
        return sent
    if value.kind == "Unspecified":
        if value.ticks % TICKS_PER_DAY == 0:
            # a day alone (`Oct 26 2025`) stays a day alone, as a form post stores it:
            # SPEC §3 completes it with studyTime
            alone = parse_invariant(sent, date_only=True)
            if alone is not None and len(alone) == 10:
                return alone
        return ticks_text(value.ticks, "always")
    if value.kind == "Local":
        local = value.ticks + HONG_KONG_TICKS
        if local <= MAX_TICKS:
            return ticks_text(local, "always") + "+08:00"
    return ticks_text(value.ticks, "always") + "Z"


# -- the fast path: standard JSON already parsed, nothing unusual ----------------------------
class _Slow(Exception):
    """Leave this body to the full emulation."""


def _fast_string(value: Any) -> str | None:
    if value is None or type(value) is str:
        return value
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, _Num):
        return jr.net_double_text(float(value))
    if isinstance(value, _BigInt) and len(value) <= _BIG_INT_CHARS:
        return str(jr.BigIntText(value))
    raise _Slow


def _fast_int(value: Any, nullable: bool) -> int | None:
    if type(value) is int and INT32_MIN <= value <= INT32_MAX:
        return value
    if type(value) is str:
        if value == "":
            if nullable:
                return None
            raise _Slow
        number = jr.net_int_parse(value)
        if number is None:
            raise _Slow
        return number
    if value is None and nullable:
        return None
    raise _Slow


# Where Json.NET's ISO reader and dates.parse_dotnet read the same value (away from
# DateTime's ends, where Json.NET clamps): the text is kept as sent, nothing more to do.
_PLAIN_ISO = re.compile(
    r"(?!0001|9999)\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,7})?(?:Z|[+-][01]\d:\d{2})?",
    re.ASCII,
)


def _fast_date(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if type(value) is not str:
        raise _Slow
    if _PLAIN_ISO.fullmatch(value) and parse_dotnet(value) is not None:
        return value
    parsed = jr.try_parse_datetime(value) or _net_fallback(value)  # may raise: then slow
    if parsed is None:
        raise _Slow
    return _date_text(value, parsed)


def _date_token(text: str) -> bool:
    """Json.NET's reader makes a date of this metadata string (a `$ref` must be a string)."""
    return (text[:1].isdecimal() and len(text) >= 19) or text[:1] == "/"


def _fast_id(obj: _Obj, ids: dict[str, Any], target: Any) -> list[tuple[str, Any]]:
    """Register a leading plain `$id`; anything more unusual goes the slow way."""
    if not obj or obj[0][0][:1] != "$":
        return obj
    name, value = obj[0]
    if name != "$id" or (len(obj) > 1 and obj[1][0][:1] == "$"):
        raise _Slow
    if type(value) is str:
        if _date_token(value):
            raise _Slow
        key = value
    elif type(value) is int:
        key = str(value)
    else:
        raise _Slow
    if key in ids:
        raise _Slow
    ids[key] = target
    return obj[1:]


def _fast(root: _Obj) -> QCareDto:
    ids: dict[str, Any] = {}
    fields: dict[str, Any] = {}
    seen_services = False
    for name, value in _fast_id(root, ids, fields):
        canon = _DTO_PROPS.get(name) or _DTO_UPPER.get(_upper(name))
        if canon is None:
            continue  # unknown: Json.NET skips it
        if canon == "services":
            if seen_services:
                raise _Slow
            seen_services = True
            fields[canon] = _fast_services(value, ids, fields)
        elif canon == "studyDate":
            fields[canon] = _fast_date(value)
        elif type(value) is str:
            fields[canon] = value
        else:
            fields[canon] = _fast_string(value)
    return QCareDto(**fields)


def _fast_services(value: Any, ids: dict[str, Any], root: Any) -> list[Any] | None:
    if value is None:
        return None
    if type(value) is not list:
        raise _Slow
    lines: list[Any] = []
    for item in value[: MAX_SERVICE_LINES + 1]:
        if item is None:
            lines.append(None)
            continue
        if type(item) is not _Obj:
            raise _Slow
        if item and item[0][0] == "$ref":
            ref = item[0][1]
            if len(item) > 1 or type(ref) is not str or _date_token(ref):
                raise _Slow
            target = ids.get(ref)
            if target is not None and (target is root or type(target) is not dict):
                raise _Slow
            lines.append(target)
            continue
        line: dict[str, Any] = {}
        for name, field in _fast_id(item, ids, line):
            canon = _SVC_PROPS.get(name) or _SVC_UPPER.get(_upper(name))
            if canon is None:
                continue
            if canon == "noOfImages":
                line[canon] = _fast_int(field, True)
            elif canon == "warningTime":
                line[canon] = _fast_int(field, False)
            elif field is None or type(field) is str:
                line[canon] = field
            else:
                line[canon] = _fast_string(field)
        lines.append(line)
    return lines


# -- the full emulation ---------------------------------------------------------------------
class _Error(Exception):
    """A JsonSerializationException (or another exception binding let through)."""


class _DtoObj(dict[str, Any]):
    """A QCareDto being bound: canonical member name -> value."""


class _SvcObj(dict[str, Any]):
    """A ServicesInfo being bound (`$ref` may put one object in several places)."""


class _List(list[Any]):
    """A List<ServicesInfo>; a second `services` appends to it, as Json.NET's does."""


_END = "The JSON ends before the value is complete"


def _id_text(value: Any) -> str | None:
    """`reader.Value.ToString()` of a `$id` value."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float):
        return jr.net_double_text(value)
    if isinstance(value, NetDate):
        return f"\x00date:{value.ticks}:{value.kind}"  # DateTime.ToString(): never a $ref string
    return str(value)


class _Serializer:
    """JsonSerializerInternalReader for this DTO, method by method (Deserialize,
    CreateValueInternal, CreateObject, ReadMetadataProperties, CreateList, PopulateList,
    PopulateObject, SetPropertyValue, HandleError), with Web API's error handler: every
    error is logged at the reader's path and marked handled, and reading goes on as the
    original goes on. Recursion is bounded by the DTO's shape (root, list, line)."""

    def __init__(self, text: str, result: BindResult) -> None:
        self.r = JsonTextReader(text)
        self.result = result
        self.ids: dict[str, Any] = {}
        self.id_of: dict[int, str] = {}
        self.warnings: set[str] = set()
        self.keys: dict[str, str] = {}
        self.step_limit = 8 * MAX_JSON_PARTS + 10_000

    def log(self, exc: Exception) -> None:
        if self.r.steps > self.step_limit:
            raise _Abort from None
        # ModelState's keys ignore case: the first spelling stays
        path = self.r.path
        key = self.keys.setdefault(path.upper() if path.isascii() else _upper(path), path)
        self.result.add(key, str(exc))

    def handle_error(self, read_past: bool, initial_depth: int) -> None:
        r = self.r
        if read_past:
            r.skip()
            while r.depth > initial_depth + 1:
                if not r.read():
                    break

    def checked_read(self) -> None:
        if not self.r.read():
            raise _Error(_END)

    def read_for_type(self, kind: int) -> bool:
        r = self.r
        if kind == T_STR:
            r.read_as_string()
        elif kind in (T_INT, T_NINT):
            r.read_as_int32()
        elif kind == T_DATE:
            r.read_as_datetime(_net_fallback)
        else:
            while True:
                if not r.read():
                    return False
                if r.token != jr.COMMENT:
                    return True
        return r.token != jr.NONE

    # Deserialize
    def deserialize(self) -> Any:
        try:
            if not self.read_for_type(T_DTO):
                return None
            return self.create_value(T_DTO, None)
        except (_Error, JsonReaderError) as exc:
            self.log(exc)
            self.handle_error(False, 0)
            return None

    def create_value(self, kind: int, existing: Any) -> Any:
        r = self.r
        while True:
            t = r.token
            if t == jr.START_OBJECT:
                return self.create_object(kind, existing)
            if t == jr.START_ARRAY:
                return self.create_list(kind, existing, None)
            if t in (jr.INTEGER, jr.FLOAT, jr.BOOLEAN, jr.DATE):
                return self.ensure_type(r.value, kind)
            if t == jr.STRING:
                s = r.value
                if not s and kind != T_STR:
                    return None  # every other member type here is nullable but int
                return self.ensure_type(s, kind)
            if t == jr.START_CONSTRUCTOR:
                return self.ensure_type(r.value, kind)
            if t in (jr.NULL, jr.UNDEFINED):
                return self.ensure_type(None, kind)
            if t != jr.COMMENT:
                raise _Error("An unexpected token where a value was expected")
            if not r.read():
                raise _Error(_END)

    def ensure_type(self, value: Any, kind: int) -> Any:
        if value is None:
            if kind == T_INT:
                raise _Error("null is not a whole number (Int32)")
            return None
        if kind == T_STR:
            if isinstance(value, str):
                return value
            return _id_text(value)  # Convert.ChangeType(value, string)
        if kind in (T_INT, T_NINT) and type(value) is int:
            return value
        if kind == T_DATE and isinstance(value, NetDate):
            return value
        raise _Error("The value cannot be converted to the member's type")

    def create_object(self, kind: int, existing: Any) -> Any:
        self.checked_read()
        done, value, ident = self.read_metadata(kind, existing)
        if done:
            return value
        if kind == T_DTO:
            return self.populate_object(_DtoObj(), kind, ident)
        if kind == T_SVC:
            return self.populate_object(_SvcObj(), kind, ident)
        raise _Error("A JSON object cannot be bound to this member")

    def read_metadata(self, kind: int, existing: Any) -> tuple[bool, Any, str | None]:
        r = self.r
        ident: str | None = None
        if r.token != jr.PROPERTY_NAME or not str(r.value).startswith("$"):
            return False, None, None
        while True:
            name = r.value
            if name == "$ref":
                self.checked_read()
                if r.token not in (jr.STRING, jr.NULL):
                    raise _Error("A $ref must be a string or null")
                ref = r.value
                self.checked_read()
                if ref is not None:
                    if r.token == jr.PROPERTY_NAME:
                        raise _Error("A $ref object must have no other property")
                    return True, self.ids.get(ref), None
            elif name == "$type":
                self.checked_read()
                if r.value is None:
                    raise _Error("A $type must have a value")
                self.checked_read()
            elif name == "$id":
                self.checked_read()
                ident = _id_text(r.value)
                self.checked_read()
            elif name == "$values":
                self.checked_read()
                value = self.create_list(kind, existing, ident)
                self.checked_read()
                return True, value, None
            else:
                return False, None, ident
            if r.token != jr.PROPERTY_NAME:
                return False, None, ident

    def add_reference(self, ident: str, value: Any) -> None:
        if ident in self.ids or self.id_of.get(id(value), ident) != ident:
            raise _Error("An object reference ($id) is used twice")
        self.ids[ident] = value
        self.id_of[id(value)] = ident

    def create_list(self, kind: int, existing: Any, ident: str | None) -> Any:
        if kind != T_LIST:
            raise _Error("A JSON array cannot be bound to this member")
        if existing is None:
            return self.populate_list(_List(), ident)
        return self.populate_list(existing, ident)

    def throw_unexpected_end(self) -> None:
        try:
            raise _Error(_END)
        except _Error as exc:
            self.log(exc)
            self.handle_error(False, 0)

    def populate_list(self, items: _List, ident: str | None) -> _List:
        r = self.r
        if ident is not None:
            self.add_reference(ident, items)
        initial_depth = r.depth
        previous: int | None = None
        finished = False
        while not finished:
            try:
                if not self.read_for_type(T_SVC):
                    break
                if r.token == jr.END_ARRAY:
                    finished = True
                elif r.token != jr.COMMENT:
                    value = self.create_value(T_SVC, None)
                    if value is not None and type(value) is not _SvcObj:
                        raise _Error("A service line refers to something that is not one")
                    if len(items) <= MAX_SERVICE_LINES:  # more are refused by limits.check
                        items.append(value)
            except (_Error, JsonReaderError) as exc:
                position = r.position_at(initial_depth)
                self.log(exc)
                self.handle_error(True, initial_depth)
                if previous is not None and previous == position:
                    raise _Error("The JSON could not be read past an error") from None
                previous = position
        if not finished:
            self.throw_unexpected_end()
        return items

    def populate_object(self, obj: dict[str, Any], kind: int, ident: str | None) -> Any:
        r = self.r
        if ident is not None:
            self.add_reference(ident, obj)
        initial_depth = r.depth
        props, upper, types = (
            (_DTO_PROPS, _DTO_UPPER, _DTO_TYPES)
            if kind == T_DTO
            else (_SVC_PROPS, _SVC_UPPER, _SVC_TYPES)
        )
        finished = False
        while True:
            t = r.token
            if t == jr.PROPERTY_NAME:
                name = r.value
                try:
                    canon = props.get(name) or upper.get(_upper(name))
                    if canon is None:
                        if r.read():
                            r.skip()
                    else:
                        r.replaced_surrogate = False
                        if not self.read_for_type(types[canon]):
                            raise _Error(_END)
                        self.set_property(obj, canon, types[canon])
                        if r.replaced_surrogate and types[canon] == T_STR:
                            # Json.NET's U+FFFD, told as limits.make_storable tells its own
                            field = canon if kind == T_DTO else "services"
                            self.warnings.add(f"{field}: {SURROGATE_WARNING}")
                except (_Error, JsonReaderError) as exc:
                    self.log(exc)
                    self.handle_error(True, initial_depth)
            elif t == jr.END_OBJECT:
                finished = True
            elif t != jr.COMMENT:
                raise _Error("An unexpected token inside an object")
            if finished or not r.read():
                break
        if not finished:
            self.throw_unexpected_end()
        return obj

    def set_property(self, obj: dict[str, Any], canon: str, kind: int) -> None:
        r = self.r
        current = None
        if kind == T_LIST and r.token in (jr.START_ARRAY, jr.START_OBJECT):
            current = obj.get(canon)
        previous = obj.get(canon) if kind == T_LIST else None
        value = self.create_value(kind, current)
        if current is not None and value is current:
            self.warnings.add(DUPLICATE_SERVICES_WARNING)
            return
        if kind == T_LIST and value is not None and type(value) is not _List:
            raise _Error("services refers to something that is not a list")
        if previous:  # a second `services` threw the lines of the first away
            self.warnings.add(REPLACED_SERVICES_WARNING)
        obj[canon] = value
        if kind == T_DATE and value is not None:
            obj[canon] = _date_text(r.date_text, value)


class _Abort(Exception):
    """Recovery went on for longer than any real body needs."""


def _model(root: _DtoObj) -> QCareDto:
    fields = dict(root)
    services = fields.get("services")
    if services is not None:
        fields["services"] = [None if line is None else dict(line) for line in services]
    return QCareDto(**fields)


def _emulate(text: str, result: BindResult) -> None:
    serializer = _Serializer(text, result)
    try:
        root = serializer.deserialize()
    except _Abort:
        result.add("", "The JSON holds too many errors to read on")
        return
    except (_Error, JsonReaderError) as exc:  # thrown past every handler (cannot happen)
        result.add("", str(exc))
        return
    except (ValueError, IndexError, OverflowError, RecursionError):  # a bug, never a 500
        result.errors.clear()
        result.add("", "The JSON could not be read")
        return
    result.warnings.extend(sorted(serializer.warnings))
    if type(root) is _DtoObj:
        try:
            result.model = _model(root)  # beside errors too: what the old server bound
        except ValueError:
            if not result.errors:
                result.add("", "The JSON could not be read")
    elif root is not None and not result.errors:
        result.add("", "The body is not a QCareDto object")  # a root $ref cannot resolve


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_BLANK = re.compile(f"[\\x00{jr._WS}]*")


def bind_json(body: bytes, charset: str | None) -> BindResult:
    result = BindResult(None)
    try:
        text = decode_body(body, charset)
    except BodyDecodeError as exc:
        result.add("", str(exc))
        return result
    if _BLANK.fullmatch(text):
        return result  # whitespace only: null model, no error (j24)
    brackets = text.count("[") + text.count("{")
    marks = brackets + text.count(",") + text.count("/") + text.count("(")
    if marks > MAX_JSON_PARTS and _parts(text) > MAX_JSON_PARTS:
        # 4 MiB of "{}," would be 1.4 million objects (258 MB), of "1.5," a million values
        # (240 MB), of "/**/" a million comments (seconds), of "new (" 800,000 levels of
        # constructors (seconds, and a key of their path): for nothing a DTO can hold
        # (a deliberate limit the old server lacked)
        result.add(
            "", f"The JSON holds more than {MAX_JSON_PARTS} objects, arrays, values and comments"
        )
        return result
    # the stdlib keeps a lone surrogate escape ("\ud800"); Json.NET reads it as U+FFFD
    lone = "\\u" in text and _SURROGATE_ESCAPE.search(text) is not None
    # a /Date()/ string anywhere (even skipped) may make Json.NET's reader throw
    if "Date(" not in text and not lone:
        try:
            root = parse(text)
            if type(root) is _Obj and not (brackets > MAX_DEPTH and _too_deep(root)):
                result.model = _fast(root)
                return result
        except (ValueError, RecursionError, _Slow):
            pass  # JSONDecodeError is a ValueError; so is a date netdate refuses
    _emulate(text, result)
    return result
