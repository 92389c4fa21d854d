"""A port of Json.NET 6.0.4's JsonTextReader (the lenient reader the old server used).

Only what binding the DTO needs: `read()` and the typed reads `read_as_int32`,
`read_as_string`, `read_as_datetime`, `skip()`, the path and depth. Where the original
leaves its state after an error matters: the serializer's error recovery reads on from
there, and which ModelState keys appear depends on it. So the state machine is kept
as it is, method by method (JsonTextReader.cs, JsonReader.cs, DateTimeUtils.cs).

Linear and bounded: runs of whitespace, string bodies, comments and number literals are
scanned with regular expressions, never character by character in Python; nothing
recurses. Error messages are our own and never quote the body.
"""

from __future__ import annotations

import calendar
import math
import re
import unicodedata
from datetime import date
from typing import Any

from .echo import quote_date, quote_number
from .ticks import HONG_KONG_TICKS, MAX_TICKS, TICKS_PER_SECOND

# tokens
NONE, START_OBJECT, START_ARRAY, START_CONSTRUCTOR, PROPERTY_NAME, COMMENT = range(6)
INTEGER, FLOAT, STRING, BOOLEAN, NULL, UNDEFINED = range(6, 12)
END_OBJECT, END_ARRAY, END_CONSTRUCTOR, DATE = range(12, 16)
_PRIMITIVE = frozenset({INTEGER, FLOAT, STRING, BOOLEAN, UNDEFINED, NULL, DATE})
_START = frozenset({START_OBJECT, START_ARRAY, START_CONSTRUCTOR})

# container types
C_NONE, C_OBJECT, C_ARRAY, C_CONSTRUCTOR = range(4)
# states
(S_START, S_COMPLETE, S_PROPERTY, S_OBJECT_START, S_OBJECT, S_ARRAY_START, S_ARRAY) = range(7)
(S_CONSTRUCTOR_START, S_CONSTRUCTOR, S_POST_VALUE, S_FINISHED) = range(7, 11)
# read types
R_READ, R_INT32, R_STRING, R_DATETIME = range(4)

MAX_DEPTH = 256
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_EPOCH_TICKS = 621355968000000000  # 1970-01-01 in ticks

# .NET char.IsWhiteSpace, plus NUL: the reader steps over both between tokens
_WS = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_SKIP = re.compile(f"[\\x00{_WS}]+")
_NET_WS = re.compile(f"[{_WS}]")
_NUMBER_CHARS = re.compile(r"[-+aAbBcCdDeEfFxX.0-9]*")
_STRING_END = {'"': re.compile(r'["\\]'), "'": re.compile(r"['\\]")}
_WORD_RUN = re.compile(r"[\w$]*")
_DECIMAL = re.compile(r"\d")  # Unicode Nd, as char.IsDigit
_DROP_ID = str.maketrans("", "", "_$")
_ASCII_INT = re.compile(r"^[\t-\r ]*([+-]?)([0-9]+)[\t-\r ]*\x00*$")
_STRING_BODY = {
    '"': re.compile(r'[^"\\]*+(?:\\.[^"\\]*+)*+', re.DOTALL),  # possessive: no
    "'": re.compile(r"[^'\\]*+(?:\\.[^'\\]*+)*+", re.DOTALL),  # backtracking stack
}
_CHUNK = 1 << 16
_HEX4 = r"u[\t-\r 0-9a-fA-F]{4}"  # int.Parse(NumberStyles.HexNumber) allows white space
_VALID_RUN = re.compile(r"[^\\]*+(?:\\(?:" + _HEX4 + r"|[btnfr\\\"'/])[^\\]*+)*+")
_ESCAPE_SPLIT = re.compile(r"\\(" + _HEX4 + r"|[btnfr\\\"'/])")
_SURROGATE = re.compile("[\ud800-\udfff]")
_LINE_END = re.compile(r"[\r\n]")
_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", "\\": "\\"}


_TOKEN_NAMES = {
    START_OBJECT: "an object",
    START_ARRAY: "an array",
    START_CONSTRUCTOR: "a constructor",
    INTEGER: "a number",
    FLOAT: "a number",
    STRING: "a string",
    BOOLEAN: "a boolean",
    UNDEFINED: "undefined",
    DATE: "a date",
    END_ARRAY: "the end of an array",
}


def describe(token: int) -> str:
    return _TOKEN_NAMES.get(token, "something else")


def _decode_escapes(parts: list[str]) -> str:
    """Text pieces and escapes alternating, as `_ESCAPE_SPLIT.split` gives them."""
    escapes = parts[1::2]
    parts = list(parts)
    parts[1::2] = [_ESCAPES.get(e) or e if len(e) == 1 else chr(int(e[1:], 16)) for e in escapes]
    return "".join(parts)


def _fix_surrogates(text: str) -> str:
    """Json.NET pairs a high surrogate escape with the low one right after it and reads any
    other as U+FFFD."""
    if _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


class JsonReaderError(Exception):
    """A JsonReaderException (or another exception the reader let through)."""


def is_net_whitespace(c: str) -> bool:
    return _NET_WS.match(c) is not None


def _letter_or_digit(c: str) -> bool:
    return unicodedata.category(c)[0] == "L" or unicodedata.category(c) == "Nd"


def _identifier_end(text: str, i: int) -> int:
    """Past the run of char.IsLetterOrDigit, '_' and '$' at i (i itself is one), in bulk:
    Python's \\w also takes No/Nl numerics that .NET does not, so runs are checked in
    chunks (C-level str methods) and only a failing chunk is walked character by character."""
    end = _WORD_RUN.match(text, i).end()  # type: ignore[union-attr]
    at = i
    while at < end:
        chunk = text[at : min(end, at + 4096)]
        if chunk.isascii() or _DECIMAL.sub("", chunk).translate(_DROP_ID).isalpha():
            at += len(chunk)
            continue
        for offset, c in enumerate(chunk):
            if not (_letter_or_digit(c) or c in "_$"):
                return at + offset
        at += len(chunk)  # (cannot happen: the chunk failed)
    return max(end, i + 1)


def _is_number(c: str) -> bool:
    return unicodedata.category(c) in ("Nd", "Nl", "No")


def net_int_parse(text: str, lo: int = INT32_MIN, hi: int = INT32_MAX) -> int | None:
    """int.TryParse(text, NumberStyles.Integer, InvariantCulture) (or long's with lo/hi)."""
    m = _ASCII_INT.match(text)
    if m is None:
        return None
    digits = m[2].lstrip("0") or "0"
    if len(digits) > 20:
        return None
    value = int(digits) * (-1 if m[1] == "-" else 1)
    return value if lo <= value <= hi else None


def net_double_text(d: float) -> str:
    """.NET Framework double.ToString(null, InvariantCulture): "G", 15 significant digits."""
    if math.isnan(d):
        return "NaN"
    if math.isinf(d):
        return "Infinity" if d > 0 else "-Infinity"
    if d == 0:
        return "0"
    mantissa, exp_text = f"{d:.14e}".split("e")
    exp = int(exp_text)
    sign = "-" if mantissa.startswith("-") else ""
    digits = mantissa.lstrip("-").replace(".", "").rstrip("0") or "0"
    if exp >= 15 or exp < -4:
        body = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{body}E{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if exp < 0:
        return f"{sign}0.{'0' * (-exp - 1)}{digits}"
    if len(digits) <= exp + 1:
        return sign + digits + "0" * (exp + 1 - len(digits))
    return f"{sign}{digits[: exp + 1]}.{digits[exp + 1 :]}"


def _net_double_parse(text: str) -> float | None:
    """double.TryParse(text, Float | AllowThousands, InvariantCulture) on .NET Framework,
    for the characters a number literal can hold (no whitespace, no ',')."""
    if not re.fullmatch(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", text):
        return None
    value = float(text)
    if math.isinf(value):
        return None  # .NET Framework: overflow is a failure
    return value


def _convert_base(text: str, base: int, bits: int) -> int:
    """Convert.ToInt32/ToInt64(text, 8 or 16): a '0x' prefix for 16; unsigned bits wrap."""
    digits = text[2:] if base == 16 and text[:2].lower() == "0x" else text
    valid = "0123456789abcdefABCDEF" if base == 16 else "01234567"
    if not digits or any(c not in valid for c in digits):
        raise JsonReaderError("is not a valid integer")
    value = int(digits.lstrip("0") or "0", base) if len(digits) <= 40 else 1 << 200
    if value >= 1 << bits:
        raise JsonReaderError("is out of range")
    return value - (1 << bits) if value >= 1 << (bits - 1) else value


def _int64_try_parse(text: str) -> tuple[str, int]:
    """ConvertUtils.Int64TryParse: ('ok', value), ('overflow', 0) or ('invalid', 0)."""
    body = text[1:] if text.startswith("-") else text
    if not body or not body.isascii() or not body.isdigit():
        return "invalid", 0
    stripped = body.lstrip("0")
    if len(stripped) > 19:
        return "overflow", 0
    value = int(stripped or "0") * (-1 if text.startswith("-") else 1)
    if not INT64_MIN <= value <= INT64_MAX:
        return "overflow", 0
    return "ok", value


# -- dates (DateTimeUtils.TryParseDateTime, DateTimeParser) -----------------------------
class NetDate:
    """A .NET DateTime: ticks and kind ('Unspecified', 'Utc', 'Local' in Hong Kong)."""

    __slots__ = ("kind", "ticks")

    def __init__(self, ticks: int, kind: str) -> None:
        self.ticks = ticks
        self.kind = kind

    def __repr__(self) -> str:
        return f"NetDate({self.ticks}, {self.kind})"


def _date_ticks(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> int:
    days = date(y, mo, d).toordinal() - 1
    return ((days * 24 + h) * 60 + mi) * 60 * TICKS_PER_SECOND + s * TICKS_PER_SECOND


def _two(text: str, i: int) -> int | None:
    if i + 1 < len(text) and "0" <= text[i] <= "9" and "0" <= text[i + 1] <= "9":
        return int(text[i : i + 2])
    return None


def _iso(text: str) -> NetDate | None:  # noqa: C901 (DateTimeParser, step by step)
    """DateTimeParser.Parse and TryParseDateIso (DateParseHandling.DateTime, RoundtripKind)."""
    n = len(text)
    if not (n > 3 and all("0" <= c <= "9" for c in text[:4])):
        return None
    year = int(text[:4])
    month, day = _two(text, 5), _two(text, 8)
    if not (year >= 1 and text[4:5] == "-" and month and 1 <= month <= 12 and text[7:8] == "-"):
        return None
    if not (day and 1 <= day <= calendar.monthrange(year, month)[1] and text[10:11] == "T"):
        return None
    hour, minute, second = _two(text, 11), _two(text, 14), _two(text, 17)
    if hour is None or hour >= 24 or text[13:14] != ":" or minute is None or minute >= 60:
        return None
    if text[16:17] != ":" or second is None or second >= 60:
        return None
    start = 19
    fraction = 0
    if text[start : start + 1] == ".":
        count = 0
        start += 1
        while start < n and count < 7 and "0" <= text[start] <= "9":
            fraction = fraction * 10 + int(text[start])
            count += 1
            start += 1
        if count == 0:
            return None
        fraction *= 10 ** (7 - count)
    zone, zone_hour, zone_minute = "none", 0, 0
    if start < n:
        ch = text[start]
        if ch in "Zz":
            zone = "utc"
            start += 1
        else:
            zh = _two(text, start + 1) if start + 2 < n else None
            if zh is not None:
                if ch == "-":
                    zone, zone_hour, start = "west", zh, start + 3
                elif ch == "+":
                    zone, zone_hour, start = "east", zh, start + 3
            if start < n:
                if text[start] == ":":
                    start += 1
                    zm = _two(text, start) if start + 1 < n else None
                    if zm is not None:
                        zone_minute, start = zm, start + 2
                else:
                    zm = _two(text, start) if start + 1 < n else None
                    if zm is not None:
                        zone_minute, start = zm, start + 2
    if start != n:
        return None
    ticks = _date_ticks(year, month, day, hour, minute, second) + fraction
    if zone == "utc":
        return NetDate(ticks, "Utc")
    offset = (zone_hour * 60 + zone_minute) * 60 * TICKS_PER_SECOND
    if zone == "west":
        return local_date(ticks + offset)
    if zone == "east":
        return local_date(ticks - offset)
    return NetDate(ticks, "Unspecified")


def local_date(utc_ticks: int) -> NetDate:
    """`ToLocalTime()` in Hong Kong, which stops at DateTime's ends: the UTC instant of the
    Local value it yields."""
    return NetDate(max(0, min(utc_ticks, MAX_TICKS - HONG_KONG_TICKS)), "Local")


def _ms_date(text: str) -> NetDate | None:
    """TryParseDateMicrosoft: '/Date(ms[+-hhmm])/'. Raises where the original throws."""
    value = text[6:-2]
    index = value.find("+", 1)
    if index == -1:
        index = value.find("-", 1)
    kind = "Utc"
    if index != -1:
        kind = "Local"
        offset_text = value[index:]
        if len(offset_text) < 3 or net_int_parse(offset_text[1:3]) is None:
            raise JsonReaderError("bad /Date()/ offset")  # int.Parse / Substring throw
        if len(offset_text) >= 5 and net_int_parse(offset_text[3:5]) is None:
            raise JsonReaderError("bad /Date()/ offset")
        value = value[:index]
    ms = net_int_parse(value, INT64_MIN, INT64_MAX)
    if ms is None:
        return None
    ticks = ms * 10_000 + _EPOCH_TICKS
    if not 0 <= ticks <= MAX_TICKS:
        raise JsonReaderError("/Date()/ out of range")
    return local_date(ticks) if kind == "Local" else NetDate(ticks, kind)


def try_parse_datetime(text: str) -> NetDate | None:
    """DateTimeUtils.TryParseDateTime (no DateFormatString): ISO or /Date()/, else None."""
    if not text:
        return None
    if text[0] == "/":
        if text.startswith("/Date(") and text.endswith(")/"):
            return _ms_date(text)
        return None
    if 19 <= len(text) <= 40 and text[0].isdecimal() and text[10] == "T":
        return _iso(text)  # char.IsDigit: any decimal digit; _iso wants ASCII ones
    return None


# -- the reader -------------------------------------------------------------------------
class _Pos:
    __slots__ = ("index", "name", "type")

    def __init__(self, type_: int) -> None:
        self.type = type_
        self.index = -1
        self.name: str | None = None

    def copy(self) -> _Pos:
        p = _Pos(self.type)
        p.index, p.name = self.index, self.name
        return p


class JsonTextReader:
    def __init__(self, text: str, max_depth: int = MAX_DEPTH) -> None:
        self.text = text
        self.n = len(text)
        self.pos = 0
        self.state = S_START
        self.token = NONE
        self.value: Any = None
        self.stack: list[_Pos] = []
        self.cur = _Pos(C_NONE)
        self.read_type = R_READ
        self.max_depth = max_depth
        self.exceeded = False
        self.steps = 0
        self.date_text = ""  # the last string read: what a Date token was read from
        self.replaced_surrogate = False  # a lone surrogate escape read as U+FFFD

    # -- JsonReader ----------------------------------------------------------------------
    @property
    def depth(self) -> int:
        d = len(self.stack)
        if self.token in _START or self.cur.type == C_NONE:
            return d
        return d + 1

    @property
    def path(self) -> str:
        if self.cur.type == C_NONE:
            return ""
        inside = self.state not in (S_ARRAY_START, S_CONSTRUCTOR_START, S_OBJECT_START)
        positions = [*self.stack, self.cur] if inside else self.stack
        out: list[str] = []
        for p in positions:
            if p.type == C_OBJECT:
                if out:
                    out.append(".")
                out.append(p.name or "")
            elif p.type in (C_ARRAY, C_CONSTRUCTOR):
                out.append(f"[{p.index}]")
        return "".join(out)

    def position_at(self, depth: int) -> int:
        return self.stack[depth].index if depth < len(self.stack) else self.cur.index

    def _push(self, type_: int) -> None:
        self._update_index()
        if self.cur.type == C_NONE:
            self.cur = _Pos(type_)
        else:
            self.stack.append(self.cur)
            self.cur = _Pos(type_)
            if self.depth + 1 > self.max_depth and not self.exceeded:
                self.exceeded = True
                raise JsonReaderError("The JSON is nested deeper than the reader allows")

    def _pop(self) -> int:
        old = self.cur
        self.cur = self.stack.pop() if self.stack else _Pos(C_NONE)
        if self.depth <= self.max_depth:
            self.exceeded = False
        return old.type

    def _update_index(self) -> None:
        if self.cur.type in (C_ARRAY, C_CONSTRUCTOR):
            self.cur.index += 1

    def set_token(self, token: int, value: Any = None, update_index: bool = True) -> None:
        self.token = token
        self.value = value
        if token == START_OBJECT:
            self.state = S_OBJECT_START
            self._push(C_OBJECT)
        elif token == START_ARRAY:
            self.state = S_ARRAY_START
            self._push(C_ARRAY)
        elif token == START_CONSTRUCTOR:
            self.state = S_CONSTRUCTOR_START
            self._push(C_CONSTRUCTOR)
        elif token in (END_OBJECT, END_ARRAY, END_CONSTRUCTOR):
            self._validate_end(token)
        elif token == PROPERTY_NAME:
            self.state = S_PROPERTY
            self.cur.name = value
        elif token in _PRIMITIVE:
            self._post_value(update_index)

    def _post_value(self, update_index: bool) -> None:
        self.state = S_POST_VALUE if self.cur.type != C_NONE else S_FINISHED
        if update_index:
            self._update_index()

    def _validate_end(self, token: int) -> None:
        closed = self._pop()
        want = {END_OBJECT: C_OBJECT, END_ARRAY: C_ARRAY, END_CONSTRUCTOR: C_CONSTRUCTOR}[token]
        if closed != want:
            raise JsonReaderError("A closing bracket does not match its opening one")
        self.state = S_POST_VALUE if self.cur.type != C_NONE else S_FINISHED

    def _state_from_current(self) -> None:
        t = self.cur.type
        self.state = {C_OBJECT: S_OBJECT, C_ARRAY: S_ARRAY, C_CONSTRUCTOR: S_CONSTRUCTOR}.get(
            t, S_FINISHED
        )

    def skip(self) -> None:
        if self.token == PROPERTY_NAME:
            self.read()
        if self.token in _START:
            depth = self.depth
            while self.read() and depth < self.depth:
                pass

    # -- typed reads (JsonReader.ReadAs*Internal) ------------------------------------------
    def read(self) -> bool:
        self.read_type = R_READ
        if not self._read_internal():
            self.set_token(NONE)
            return False
        return True

    def _read_skipping_comments(self) -> bool:
        while True:
            if not self._read_internal():
                self.set_token(NONE)
                return False
            if self.token != COMMENT:
                return True

    def read_as_int32(self) -> None:
        self.read_type = R_INT32
        if not self._read_skipping_comments():
            return
        t = self.token
        if t in (INTEGER, FLOAT):
            if not (isinstance(self.value, int) and INT32_MIN <= self.value <= INT32_MAX):
                v = self.value
                if isinstance(v, float) and not math.isnan(v) and not math.isinf(v):
                    r = round(v)  # Convert.ToInt32(double): banker's rounding
                    if INT32_MIN <= r <= INT32_MAX:
                        self.set_token(INTEGER, r, False)
                        return
                raise JsonReaderError("The number is outside the Int32 range")
            return
        if t == NULL:
            return
        if t == STRING:
            s = self.value
            if not s:
                self.set_token(NULL)
                return
            i = net_int_parse(s)
            if i is None:
                raise JsonReaderError(f"Expected a whole number (Int32) but got {quote_number(s)}")
            self.set_token(INTEGER, i, False)
            return
        if t == END_ARRAY:
            return
        raise JsonReaderError(f"Expected a whole number (Int32) but got {describe(t)}")

    def read_as_string(self) -> None:
        self.read_type = R_STRING
        if not self._read_skipping_comments():
            return
        t = self.token
        if t in (STRING, NULL):
            return
        if t in _PRIMITIVE and self.value is not None:
            v = self.value
            if isinstance(v, bool):
                s = "True" if v else "False"
            elif isinstance(v, float):
                s = net_double_text(v)
            else:
                s = str(v)
            self.set_token(STRING, s, False)
            return
        if t == END_ARRAY:
            return
        raise JsonReaderError(f"Expected a string but got {describe(t)}")

    def read_as_datetime(self, fallback: Any) -> None:
        """`fallback(text)` is .NET DateTime.TryParse: a NetDate-like value or None."""
        self.read_type = R_DATETIME
        if not self._read_skipping_comments():
            return
        t = self.token
        if t in (DATE, NULL):
            return
        if t == STRING:
            s = self.value
            if not s:
                self.set_token(NULL)
                return
            parsed = try_parse_datetime(s)
            if parsed is None:
                parsed = fallback(s)
            if parsed is None:
                raise JsonReaderError(f"{quote_date(s)} is not a valid date")
            self.set_token(DATE, parsed, False)
            return
        if t == END_ARRAY:
            return
        raise JsonReaderError(f"Expected a date string but got {describe(t)}")

    # -- JsonTextReader -------------------------------------------------------------------
    def _skip_blank(self) -> None:
        m = _SKIP.match(self.text, self.pos)
        if m:
            self.pos = m.end()

    def _read_internal(self) -> bool:
        self.steps += 1
        while True:
            st = self.state
            if st in (
                S_START,
                S_PROPERTY,
                S_ARRAY,
                S_ARRAY_START,
                S_CONSTRUCTOR,
                S_CONSTRUCTOR_START,
            ):
                return self._parse_value()
            if st in (S_OBJECT, S_OBJECT_START):
                return self._parse_object()
            if st == S_POST_VALUE:
                if self._parse_post_value():
                    return True
                continue
            if st == S_FINISHED:
                self._skip_blank()
                if self.pos >= self.n:
                    return False
                if self.text[self.pos] == "/":
                    self._parse_comment()
                    return True
                raise JsonReaderError("Additional text after the JSON content")
            raise JsonReaderError("Unexpected reader state")

    def _parse_post_value(self) -> bool:
        while True:
            self._skip_blank()
            if self.pos >= self.n:
                self.state = S_FINISHED
                return False
            c = self.text[self.pos]
            if c == "}":
                self.pos += 1
                self.set_token(END_OBJECT)
                return True
            if c == "]":
                self.pos += 1
                self.set_token(END_ARRAY)
                return True
            if c == ")":
                self.pos += 1
                self.set_token(END_CONSTRUCTOR)
                return True
            if c == "/":
                self._parse_comment()
                return True
            if c == ",":
                self.pos += 1
                self._state_from_current()
                return False
            raise JsonReaderError("An unexpected character follows a value")

    def _parse_object(self) -> bool:
        self._skip_blank()
        if self.pos >= self.n:
            return False
        c = self.text[self.pos]
        if c == "}":
            self.set_token(END_OBJECT)
            self.pos += 1
            return True
        if c == "/":
            self._parse_comment()
            return True
        return self._parse_property()

    def _parse_property(self) -> bool:
        c = self.text[self.pos]
        if c in "\"'":
            self.pos += 1
            name = self._read_string(c)
        elif _letter_or_digit(c) or c in "_$":
            name = self._parse_unquoted_property()
        else:
            raise JsonReaderError("A property name is not valid here")
        self._skip_blank()
        if self.pos >= self.n or self.text[self.pos] != ":":
            raise JsonReaderError("Expected ':' after a property name")
        self.pos += 1
        self.set_token(PROPERTY_NAME, name)
        return True

    def _parse_unquoted_property(self) -> str:
        start = self.pos
        text, n = self.text, self.n
        i = start
        while True:
            if i >= n:
                self.pos = i
                raise JsonReaderError("The body ends inside a property name")
            c = text[i]
            if c == "\x00":
                self.pos = i
                return text[start:i]
            if _letter_or_digit(c) or c in "_$":
                i = _identifier_end(text, i)
                continue
            if is_net_whitespace(c) or c == ":":
                self.pos = i
                return text[start:i]
            self.pos = i
            raise JsonReaderError("A property name holds a character that is not allowed")

    def _read_string(self, quote: str) -> str:
        """ReadStringIntoBuffer: self.pos is just past the opening quote. The escapes are
        decoded in bulk (C speed); at the first one that is not plain the exact,
        escape-by-escape reader takes over from there."""
        text, n, start = self.text, self.n, self.pos
        end = _STRING_BODY[quote].match(text, start).end()  # type: ignore[union-attr]
        closed = end < n and text[end] == quote
        segment = text[start:end] if closed else text[start:]
        if "\\" not in segment:
            if not closed:
                self.pos = n
                raise JsonReaderError("Unterminated string")
            self.pos = end + 1
            return segment
        # escape-aligned chunks (never more than _CHUNK characters split at once)
        decoded: list[str] = []
        size, at, parts = len(segment), 0, [""]
        while at < size:
            run_end = _VALID_RUN.match(segment, at, min(at + _CHUNK, size)).end()  # type: ignore[union-attr]
            if run_end == at:  # an escape the bulk path does not know: read it exactly
                head = "".join(decoded)
                return self._fixed(self._read_string_exact(quote, start + at, [head]))
            parts = _ESCAPE_SPLIT.split(segment[at:run_end])
            try:
                decoded.append(_decode_escapes(parts))
            except ValueError:  # "\u4 1 ": the exact reader fails where .NET does
                head = "".join(decoded)
                return self._fixed(self._read_string_exact(quote, start + at, [head]))
            at = run_end
        if not closed:
            # a \uXXXX right at the end: ParseUnicode wants one character more
            at_end = len(parts) > 1 and parts[-1] == "" and parts[-2][:1] == "u"
            self.pos = n - 4 if at_end else n
            raise JsonReaderError("Unterminated string")
        self.pos = end + 1
        return self._fixed("".join(decoded))

    def _fixed(self, text: str) -> str:
        fixed = _fix_surrogates(text)
        if fixed is not text:
            self.replaced_surrogate = True
        return fixed

    def _read_string_exact(self, quote: str, i: int, parts: list[str]) -> str:
        text, n = self.text, self.n
        finder = _STRING_END[quote]
        while True:
            m = finder.search(text, i)
            if m is None:
                self.pos = n
                raise JsonReaderError("Unterminated string")
            j = m.start()
            parts.append(text[i:j])
            if text[j] == quote:
                self.pos = j + 1
                return "".join(parts)
            # backslash
            if j + 1 >= n:
                self.pos = j + 1
                raise JsonReaderError("Unterminated string")
            e = text[j + 1]
            if e in _ESCAPES:
                parts.append(_ESCAPES[e])
                i = j + 2
            elif e in "\"'/":
                parts.append(e)
                i = j + 2
            elif e == "u":
                self.pos = j + 2
                unit = self._parse_unicode()
                if 0xDC00 <= unit <= 0xDFFF:
                    parts.append("\ufffd")
                elif 0xD800 <= unit <= 0xDBFF:
                    while True:
                        p = self.pos
                        if p + 2 < n and text[p] == "\\" and text[p + 1] == "u":
                            self.pos = p + 2
                            low = self._parse_unicode()
                            if 0xDC00 <= low <= 0xDFFF:
                                parts.append(
                                    chr(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))
                                )
                                break
                            parts.append("\ufffd")
                            if 0xD800 <= low <= 0xDBFF:
                                unit = low
                                continue
                            parts.append(chr(low))
                            break
                        parts.append("\ufffd")
                        break
                else:
                    parts.append(chr(unit))
                i = self.pos
            else:
                self.pos = j + 2
                raise JsonReaderError("Bad JSON escape sequence")

    def _parse_unicode(self) -> int:
        p = self.pos
        if p + 4 >= self.n:
            raise JsonReaderError("The body ends inside a \\u escape")
        hex4 = self.text[p : p + 4]
        stripped = hex4.strip("\t\n\x0b\x0c\r ")
        if not stripped or not all(c in "0123456789abcdefABCDEF" for c in stripped):
            raise JsonReaderError("A \\u escape is not hexadecimal")  # FormatException
        if stripped != hex4.lstrip("\t\n\x0b\x0c\r ").rstrip("\t\n\x0b\x0c\r "):
            raise JsonReaderError("A \\u escape is not hexadecimal")
        self.pos = p + 4
        return int(stripped, 16)

    def _parse_string(self, quote: str) -> None:
        self.pos += 1
        text = self._read_string(quote)
        self.date_text = text
        self._post_value(True)
        if self.read_type in (R_STRING, R_INT32):
            self.set_token(STRING, text, False)
            return
        parsed = try_parse_datetime(text)  # DateParseHandling.DateTime (the default)
        if parsed is not None:
            self.set_token(DATE, parsed, False)
            return
        self.set_token(STRING, text, False)

    def _parse_value(self) -> bool:  # noqa: C901 (ParseValue's switch, as it is)
        text = self.text
        while True:
            self._skip_blank()
            if self.pos >= self.n:
                return False
            c = text[self.pos]
            if c in "\"'":
                self._parse_string(c)
                return True
            if c == "t":
                self._match_keyword("true", BOOLEAN, True)
                return True
            if c == "f":
                self._match_keyword("false", BOOLEAN, False)
                return True
            if c == "n":
                if self.pos + 1 < self.n:
                    nxt = text[self.pos + 1]
                    if nxt == "u":
                        self._match_keyword("null", NULL, None)
                    elif nxt == "e":
                        self._parse_constructor()
                    else:
                        raise JsonReaderError("Unexpected character while parsing a value")
                else:
                    raise JsonReaderError("Unexpected end")
                return True
            if c == "N":
                self._match_keyword("NaN", FLOAT, math.nan)
                return True
            if c == "I":
                self._match_keyword("Infinity", FLOAT, math.inf)
                return True
            if c == "-":
                if self.pos + 1 < self.n and text[self.pos + 1] == "I":
                    self._match_keyword("-Infinity", FLOAT, -math.inf)
                else:
                    self._parse_number()
                return True
            if c == "/":
                self._parse_comment()
                return True
            if c == "u":
                self._match_keyword("undefined", UNDEFINED, None)
                return True
            if c == "{":
                self.pos += 1
                self.set_token(START_OBJECT)
                return True
            if c == "[":
                self.pos += 1
                self.set_token(START_ARRAY)
                return True
            if c == "]":
                self.pos += 1
                self.set_token(END_ARRAY)
                return True
            if c == ",":
                self.set_token(UNDEFINED)
                return True
            if c == ")":
                self.pos += 1
                self.set_token(END_CONSTRUCTOR)
                return True
            if _is_number(c) or c == ".":
                self._parse_number()
                return True
            raise JsonReaderError("Unexpected character while parsing a value")

    def _is_separator(self, c: str) -> bool:
        if c in "}],":
            return True
        if c == "/":
            return self.pos + 1 < self.n and self.text[self.pos + 1] in "*/"
        if c == ")":
            return self.state in (S_CONSTRUCTOR, S_CONSTRUCTOR_START)
        return is_net_whitespace(c)

    def _match_keyword(self, word: str, token: int, value: Any) -> None:
        # MatchValue needs the word plus nothing (EnsureChars(len-1)); then a separator
        text = self.text
        if text.startswith(word, self.pos):
            self.pos += len(word)
            if self.pos >= self.n or text[self.pos] == "\x00" or self._is_separator(text[self.pos]):
                self.set_token(token, value)
                return
        raise JsonReaderError("A literal is not valid here")

    def _parse_constructor(self) -> None:
        text = self.text
        if not text.startswith("new", self.pos):
            raise JsonReaderError("Unexpected content")
        self.pos += 3
        if not (
            self.pos >= self.n or text[self.pos] == "\x00" or self._is_separator(text[self.pos])
        ):
            raise JsonReaderError("Unexpected content")
        self._skip_blank()
        start = self.pos
        while True:
            if self.pos >= self.n:
                raise JsonReaderError("The body ends inside a constructor")
            c = text[self.pos]
            if c == "\x00":
                end = self.pos
                self.pos += 1
                break
            if _letter_or_digit(c):
                self.pos += 1
                continue
            if is_net_whitespace(c):
                end = self.pos
                self.pos += 1
                break
            if c == "(":
                end = self.pos
                break
            raise JsonReaderError("Unexpected character in a constructor")
        name = text[start:end]
        self._skip_blank()
        if self.pos >= self.n or text[self.pos] != "(":
            raise JsonReaderError("Unexpected character in a constructor")
        self.pos += 1
        self.set_token(START_CONSTRUCTOR, name)

    def _parse_number(self) -> None:  # noqa: C901 (ParseNumber, as it is)
        text = self.text
        first = text[self.pos]
        start = self.pos
        m = _NUMBER_CHARS.match(text, start)
        end = m.end() if m else start
        self.pos = end
        if end == start:  # a digit char.IsNumber knows but the number reader does not
            raise JsonReaderError("Unexpected character while parsing a number")
        if end < self.n:
            c = text[end]
            if not (c == "\x00" or is_net_whitespace(c) or c in ",}])/"):
                raise JsonReaderError("Unexpected character while parsing a number")
        self._post_value(True)
        number = text[start:end]
        single = len(number) == 1 and "0" <= first <= "9"
        non_base10 = first == "0" and len(number) > 1 and number[1] not in ".eE"
        if self.read_type == R_INT32:
            if single:
                value: Any = int(first)
            elif non_base10:
                base = 16 if number[:2].lower() == "0x" else 8
                value = _convert_base(number, base, 32)
            else:
                status, v = _int64_try_parse(number)
                if status == "invalid":
                    raise JsonReaderError(f"{quote_number(number)} is not a whole number (Int32)")
                if status != "ok" or not INT32_MIN <= v <= INT32_MAX:
                    raise JsonReaderError(f"{quote_number(number)} is outside the Int32 range")
                value = v
            self.set_token(INTEGER, value, False)
            return
        if single:
            self.set_token(INTEGER, int(first), False)
            return
        if non_base10:
            base = 16 if number[:2].lower() == "0x" else 8
            try:
                value = _convert_base(number, base, 64)
            except JsonReaderError:
                raise JsonReaderError("The number is not valid") from None
            self.set_token(INTEGER, value, False)
            return
        status, v = _int64_try_parse(number)
        if status == "ok":
            self.set_token(INTEGER, v, False)
            return
        if status == "overflow":
            if len(number) > 380:
                raise JsonReaderError("The integer is too large to parse")
            self.set_token(INTEGER, BigIntText(number), False)
            return
        d = _net_double_parse(number)
        if d is None:
            raise JsonReaderError("The number is not valid")
        self.set_token(FLOAT, d, False)

    def _parse_comment(self) -> None:
        text = self.text
        self.pos += 1
        if self.pos + 1 >= self.n:  # EnsureChars(1): the marker and one character more
            raise JsonReaderError("The body ends inside a comment")
        c = text[self.pos]
        if c == "*":
            end = text.find("*/", self.pos + 1)
            if end == -1:
                self.pos = self.n
                raise JsonReaderError("The body ends inside a comment")
            self.pos = end + 2
        elif c == "/":
            m = _LINE_END.search(text, self.pos + 1)
            if m is None:
                self.pos = self.n
            else:
                self.pos = m.start() + 1
                if text[m.start()] == "\r" and text[self.pos : self.pos + 1] == "\n":
                    self.pos += 1
        else:
            raise JsonReaderError("A comment must start with /* or //")
        self.set_token(COMMENT, None)


class BigIntText(str):
    """An integer literal beyond Int64 (a BigInteger): as a string it is its digits."""

    def __new__(cls, text: str) -> BigIntText:
        sign = "-" if text.startswith("-") else ""
        return super().__new__(cls, sign + (text.lstrip("-").lstrip("0") or "0"))
