"""Request bodies for the differential test against the reference server (issue 13).

Every generator is a function of a `random.Random`: the same seed gives the same bodies, in
any process, so a failing run is replayed with `QCARE_REFERENCE_SEED`. `strategy(fmt)` wraps
them for hypothesis (`st.randoms()` feeds the same functions).

A generated body is a `Case`: the bytes, the Content-Type header (None: no header) and the
`focus`, the region of the input space it was aimed at (`json.int`, `xml.nil`, `ct.charset`,
...). The focus names a divergence class, so a body keeps the rest of itself plain: one
focus per body, small, and a few `*.mixed` bodies with everything at once.

What is aimed at: values of every type into string, int and date members; Json.NET's lenient
syntax and reference metadata; XmlSerializer's element order, repetition, nil, types,
namespaces and prologue; MVC and jQuery form keys; Content-Type media types, parameters,
charsets and BOMs. Most bodies stay far inside the hardening limits (`qcare_ingest.limits`),
a few sit on or just past them.
"""

from __future__ import annotations

import codecs
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from qcare_ingest.binding import form as form_binding
from qcare_ingest.limits import DTO_LIMITS, MAX_SERVICE_LINES, SERVICE_LIMITS

FORMATS = ("json", "xml", "form", "ct")


@dataclass(frozen=True)
class Case:
    body: bytes
    content_type: str | None
    focus: str


Gen = Callable[[random.Random], Case]

# C# member names (XML, form) and the JSON sample's (camelCase resolver)
STRING_FIELDS = [
    "msg_id", "name", "hkid", "passno", "gender", "dob", "studyTime", "location", "chitno",
    "plan_type", "ref_doctor", "ref_clinic_fullname", "csCode", "modality", "Address",
    "accessionNo", "refClinicFullname", "examClinicFullName",
]  # fmt: skip
JSON_NAMES = {"Address": "address"}
SERVICE_STRINGS = ["studyDesc", "bodypart"]
SERVICE_INTS = ["NoOfImages", "WarningTime"]
JSON_SERVICE_NAMES = {"NoOfImages": "noOfImages", "WarningTime": "warningTime"}


def _pick(rng: random.Random, items: list[Any] | tuple[Any, ...]) -> Any:
    return items[rng.randrange(len(items))]


def _case_variant(rng: random.Random, name: str) -> str:
    r = rng.random()
    if r < 0.55:
        return name
    if r < 0.7:
        return name.lower()
    if r < 0.8:
        return name.upper()
    if r < 0.9:
        return name[:1].swapcase() + name[1:]
    return "".join(c.swapcase() if rng.random() < 0.5 else c for c in name)


# ---------------------------------------------------------------------------------------
# values

PLAIN_TEXT = ["CHAN TAI MAN", "A123456(3)", "M", "CHEST PA", "x", "1 Main St", "sample string 1"]
UNICODE_TEXT = ["陳大文", "Zoë", "𝔘nicode", "\u00a0nbsp\u00a0", "tab\there", "line\nbreak", "é"]
INT_TEXTS = [
    "0", "1", "-1", "+5", " 5 ", "05", "007", "2147483647", "2147483648", "-2147483648",
    "-2147483649", "99999999999", "123456789012345678", "1234567890123456789", "1.0", "7.0",
    "1e3", "0x10", "0X1F", "", " ", "abc", "1_000", "1,000", "٣", "１２", "\u0663\u0664", "5 ",
    "\t7", "+-1", "--1", "1-", "true", "null", "(5)", "5.", ".5", "1e0",
]  # fmt: skip
DATE_TEXTS = [
    # ISO variants
    "2025-10-26T15:51:31.8166249+08:00", "2025-10-26T15:51:31+08:00", "2025-10-26T15:51:31Z",
    "2025-10-26T15:51:31", "2025-10-26T15:51", "2025-10-26", "2025-10-26T15:51:31.9999999Z",
    "2025-10-26T15:51:31.81662491+08:00", "2025-10-26T15:51:31.1Z", "2025-10-26T15:51:31.000",
    "2025-10-26t15:51:31z", "2025-10-26T15:51:31+08", "2025-10-26T15:51:31+0800",
    "2025-10-26T15:51:31-03:30", "2025-10-26T15:51:31+14:00", "2025-10-26T15:51:31+23:59",
    "2025-10-26T24:00:00", "2025-10-26 15:51:31", "2025-10-26 15:51:31Z", " 2025-10-26 ",
    "2025-10-26T15:51:31 +08:00", "0001-01-01T00:00:00", "9999-12-31T23:59:59.9999999",
    "2024-02-29", "2025-02-29", "2025-13-01", "2025-10-32", "2025-10-26T25:00:00",
    # .NET DateTime.Parse shapes
    "2025-1-6", "2025/10/26", "2025/1/6 7:05", "10/26/2025", "10/26/2025 15:51:31",
    "26/10/2025", "Oct 26 2025", "26 Oct 2025", "October 26, 2025", "Sun, 26 Oct 2025 07:51:31 GMT",
    "Sunday, 26 October 2025", "2025-10-26T15:51:31.8166249+08:00 ", "20251026", "2025-10",
    "2025", "15:51", "3:51 PM", "2025-10-26 3:51:31 PM", "2025-10-26T15:51:31.816624912Z",
    "Oct 26", "26 Oct", "10/26", "3 PM", "025-10-26", "2025-10-26.", "2025-10/26", "26-Oct-2025",
    "Oct 2025", "10/26/25", "2025-10-26 T15:51", "Sun, 26 Oct 2025 10:00:00 GMT",
    # Microsoft JSON shapes
    "/Date(1761465091816)/", "/Date(1761465091816+0800)/", "/Date(-62135596800000)/",
    "/Date( 1761465091816)/", "\\/Date(1761465091816)\\/", "/Date(1761465091816-0500)/",
    "/Date(99999999999999999)/",
    # invalid
    "", " ", "now", "yesterday", "2025-10-26T", "T15:51", "٢٠٢٥-١٠-٢٦", "2025-10-26Z",
]  # fmt: skip


MONTHS = "January February March April May June July August September October November December"
DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday"


def _date_part(rng: random.Random) -> str:
    y, mo, d = rng.choice([2025, 2024, 1999, 2000, 1, 9999, 1930, 2029]), rng.randint(1, 12), 0
    d = rng.choice([1, 9, 10, 26, 28, 29, 30, 31, rng.randint(1, 31)])
    year = _pick(rng, [f"{y:04}", f"{y:04}", f"{y % 100:02}", str(y % 1000)])
    month_num = _pick(rng, [f"{mo:02}", str(mo)])
    name = MONTHS.split()[mo - 1]
    month_name = _case_variant(rng, _pick(rng, [name, name[:3], name[:3] + "."]))
    day = _pick(rng, [f"{d:02}", str(d)])
    sep = _pick(rng, ["-", "/", ".", " ", "-", "/"])
    shape = rng.randrange(8)
    if shape == 0:
        return f"{year}{sep}{month_num}{sep}{day}"
    if shape == 1:
        return f"{month_num}{sep}{day}{sep}{year}"
    if shape == 2:
        return f"{day}{sep}{month_num}{sep}{year}"
    if shape == 3:
        return f"{month_name} {day}{_pick(rng, [',', '', ', '])} {year}"
    if shape == 4:
        return f"{day}{_pick(rng, [' ', '-'])}{month_name}{_pick(rng, [' ', '-'])}{year}"
    if shape == 5:
        return f"{year}{sep}{month_name}{sep}{day}"
    if shape == 6:
        return f"{year}{sep}{month_num}"
    return f"{month_name} {year}"


def _time_part(rng: random.Random) -> str:
    h, mi, sec = rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59)
    hour = _pick(rng, [f"{h:02}", str(h), str(h % 12 or 12)])
    text = f"{hour}:{mi:02}" if rng.random() < 0.8 else f"{hour}:{mi}"
    if rng.random() < 0.7:
        text += f":{sec:02}"
        if rng.random() < 0.4:
            text += "." + "".join(str(rng.randrange(10)) for _ in range(rng.randint(1, 9)))
    if rng.random() < 0.25:
        text += _pick(rng, [" AM", " PM", "AM", "pm", " a.m."])
    return text


def _zone_part(rng: random.Random) -> str:
    return _pick(rng, [
        "Z", "z", " GMT", " UTC", "+8", "+08", "+0800", "+08:00", "-05:30", " +08:00", "+14:00",
        "+14:01", "-12:00", "+5:30", "+08:0", " Z", "GMT+8", " EST",
    ])  # fmt: skip


def random_date_text(rng: random.Random) -> str:
    """A date as a person or a library might write it: .NET's DateTime.Parse (Json.NET's
    last resort, form binding) and XmlConvert read some of these, each its own way."""
    text = _date_part(rng)
    if rng.random() < 0.6:
        text += _pick(rng, ["T", " ", "T", "  ", ", ", "t"]) + _time_part(rng)
        if rng.random() < 0.4:
            text += _zone_part(rng)
    if rng.random() < 0.1:
        day = DAYS.split()[rng.randrange(7)]
        text = f"{_pick(rng, [day, day[:3]])}, {text}"
    if rng.random() < 0.1:
        text = _pick(rng, [" ", "\t", "\u00a0"]) + text + _pick(rng, ["", " ", "\n"])
    return text


def date_text(rng: random.Random) -> str:
    return random_date_text(rng) if rng.random() < 0.5 else _pick(rng, DATE_TEXTS)


def _limit_text(rng: random.Random, chars: int) -> str:
    n = _pick(rng, [chars - 1, chars, chars + 1])
    if rng.random() < 0.5:
        return "x" * n
    return "陳" * n  # 3 bytes in UTF-8: over the byte limit for some fields


def string_value(rng: random.Random, field: str = "name") -> str:
    """A text for a string member: plain, unicode, control characters, at a limit."""
    r = rng.random()
    if r < 0.45:
        return _pick(rng, PLAIN_TEXT)
    if r < 0.65:
        return _pick(rng, UNICODE_TEXT)
    if r < 0.75:
        return _pick(rng, ["", " ", "  x  ", "\x01", "a\x00b", "\x7f", "\u2028", "\ufeff"])
    if r < 0.85:
        limit = DTO_LIMITS.get(field) or SERVICE_LIMITS.get(field) or DTO_LIMITS["name"]
        return _limit_text(rng, limit.chars)
    return "".join(chr(rng.randrange(32, 0x3000)) for _ in range(rng.randrange(1, 12)))


# ---------------------------------------------------------------------------------------
# JSON: a token emitter with Json.NET's lenient syntax


class _Json:
    def __init__(self, rng: random.Random, lenient: float = 0.0) -> None:
        self.rng = rng
        self.lenient = lenient  # probability of each non-standard construct

    def _maybe(self, p: float = 1.0) -> bool:
        return self.rng.random() < self.lenient * p

    def ws(self) -> str:
        if self._maybe(0.3):
            return _pick(self.rng, [" /* c */ ", "//c\n", "/**/", "\n\t", " // x\r\n"])
        return _pick(self.rng, ["", "", "", " ", "\n  "])

    def name(self, text: str) -> str:
        if self._maybe(0.5) and text.replace("$", "").replace("_", "").isalnum():
            return text  # unquoted
        if self._maybe(0.5):
            return "'" + text.replace("'", "\\'") + "'"
        return self.string(text, single=False)

    def string(self, text: str, single: bool | None = None) -> str:
        if single is None:
            single = self._maybe(0.3)
        out = []
        for ch in text:
            code = ord(ch)
            if ch == "\\":
                out.append("\\\\")
            elif ch == '"' and not single:
                out.append('\\"')
            elif ch == "'" and single:
                out.append("\\'")
            elif code < 0x20 or 0xD800 <= code <= 0xDFFF or self._maybe(0.05):
                out.append(f"\\u{code:04x}" if code < 0x10000 else ch)
            else:
                out.append(ch)
        quote_char = "'" if single else '"'
        return quote_char + "".join(out) + quote_char

    def obj(self, members: list[tuple[str, str]]) -> str:
        parts = [f"{self.ws()}{self.name(k)}{self.ws()}:{self.ws()}{v}" for k, v in members]
        trailing = "," if members and self._maybe(0.3) else ""
        return "{" + ",".join(parts) + trailing + self.ws() + "}"

    def arr(self, items: list[str]) -> str:
        trailing = "," if items and self._maybe(0.3) else ""
        return "[" + ",".join(self.ws() + i for i in items) + trailing + self.ws() + "]"


NUMBER_LITERALS = [
    "0", "1", "-1", "1.50", "1e5", "1E+2", "-0.0", "0.0", "-0", "1.0", "2147483647",
    "2147483648", "-2147483649", "9223372036854775807", "9223372036854775808",
    "123456789012345678", "1234567890123456789", "99999999999999999999999", "1e400", "1e-400",
    "3.14159265358979323846", "1.7976931348623157e308", "5e-324", "0.1", "100",
]  # fmt: skip
LENIENT_LITERALS = [
    "NaN", "Infinity", "-Infinity", "0x1F", "0X10", "010", "07", "08", "+1", ".5", "5.",
    "undefined", "new Date(0)", "True", "nul", "0x", "1e", "-", "0xFFFFFFFF",
]  # fmt: skip


def _json_any(j: _Json, depth: int = 0) -> str:
    """A value of any JSON type (and some lenient ones)."""
    rng = j.rng
    r = rng.random()
    if r < 0.25:
        return j.string(string_value(rng))
    if r < 0.45:
        return _pick(rng, NUMBER_LITERALS)
    if r < 0.55:
        return _pick(rng, ["true", "false", "null"])
    if r < 0.65:
        return _pick(rng, LENIENT_LITERALS)
    if r < 0.75 and depth < 3:
        return j.arr([_json_any(j, depth + 1) for _ in range(rng.randrange(3))])
    if r < 0.85 and depth < 3:
        keys = ["a", "$id", "$ref", "$type", "$values"]
        return j.obj([(_pick(rng, keys), _json_any(j, depth + 1)) for _ in range(rng.randrange(3))])
    return j.string(_pick(rng, INT_TEXTS + DATE_TEXTS[:10]))


def _json_int_value(j: _Json) -> str:
    rng = j.rng
    r = rng.random()
    if r < 0.35:
        return str(rng.choice([0, 1, 2, 30, -5, 2147483647, -2147483648, rng.randrange(1000)]))
    if r < 0.65:
        return j.string(_pick(rng, INT_TEXTS))
    return _json_any(j)


def _json_date_value(j: _Json) -> str:
    rng = j.rng
    if rng.random() < 0.8:
        return j.string(date_text(rng))
    return _json_any(j)


def _json_service(j: _Json, focus: str, ids: list[str]) -> str:
    rng = j.rng
    members: list[tuple[str, str]] = []
    if focus == "meta" and rng.random() < 0.5:
        new_id = str(len(ids) + 2)
        ids.append(new_id)
        members.append(("$id", j.string(new_id)))
    for name in SERVICE_STRINGS + SERVICE_INTS:
        if rng.random() < 0.35:
            continue
        jname = JSON_SERVICE_NAMES.get(name, name)
        if focus == "names":
            jname = _case_variant(rng, _pick(rng, [jname, name]))
        if name in SERVICE_INTS:
            value = _json_int_value(j) if focus in ("int", "mixed") else str(rng.randrange(5))
        elif focus in ("values", "mixed"):
            value = _json_any(j)
        else:
            value = j.string(string_value(rng, name) if focus == "limits" else "CHEST")
        members.append((jname, value))
    if focus == "meta" and rng.random() < 0.3:
        where = rng.randrange(len(members) + 1)
        members.insert(where, ("$type", j.string("QCare.ServicesInfo, X")))
    return j.obj(members)


def _json_meta_items(j: _Json, items: list[str], ids: list[str]) -> list[str]:
    """Some items replaced by `$ref`s (known, unknown, not a string, with other members)."""
    rng = j.rng
    out = list(items)
    for i in range(len(out)):
        if rng.random() < 0.4:
            target = _pick(rng, [*ids, "1", "99", "0", ""]) if ids else "1"
            ref = j.string(target) if rng.random() < 0.85 else _pick(rng, ["2", "null", "{}"])
            extra = [("studyDesc", j.string("x"))] if rng.random() < 0.2 else []
            first = [("$ref", ref), *extra]
            if rng.random() < 0.15:
                first = [("$id", j.string("7")), *first]
            out[i] = j.obj(first)
    if rng.random() < 0.3:
        out.append("null")
    return out


def _json_meta_list(j: _Json, items: list[str]) -> str:
    """The list itself: plain, or a `$values` wrapper with `$id`/`$type` before or after."""
    r = j.rng.random()
    values = ("$values", j.arr(items))
    if r < 0.25:
        return j.obj([("$id", j.string("50")), values])
    if r < 0.32:
        return j.obj([values])
    if r < 0.38:
        return j.obj([values, ("$id", j.string("51"))])
    if r < 0.42:
        return j.obj([("$id", j.string("52")), ("$values", "null")])
    if r < 0.45:
        return j.obj([("$type", j.string("System.Collections.Generic.List`1")), values])
    return j.arr(items)


def _json_services(j: _Json, focus: str, ids: list[str]) -> str:
    rng = j.rng
    count = rng.choice([0, 1, 1, 2, 3] if focus in ("meta", "mixed") else [0, 1, 1, 2])
    if focus == "limits" and rng.random() < 0.4:
        count = rng.choice([MAX_SERVICE_LINES, MAX_SERVICE_LINES + 1])
    items = [_json_service(j, focus, ids) for _ in range(count)]
    if focus == "meta":
        return _json_meta_list(j, _json_meta_items(j, items, ids))
    if focus in ("services", "mixed"):
        r = rng.random()
        if r < 0.12:
            return "null"
        if r < 0.2:
            return j.arr(["null", *items])
        if r < 0.3:
            return _json_service(j, "plain", ids)  # an object, not an array
        if r < 0.38:
            return _pick(rng, ['"x"', "1", "true", '""', "[[]]", "[1]", '["a"]', "[[{}]]"])
    return j.arr(items)


def _json_members(j: _Json, focus: str) -> list[tuple[str, str]]:
    """The string members (and studyDate) of a root object."""
    rng = j.rng
    members: list[tuple[str, str]] = []
    n_fields = rng.randrange(0, 3) if focus != "mixed" else rng.randrange(2, 12)
    for field in rng.sample(STRING_FIELDS, n_fields):
        jname = JSON_NAMES.get(field, field)
        if focus in ("names", "mixed"):
            jname = _case_variant(rng, _pick(rng, [jname, field, jname]))
        if focus in ("values", "mixed", "int"):
            value = _json_any(j) if rng.random() < 0.6 else j.string(string_value(rng, field))
        elif focus == "limits":
            value = j.string(string_value(rng, field))
        else:
            value = j.string(_pick(rng, PLAIN_TEXT + UNICODE_TEXT))
        members.append((jname, value))
    if focus in ("date", "mixed") or rng.random() < 0.3:
        name = "studyDate" if focus != "names" else _case_variant(rng, "studyDate")
        if focus in ("date", "mixed"):
            value = _json_date_value(j)
        else:
            value = j.string(_pick(rng, DATE_TEXTS[:6]))
        members.append((name, value))
    return members


def _json_duplicates(j: _Json, members: list[tuple[str, str]], ids: list[str]) -> None:
    rng = j.rng
    for _ in range(rng.randrange(1, 3)):
        k, _v = _pick(rng, members) if members else ("name", "")
        dup = _case_variant(rng, k) if rng.random() < 0.4 else k
        value = _json_services(j, "services", ids) if k.lower() == "services" else _json_any(j)
        members.insert(rng.randrange(len(members) + 1), (dup, value))
    if rng.random() < 0.5:
        members.append(("services", _json_services(j, "plain", ids)))


def _json_root(rng: random.Random, focus: str, lenient: float) -> str:
    j = _Json(rng, lenient)
    ids: list[str] = []
    members: list[tuple[str, str]] = []
    if focus == "meta" and rng.random() < 0.7:
        members.append(("$id", _pick(rng, [j.string("1"), j.string("x"), "1", "null"])))
    members += _json_members(j, focus)
    if focus in ("meta", "services", "int", "limits", "dup", "mixed") or rng.random() < 0.4:
        sname = _case_variant(rng, "services") if focus in ("names", "mixed") else "services"
        members.append((sname, _json_services(j, focus, ids)))
    if focus in ("dup", "mixed") or (focus == "names" and rng.random() < 0.3):
        _json_duplicates(j, members, ids)
    if focus == "meta":
        for _ in range(rng.randrange(3)):
            key = _pick(rng, ["$id", "$ref", "$type", "$values", "$Id", "$REF", "$foo"])
            val = _pick(rng, [j.string("1"), j.string("3"), j.string("QCareDto"), "[]", "null"])
            members.insert(rng.randrange(len(members) + 1), (key, val))
        if rng.random() < 0.1:
            members = [("$ref", j.string(_pick(rng, ["1", "2", "9"])))]
    if focus in ("values", "mixed", "limits") and rng.random() < 0.3:
        members.append(("extra", _json_any(j)))
    return j.obj(members)


def _nest(depth: int, rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.5:
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


def json_body(rng: random.Random, focus: str | None = None) -> tuple[str, str]:
    """(text, focus) of a JSON body."""
    focus = focus or _pick(rng, JSON_FOCI)
    lenient = 0.0
    if focus == "syntax":
        lenient = rng.choice([0.2, 0.5, 1.0])
        text = _json_root(rng, _pick(rng, ["plain", "values", "meta", "int"]), lenient)
        r = rng.random()
        if r < 0.15:
            text += _pick(rng, [" garbage", "}", "]", ",{}", " {", "\x00", "/*", "//x"])
        elif r < 0.25:
            text = text[: rng.randrange(1, max(2, len(text)))]  # truncated
        elif r < 0.35:
            text = _pick(rng, ["", " ", "null", " null ", "[]", "[{}]", "1", '"x"', "true",
                               "{}", "{ }", "/**/{}", "{}//", "{,}", "{'a':}", "{\"name\"}",
                               "\"\"", "[null]", "{\"name\":\"a\"", "{\"name\":'a'}"])  # fmt: skip
        return text, "json.syntax"
    if focus == "depth":
        depth = _pick(rng, [5, 60, 254, 255, 256, 257, 300, 1000])
        inner = _nest(depth, rng)
        where = rng.random()
        if where < 0.4:
            return '{"extra":' + inner + ',"name":"a"}', "json.depth"
        if where < 0.7:
            return '{"services":[' + inner + "]}", "json.depth"
        return '{"name":' + inner + "}", "json.depth"
    if focus == "exotic":
        return _pick(rng, JSON_EXOTIC)(rng), "json.exotic"
    if focus == "parts":
        count = _pick(rng, [100, 19_990, 20_000, 20_010])
        return '{"extra":[' + ",".join(["0"] * count) + '],"name":"a"}', "json.parts"
    if focus == "mixed":
        lenient = rng.choice([0.0, 0.2])
    return _json_root(rng, focus, lenient), f"json.{focus}"


def _jx_escapes(rng: random.Random) -> str:
    value = _pick(rng, [
        "\\/Date(0)\\/", "\\x41", "\\u12", "\\ud83d\\ude00", "\\ud83d", "\\ude00x", "a\\'b",
        "\\u0000",
        "\t", "\x01", "\x7f", "\\U0041", "\\a", "\\", "\\\"", "\u2028",
    ])  # fmt: skip
    return '{"name":"' + value + '","msg_id":"m"}'


def _jx_names(rng: random.Random) -> str:
    name = _pick(rng, ['""', '" name"', '"name "', '"na\\u006De"', '"NAME"', '"n\\u0061me"', "name",
                       "'name'", '"$name"', '"name\\u0000"', '"Name"'])  # fmt: skip
    return "{" + name + ':"x","hkid":"h"}'


def _jx_refs(rng: random.Random) -> str:
    return _pick(rng, [
        '{"services":{"$id":"5","$values":[{"studyDesc":"a"}]},"extra":{"$ref":"5"}}',
        '{"$id":"1","extra":{"$ref":"1"},"name":"a"}',
        '{"services":[{"$id":"2","studyDesc":"a"},{"$ref":"2"},{"$ref":"2"}]}',
        '{"services":[{"$ref":"2"},{"$id":"2","studyDesc":"a"}]}',
        '{"services":[{"$id":2,"studyDesc":"a"},{"$ref":"2"}]}',
        '{"services":[{"$id":"2","$id":"3","studyDesc":"a"},{"$ref":"3"}]}',
        '{"services":{"$values":[{"$values":[]}]}}',
        '{"$values":[],"name":"a"}',
        '{"$type":"QCareDto, QCare","$id":"1","name":"a"}',
        '{"$id":"1","$type":"x","name":"a"}',
        '{"services":[{"$type":"ServicesInfo","$id":"2","studyDesc":"a"}]}',
        '{"services":{"$ref":"1"},"$id":"1"}',
        '{"services":[{"$ref":""}]}',
        '{"services":[{"$ref":null}]}',
        '{"name":{"$ref":"1"},"$id":"1"}',
        '{"name":{"$values":["a"]}}',
        '{"name":{"$value":"a"}}',
        '{"services":[{"$values":[]}]}',
    ])  # fmt: skip


def _jx_roots(rng: random.Random) -> str:
    return _pick(rng, [
        '/*c*/{"name":"a"}', '//c\n{"name":"a"}', '{"name":"a"}/*c*/', '{"name":"a"}{"name":"b"}',
        '{"name":"a"} [', ' \n{"name":"a"}\n ', '\u00a0{"name":"a"}', '\ufeff{"name":"a"}',
        '{"name":"a"}\x00', '[{"name":"a"}]', '"x"', "1", "true", "null", "[]", "{}", "{,}",
        '{"name":"a",,"hkid":"b"}', '{"name" "a"}', '{"name":"a" "hkid":"b"}', "{'name':'a\"b'}",
        '{"name":"a"', '{"name":', "{", "", "  ", '{"services":[,]}', '{"services":[{},]}',
        '{"services":[null,]}', '{"name":undefined}', '{"name":NaN}',
        '{"services":[{"noOfImages":NaN}]}',
    ])  # fmt: skip


def _jx_numbers(rng: random.Random) -> str:
    value = _pick(rng, [
        "1e1", "1E1", "10e-1", "0.5e1", "-0", "+0", "00", "0x0", "0x7FFFFFFF", "0x80000000",
        "-0x1", "0777", "08", "09", "1.", ".1", "1e+1", "2147483647.0", "2147483648e0",
        '"0x10"', '" +5 "', '"5\\u0000"', '"\\u0035"', '"1,000"', '"1 000"', '"2147483647 "',
        "Infinity", "-Infinity", "NaN", "true", "[]", "{}", '""', "null",
    ])  # fmt: skip
    field = _pick(rng, ["noOfImages", "warningTime"])
    return '{"services":[{"' + field + '":' + value + "}]}"


JSON_EXOTIC = [_jx_escapes, _jx_names, _jx_refs, _jx_roots, _jx_numbers]


JSON_FOCI = [
    "values", "values", "int", "int", "date", "date", "meta", "meta", "meta", "names", "dup",
    "services", "syntax", "syntax", "limits", "mixed", "mixed", "depth", "parts", "plain",
    "exotic", "exotic", "exotic",
]  # fmt: skip
JSON_TYPES = ["application/json", "application/json; charset=utf-8", "text/json", "text/html"]


def gen_json(rng: random.Random) -> Case:
    text, focus = json_body(rng)
    ctype = _pick(rng, JSON_TYPES)
    body = _encode_text(text)
    if focus != "json.depth" and focus != "json.parts" and rng.random() < 0.06:
        body = codecs.BOM_UTF8 + body
    return Case(body, ctype, focus)


def _encode_text(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


# ---------------------------------------------------------------------------------------
# XML (XmlSerializer)

XSI = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
XSD = 'xmlns:xsd="http://www.w3.org/2001/XMLSchema"'


def _xml_escape(text: str, rng: random.Random) -> str:
    out = []
    for ch in text:
        if ch == "&":
            out.append("&amp;")
        elif ch == "<":
            out.append("&lt;")
        elif ch == ">" and rng.random() < 0.5:
            out.append("&gt;")
        elif ord(ch) < 0x20 and ch not in "\t\n\r":
            out.append(f"&#{ord(ch)};")
        elif 0xD800 <= ord(ch) <= 0xDFFF:
            out.append("\ufffd")
        else:
            out.append(ch)
    return "".join(out)


def _xml_text(rng: random.Random, focus: str, field: str) -> str:
    if focus in ("values", "mixed") and rng.random() < 0.4:
        return _pick(rng, [
            "<![CDATA[a<b]]>", "&#x41;&#66;", "a&amp;b", "  spaced  ", "&lt;tag&gt;", "",
            "&#x1F600;", "&#xD800;", "x&#13;y", "&quot;&apos;", "a<![CDATA[]]>b", "\r\n",
        ])  # fmt: skip
    return _xml_escape(string_value(rng, field), rng)


def _xml_int(rng: random.Random, focus: str) -> str:
    if focus in ("int", "mixed") or rng.random() < 0.2:
        return _xml_escape(_pick(rng, INT_TEXTS), rng)
    return str(rng.randrange(10))


def _xml_el(name: str, content: str | None, attrs: str = "") -> str:
    attrs = f" {attrs}" if attrs else ""
    if content is None:
        return f"<{name}{attrs} />"
    return f"<{name}{attrs}>{content}</{name}>"


def _xml_service(rng: random.Random, focus: str) -> str:
    children = []
    for name in SERVICE_STRINGS + SERVICE_INTS:
        if rng.random() < 0.3:
            continue
        ename = _case_variant(rng, name) if focus == "names" else name
        if focus == "names" and name in JSON_SERVICE_NAMES and rng.random() < 0.3:
            ename = JSON_SERVICE_NAMES[name]
        if focus == "nil" and rng.random() < 0.4:
            children.append(_xml_el(ename, None, _pick(rng, ['xsi:nil="true"', 'xsi:nil="false"',
                                                              'xsi:nil="1"'])))  # fmt: skip
            continue
        value = _xml_int(rng, focus) if name in SERVICE_INTS else _xml_text(rng, focus, name)
        children.append(_xml_el(ename, value))
    if focus in ("order", "mixed"):
        rng.shuffle(children)
        if children and rng.random() < 0.4:
            children.append(_pick(rng, children))
    item = "ServicesInfo"
    if focus == "names" and rng.random() < 0.3:
        item = _pick(rng, ["servicesInfo", "ServiceInfo", "item", "services"])
    attrs = ""
    if focus == "nil" and rng.random() < 0.2:
        return _xml_el(item, None, 'xsi:nil="true"')
    if focus == "types" and rng.random() < 0.4:
        attrs = _pick(rng, ['xsi:type="ServicesInfo"', 'xsi:type="Other"', 'xsi:type="xsd:string"'])
    return _xml_el(item, "".join(children), attrs)


def _xml_services(rng: random.Random, focus: str) -> str | None:
    r = rng.random()
    if focus in ("services", "nil", "mixed"):
        if r < 0.15:
            return None  # absent
        if r < 0.3:
            return _xml_el("services", None)
        if r < 0.4:
            return _xml_el("services", None, 'xsi:nil="true"')
        if r < 0.45:
            return _xml_el("services", "  ")
        if r < 0.5:
            return _xml_el("services", "text")
    count = rng.choice([0, 1, 1, 2, 3])
    if focus == "limits" and rng.random() < 0.5:
        count = rng.choice([MAX_SERVICE_LINES, MAX_SERVICE_LINES + 1])
    items = [_xml_service(rng, focus) for _ in range(count)]
    if focus in ("order", "services") and rng.random() < 0.3 and items:
        items.insert(rng.randrange(len(items)), "<!-- c -->")
    return _xml_el("services", "".join(items))


PROLOGUES = [
    "", "", '<?xml version="1.0"?>', '<?xml version="1.0" encoding="utf-8"?>',
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>', "<?xml version='1.0'?>",
    '<?xml version="1.1"?>', '<?xml version="1.0" encoding="utf-16"?>',
    '<?xml version="1.0" encoding="iso-8859-1"?>', '<?xml version="1.0" encoding="ascii"?>',
    " ", "\n", "<!-- c -->", "<?pi x?>", '<?xml version="1.0"?>\n<!-- c -->\n',
    ' <?xml version="1.0"?>', '<?xml  version = "1.0" ?>', "<?xml?>", '<?xml encoding="utf-8"?>',
]  # fmt: skip


def _xml_date(rng: random.Random) -> str:
    return _xml_escape(date_text(rng), rng)


XML_HOSTILE = [
    "<!DOCTYPE QCareDto><QCareDto><name>a</name></QCareDto>",
    '<!DOCTYPE QCareDto [<!ENTITY e "x">]><QCareDto><name>&e;</name></QCareDto>',
    "<QCareDto><name>&nbsp;</name></QCareDto>",
    "<QCareDto><name>&#0;</name></QCareDto>",
    "<QCareDto><name>a<b>c</b></name></QCareDto>",
    "<QCareDto><name><b>c</b></name></QCareDto>",
    "<QCareDto><name>a<!--c-->b</name></QCareDto>",
    "<QCareDto><name><!--c-->b</name></QCareDto>",
    "<QCareDto><name>a<?pi x?>b</name></QCareDto>",
    "<QCareDto><name>a</name>",
    "<QCareDto><name>a</name></QCareDto><x/>",
    "<QCareDto><name>a</name></QCareDto> ",
    "<QCareDto><NoOfImages>1</NoOfImages></QCareDto>",
    "<qcaredto/>",
    "<QCareDto/>",
    "<QCareDto></QCareDto>",
    "<QCareDto>text</QCareDto>",
    "<ServicesInfo/>",
    "<QCareDto><name>a</name><name>b</name></QCareDto>",
    "<QCareDto x='1' y=\"2\"/>",
    "<QCareDto><services><ServicesInfo><studyDesc>a<b/></studyDesc></ServicesInfo></services>"
    "</QCareDto>",
    "<QCareDto><name><![CDATA[x]]></name></QCareDto>",
    "<QCareDto><name>&#xFFFE;</name></QCareDto>",
    "<QCareDto><name>&#x10FFFF;</name></QCareDto>",
    "<QCareDto><name>\x01</name></QCareDto>",
    "<QCareDto><studyDate><x/></studyDate></QCareDto>",
    "<QCareDto ><name >a</name ></QCareDto >",
]


def _xml_member(rng: random.Random, focus: str, field: str) -> str:
    ename = field
    if focus == "names":
        ename = _case_variant(rng, _pick(rng, [field, JSON_NAMES.get(field, field)]))
    if focus == "nil" and rng.random() < 0.5:
        nil = _pick(rng, ['xsi:nil="true"', 'xsi:nil="false"', 'xsi:nil="1"', 'xsi:nil="TRUE"',
                          'nil="true"'])  # fmt: skip
        return _xml_el(ename, None if rng.random() < 0.7 else "v", nil)
    if focus == "types" and rng.random() < 0.5:
        attr = _pick(rng, ['xsi:type="xsd:string"', 'xsi:type="xsd:int"', 'xsi:type="string"',
                           'xsi:type="q:x"', 'foo="bar"'])  # fmt: skip
        return _xml_el(ename, _xml_text(rng, "plain", field), attr)
    empty = rng.random() < (0.4 if focus == "empty" else 0.05)
    return _xml_el(ename, None if empty else _xml_text(rng, focus, field))


def _xml_study_date(rng: random.Random, focus: str) -> str:
    if focus == "nil" and rng.random() < 0.5:
        return _xml_el("studyDate", None, 'xsi:nil="true"')
    if focus in ("date", "mixed"):
        return _xml_el("studyDate", _xml_date(rng))
    return _xml_el("studyDate", _pick(rng, DATE_TEXTS[:6]))


def _xml_children(rng: random.Random, focus: str) -> list[str]:
    n_fields = rng.randrange(0, 3) if focus != "mixed" else rng.randrange(2, 12)
    children = [_xml_member(rng, focus, field) for field in rng.sample(STRING_FIELDS, n_fields)]
    if focus in ("date", "mixed", "nil") or rng.random() < 0.3:
        children.append(_xml_study_date(rng, focus))
    if focus != "date" or rng.random() < 0.5:
        services = _xml_services(rng, focus)
        if services is not None:
            children.insert(0 if rng.random() < 0.6 else len(children), services)
    if focus in ("order", "mixed"):
        rng.shuffle(children)
        for _ in range(rng.randrange(3)):
            if children:
                children.insert(rng.randrange(len(children) + 1), _pick(rng, children))
    if focus == "int" and rng.random() < 0.5:
        ints = "".join(_xml_el(n, _xml_int(rng, "int")) for n in SERVICE_INTS)
        children.append(_xml_el("services", _xml_el("ServicesInfo", ints)))
    return children


def _xml_root(rng: random.Random, focus: str, inner: str) -> tuple[str, list[str], str]:
    """(root name, root attributes, inner) for a namespace focus."""
    attrs = [a for a in (XSI, XSD) if rng.random() < 0.7]
    root = "QCareDto"
    if focus == "ns":
        choice = rng.random()
        if choice < 0.25:
            attrs.append('xmlns="http://schemas.datacontract.org/2004/07/QCare"')
        elif choice < 0.45:
            attrs.append('xmlns=""')
        elif choice < 0.6:
            attrs.append('xmlns:q="urn:q"')
            root = "q:QCareDto"
        elif choice < 0.75:
            attrs.append('xmlns="http://tempuri.org/"')
        else:
            attrs.append('xmlns:q="urn:q"')
            inner = inner.replace("<name>", "<q:name>").replace("</name>", "</q:name>")
    if "xsi:" in inner and XSI not in attrs and rng.random() < 0.8:
        attrs.append(XSI)
    return root, attrs, inner


def xml_body(rng: random.Random, focus: str | None = None) -> tuple[str, str]:
    focus = focus or _pick(rng, XML_FOCI)
    if focus == "hostile":
        return _pick(rng, XML_HOSTILE), "xml.hostile"
    if focus == "exotic":
        return _pick(rng, XML_EXOTIC), "xml.exotic"
    if focus == "depth":
        depth = _pick(rng, [10, 250, 254, 255, 256, 257, 300])
        inner = "<a>" * depth + "</a>" * depth
        return f"<QCareDto><extra>{inner}</extra><name>a</name></QCareDto>", "xml.depth"
    if focus == "markup":
        count = _pick(rng, [100, 9_990, 10_000, 10_010])
        return "<QCareDto>" + "<x/>" * count + "<name>a</name></QCareDto>", "xml.markup"
    children = _xml_children(rng, focus)
    if focus in ("ws", "mixed"):
        sep = _pick(rng, ["\n  ", "\r\n\t", " ", "<!-- c -->", "<?pi?>", "\n<!---->"])
        inner = sep.join(children) + (sep if rng.random() < 0.5 else "")
    else:
        inner = "".join(children)
    root, attrs, inner = _xml_root(rng, focus, inner)
    prologue = _pick(rng, PROLOGUES) if focus in ("prologue", "mixed") else ""
    text = f"{prologue}<{root}{' ' if attrs else ''}{' '.join(attrs)}>{inner}</{root}>"
    if focus in ("prologue", "mixed") and rng.random() < 0.2:
        text += _pick(rng, ["\n", "<!-- c -->", "<?pi?>", " x", "<a/>"])
    return text, f"xml.{focus}"


XML_EXOTIC = [
    '<QCareDto><name a="1">x</name></QCareDto>',
    '<QCareDto><name xml:space="preserve">  x  </name></QCareDto>',
    "<QCareDto><name>  x  </name></QCareDto>",
    "<QCareDto><services><ServicesInfo><NoOfImages><![CDATA[5]]></NoOfImages></ServicesInfo>"
    "</services></QCareDto>",
    "<QCareDto><services><ServicesInfo><NoOfImages>&#x35;</NoOfImages></ServicesInfo>"
    "</services></QCareDto>",
    "<QCareDto><services><ServicesInfo><NoOfImages>\n5\t</NoOfImages></ServicesInfo>"
    "</services></QCareDto>",
    "<QCareDto><services><ServicesInfo><WarningTime>5<!--c--></WarningTime></ServicesInfo>"
    "</services></QCareDto>",
    '<QCareDto xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:nil="true"/>',
    '<QCareDto xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="QCareDto"/>',
    '<QCareDto xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="Other"/>',
    "<QCareDto>text<name>a</name>tail</QCareDto>",
    "<QCareDto><services><ServicesInfo/></services></QCareDto>",
    "<QCareDto><services><ServicesInfo></ServicesInfo><ServicesInfo/></services></QCareDto>",
    "<QCareDto><services><ServicesInfo><x><y/></x><studyDesc>a</studyDesc></ServicesInfo>"
    "</services></QCareDto>",
    '<QCareDto xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><services xsi:nil="true">'
    "<ServicesInfo/></services></QCareDto>",
    "<QCareDto><services><studyDesc>a</studyDesc></services></QCareDto>",
    "<QCareDto><services>x<ServicesInfo/>y</services></QCareDto>",
    "<QCareDto><ServicesInfo><studyDesc>a</studyDesc></ServicesInfo></QCareDto>",
    "<QCareDto><services><ServicesInfo><studyDesc>a</studyDesc><studyDesc>b</studyDesc>"
    "</ServicesInfo></services></QCareDto>",
    "<QCareDto><studyDate> 2025-10-26T15:51:31 </studyDate></QCareDto>",
    "<QCareDto><studyDate>2025-10-26T15:51:31.12345678</studyDate></QCareDto>",
    "<QCareDto><studyDate>+2025-10-26</studyDate></QCareDto>",
    "<QCareDto><studyDate>2025-10-26-05:00</studyDate></QCareDto>",
    "<QCareDto><studyDate>2025-10-26T24:00:00</studyDate></QCareDto>",
    "<QCareDto><studyDate>0001-01-01T00:00:00+08:00</studyDate></QCareDto>",
    "<QCareDto><studyDate>9999-12-31T23:59:59-08:00</studyDate></QCareDto>",
    "<QCareDto><studyDate></studyDate></QCareDto>",
    "<QCareDto><studyDate/></QCareDto>",
    '<?xml version="1.0" standalone="no"?><QCareDto/>',
    '<?xml version="1.0" encoding="UTF-16"?><QCareDto/>',
    "<?xml version='1.0' encoding='utf-8' ?>\r\n<QCareDto/>\r\n",
    "<QCareDto><name>a&#x2028;b</name></QCareDto>",
    "<QCareDto><name>a&#xD800;b</name></QCareDto>",
    "<QCareDto><name>\ud800</name></QCareDto>",
    "<QCareDto><name>a\rb\r\nc</name></QCareDto>",
    "<QCareDto><name>&amp;lt;</name></QCareDto>",
    "<QCareDto><name>&apos;&quot;&gt;</name></QCareDto>",
    "<QCareDto><Name>a</Name><NAME>b</NAME></QCareDto>",
    '<QCareDto xmlns:a="urn:a"><a:name>x</a:name><name>y</name></QCareDto>',
    '<QCareDto><name xmlns="urn:x">x</name></QCareDto>',
    '<QCareDto xmlns=""><name xmlns="">x</name></QCareDto>',
]


XML_FOCI = [
    "values", "int", "int", "date", "date", "nil", "nil", "types", "names", "order", "order",
    "services", "services", "empty", "ns", "prologue", "prologue", "ws", "hostile", "hostile",
    "limits", "mixed", "mixed", "depth", "markup", "plain", "exotic", "exotic",
]  # fmt: skip
XML_TYPES = ["application/xml", "text/xml", "application/xml; charset=utf-8", "TEXT/XML"]


def gen_xml(rng: random.Random) -> Case:
    text, focus = xml_body(rng)
    body = _encode_text(text)
    ctype = _pick(rng, XML_TYPES)
    if focus in ("xml.prologue", "xml.mixed") and rng.random() < 0.3:
        r = rng.random()
        if r < 0.4:
            body = codecs.BOM_UTF8 + body
        elif r < 0.8:
            body = codecs.BOM_UTF16_LE + text.encode("utf-16-le", "surrogatepass")
            ctype = _pick(rng, ["application/xml; charset=utf-16", "application/xml", "text/xml"])
        else:
            body = text.encode("utf-16-be", "surrogatepass")
            ctype = "application/xml; charset=utf-16BE"
    return Case(body, ctype, focus)


# ---------------------------------------------------------------------------------------
# forms (JQueryMvcFormUrlEncodedFormatter, MVC model binding)


def _form_escape(rng: random.Random, text: str, style: float) -> str:
    if style < 0.3:
        return quote(text, safe="")
    if style < 0.6:
        return quote(text, safe="[].").replace("%20", "+")
    # raw: only what would break the form
    return text.replace("%", "%25").replace("&", "%26").replace("=", "%3D").replace(" ", "+")


def _form_service_key(rng: random.Random, index: str, name: str, style: str) -> str:
    if style == "mvc":
        return f"services[{index}].{name}"
    if style == "jquery":
        return f"services[{index}][{name}]"
    return _pick(rng, [f"services.{index}.{name}", f"Services[{index}].{name}",
                       f"services[{index}]", f"services[].{name}", f"services[{index}].",
                       f"dto.services[{index}].{name}", f"[{index}].{name}"])  # fmt: skip


FORM_VALUES_BAD = ["%FF", "%E9%99", "%C0%AF", "%ED%A0%80", "%", "%G1", "%2", "a%00b", "%EF%BB%BF"]


def _form_fields(rng: random.Random, focus: str, style: float) -> list[tuple[str, str]]:
    pairs = []
    n_fields = rng.randrange(1, 3) if focus != "mixed" else rng.randrange(2, 10)
    for field in rng.sample(STRING_FIELDS, n_fields):
        name = field
        if focus in ("names", "mixed"):
            name = _case_variant(rng, _pick(rng, [field, JSON_NAMES.get(field, field)]))
            if rng.random() < 0.2:
                name = _pick(rng, [f"dto.{name}", f"dto[{name}]", f"{name}[]", f"[{name}]"])
        if focus in ("values", "mixed"):
            value = _form_escape(rng, string_value(rng, field), style)
            if rng.random() < 0.25:
                value = _pick(rng, FORM_VALUES_BAD) + value
        elif focus == "empty" and rng.random() < 0.6:
            value = _pick(rng, ["", "+", "%20", "++", "%09", "%0A"])
        else:
            value = _form_escape(rng, _pick(rng, PLAIN_TEXT + UNICODE_TEXT), style)
        pairs.append((name, value))
    return pairs


def _form_services(rng: random.Random, style: float) -> list[tuple[str, str]]:
    """Service-line keys: the old server never bound them (a field, not a property)."""
    pairs = []
    key_style = _pick(rng, ["mvc", "jquery", "mvc", "jquery", "other"])
    for i in range(rng.choice([1, 1, 2, 3])):
        index = str(i) if rng.random() < 0.9 else _pick(rng, ["5", "a", "-1", "01", ""])
        for name in SERVICE_STRINGS + SERVICE_INTS:
            if rng.random() < 0.4:
                continue
            key = _form_service_key(rng, index, _case_variant(rng, name), key_style)
            texts = INT_TEXTS if name in SERVICE_INTS else PLAIN_TEXT
            pairs.append((key, _form_escape(rng, _pick(rng, texts), style)))
    if rng.random() < 0.2:
        pairs.append(("services.index", _pick(rng, ["0", "1", "a"])))
    if rng.random() < 0.1:
        pairs.append(("services", _pick(rng, ["x", ""])))
    return pairs


def _form_syntax(rng: random.Random, text: str) -> str:
    r = rng.random()
    if r < 0.2:
        return "&" + text
    if r < 0.4:
        return text + "&"
    if r < 0.5:
        return text.replace("&", "&&", 1)
    if r < 0.6:
        return "=x&" + text
    if r < 0.7:
        return text + "&name"
    if r < 0.8:
        return text.replace("&", ";", 1)
    if r < 0.9:
        return "name=a=b&" + text
    return text


def form_body(rng: random.Random, focus: str | None = None) -> tuple[bytes, str]:
    focus = focus or _pick(rng, FORM_FOCI)
    style = rng.random()
    if focus == "exotic":
        return _pick(rng, FORM_EXOTIC).encode("latin-1"), "form.exotic"  # \xff: a raw byte
    if focus == "many":
        count = _pick(rng, [500, 999, 1000, 1001, 1500])
        if rng.random() < 0.1:  # the binder's own limit, when it has one
            count = getattr(form_binding, "MAX_KEYS", 1000) + rng.choice([0, 1])
        keys = [f"k{i}=v" for i in range(count - 1)] + ["name=a"]
        return "&".join(keys).encode(), "form.many"
    pairs = _form_fields(rng, focus, style)  # already escaped
    if focus in ("date", "mixed") or rng.random() < 0.2:
        text = date_text(rng)
        value = _form_escape(rng, text, style) if rng.random() < 0.7 else text.replace("&", "")
        pairs.append(("studyDate", value))
    if focus in ("services", "mixed", "int") or rng.random() < 0.3:
        pairs += _form_services(rng, style)
    if focus == "int":
        pairs.append((_pick(rng, ["NoOfImages", "WarningTime"]), _pick(rng, ["1", "x", ""])))
    if focus in ("repeat", "mixed") and pairs:
        for _ in range(rng.randrange(1, 4)):
            key, _value = _pick(rng, pairs)
            value = _pick(rng, ["", "second", "+", "x%20y"])
            pairs.insert(rng.randrange(len(pairs) + 1), (_case_variant(rng, key), value))
    if focus == "limits":
        field = _pick(rng, STRING_FIELDS)
        limit = DTO_LIMITS[JSON_NAMES.get(field, field)]
        pairs.append((field, quote(_limit_text(rng, limit.chars), safe="")))
    if style < 0.3:
        pairs = [(quote(k, safe=""), v) for k, v in pairs]
    text = "&".join(f"{k}={v}" if (v or rng.random() < 0.9) else k for k, v in pairs)
    if focus in ("syntax", "mixed"):
        text = _form_syntax(rng, text)
    return text.encode("utf-8", "surrogatepass"), f"form.{focus}"


FORM_EXOTIC = [
    "name=%u0041", "name=%u00", "name=a%2", "name=%", "na%6De=x", "name+=x", "+name=x", "name =x",
    "NAME=x", "name[0]=x", "name.x=y", "name[]=x&name[]=y", "name=a;hkid=b", "name=a&&hkid=b",
    "=&name=x", "&&&", "=", "name", "name=", "name==x", "name=x=y", "name=%E9%99%B3%E5%A4%A7",
    "name=%e9%99%b3", "name=\xe9\x99\xb3", "name=\xff", "name=%C3", "name=%C3%28",
    "name=%F0%9F%98%80", "name=%F0%9F%98", "name=%EF%BF%BF", "name=%00", "name=a%0D%0Ab",
    "msg_id=%20m%20&hkid=x", "services=x&name=y", "services.index=0&services[0].studyDesc=a",
    "studyDate=2025-10-26T15:51:31+08:00", "studyDate=2025-10-26T15:51:31%2B08:00",
    "studyDate=2025-10-26T15%3A51%3A31.8166249Z", "studyDate=%20", "studyDate=null",
    "studyDate=2025-10-26&studyDate=2025-10-27", "StudyDate=2025-10-26", "studydate=2025-10-26",
    "dto.name=a&name=b", "dto%2Ename=a", "name%5B%5D=a", "a[b][c]=d&name=e",
]  # fmt: skip


FORM_FOCI = [
    "plain", "values", "values", "names", "date", "date", "services", "services", "int",
    "empty", "repeat", "syntax", "limits", "mixed", "mixed", "many", "exotic", "exotic",
]  # fmt: skip
FORM_TYPES = [
    "application/x-www-form-urlencoded", "application/x-www-form-urlencoded; charset=UTF-8",
    "Application/X-WWW-Form-Urlencoded", "application/x-www-form-urlencoded; charset=big5",
]  # fmt: skip


def gen_form(rng: random.Random) -> Case:
    body, focus = form_body(rng)
    return Case(body, _pick(rng, FORM_TYPES), focus)


# ---------------------------------------------------------------------------------------
# Content-Type dispatch and charsets

MEDIA_TYPES = [
    "application/json", "text/json", "text/html", "application/xml", "text/xml",
    "application/x-www-form-urlencoded", "*/*", "text/*", "application/*", "text/plain",
    "application/octet-stream", "multipart/form-data", "application/json-patch+json",
    "application/problem+json", "application/vnd.api+json", "application/soap+xml",
    "application/xhtml+xml", "text/javascript", "application/javascript", "*/json", "json",
    "application/", "/json", "", " ", "application/json/x", "image/*", "text/csv",
]  # fmt: skip
CHARSETS = [
    "utf-8", "UTF-8", "utf8", '"utf-8"', "'utf-8'", "", "utf-16", "UTF-16", "utf-16le",
    "utf-16be", "unicode", "unicodeFFFE", "utf-32", "utf-32le", "utf-32be", "iso-8859-1",
    "latin1", "us-ascii", "ascii", "big5", "gb2312", "windows-1252", "utf-7", "x-unknown",
    "utf-8;", '"utf-16"', "utf-8 ", " utf-8", '"utf-8', 'utf-8"', "utf-8,foo", "UTF-16LE",
    "utf-16;charset=utf-8", "utf_8", "UTF8", "x-user-defined", "unicode-1-1-utf-8",
]  # fmt: skip
CODECS = {
    "utf-8": "utf-8", "utf8": "utf-8", "utf-16": "utf-16-le", "unicode": "utf-16-le",
    "utf-16le": "utf-16-le", "utf-16be": "utf-16-be", "unicodefffe": "utf-16-be",
    "utf-32": "utf-32-le", "utf-32le": "utf-32-le", "utf-32be": "utf-32-be",
    "iso-8859-1": "latin-1", "latin1": "latin-1", "big5": "big5", "windows-1252": "cp1252",
}  # fmt: skip
BOMS = {
    "utf-8": codecs.BOM_UTF8, "utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE,
    "utf-32-le": codecs.BOM_UTF32_LE, "utf-32-be": codecs.BOM_UTF32_BE,
}  # fmt: skip


def _ct_header(rng: random.Random, media: str) -> str:
    media = _case_variant(rng, media) if rng.random() < 0.3 else media
    params: list[str] = []
    if rng.random() < 0.6:
        key = _pick(rng, ["charset", "charset", "Charset", "CHARSET", " charset", "charset "])
        params.append(f"{key}={_pick(rng, CHARSETS)}")
    if rng.random() < 0.25:
        other = _pick(rng, ["q=0.5", "boundary=x", "foo=bar", "foo", "version=2", "charset=utf-8"])
        params.insert(rng.randrange(len(params) + 1), other)
    if not params:
        return media + _pick(rng, ["", "", "", ";", " ", "; "])
    seps = _pick(rng, [";", "; ", " ; ", ";  "])
    return media + seps + seps.join(params)


def gen_ct(rng: random.Random) -> Case:
    r = rng.random()
    if r < 0.35:
        text, _f = json_body(rng, _pick(rng, ["plain", "plain", "values", "date"]))
        media = _pick(rng, MEDIA_TYPES + ["application/json"] * 4)
    elif r < 0.6:
        text, _f = xml_body(rng, _pick(rng, ["plain", "values"]))
        media = _pick(rng, MEDIA_TYPES + ["application/xml", "text/xml"] * 3)
    elif r < 0.8:
        raw, _f = form_body(rng, _pick(rng, ["plain", "values"]))
        text = raw.decode("utf-8", "surrogatepass")
        media = _pick(rng, MEDIA_TYPES + ["application/x-www-form-urlencoded"] * 4)
    else:
        text = _pick(rng, ["", "", "x", "null", "{}", "<QCareDto/>", "name=a", " "])
        media = _pick(rng, MEDIA_TYPES)
    header: str | None = _ct_header(rng, media)
    if rng.random() < 0.06:
        header = None
    # encode: usually as labelled, sometimes not
    label = (header or "").lower().partition("charset=")[2].strip(" \"';")
    codec = CODECS.get(label, "utf-8")
    if rng.random() < 0.25:
        codec = _pick(rng, [*list(BOMS), "big5", "latin-1"])
    try:
        body = text.encode(codec, "surrogatepass") if "utf" in codec else text.encode(codec)
    except UnicodeEncodeError:
        body, codec = text.encode("utf-8", "surrogatepass"), "utf-8"
    focus = "ct.media"
    if label:
        focus = "ct.charset"
    if header is None:
        focus = "ct.missing"
    if codec in BOMS and rng.random() < 0.3:
        body = BOMS[codec] + body
        focus = "ct.bom"
    return Case(body, header, focus)


# ---------------------------------------------------------------------------------------

GENERATORS: dict[str, Gen] = {"json": gen_json, "xml": gen_xml, "form": gen_form, "ct": gen_ct}
# share of each format in a mixed run: dispatch is small, JSON is the biggest space
WEIGHTS = {"json": 4, "xml": 3, "form": 2, "ct": 2}


def cases(seed: int, n: int, formats: tuple[str, ...] | list[str] = FORMATS) -> Iterator[Case]:
    """n cases for `seed`, deterministically, the formats interleaved by WEIGHTS."""
    rng = random.Random(seed)
    pool = [fmt for fmt in formats for _ in range(WEIGHTS[fmt])]
    for _ in range(n):
        yield GENERATORS[_pick(rng, pool)](rng)


def strategy(fmt: str | None = None) -> Any:
    """A hypothesis strategy of `Case`s (one format, or all)."""
    from hypothesis import strategies as st

    formats = (fmt,) if fmt else FORMATS
    return st.builds(
        lambda r, f: GENERATORS[f](r),
        st.randoms(use_true_random=False),
        st.sampled_from(formats),
    )
