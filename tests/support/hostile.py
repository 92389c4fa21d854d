"""Hypothesis grammars of hostile request bodies (issue 12): JSON, XML and form bodies
with unpaired surrogates, NUL and other controls, numbers of thousands of digits, deep
and wide `$ref` / `$values`, repeated service indices, .NET date extremes and huge
strings. Each draw is (Content-Type, body)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st

from qcare_ingest.dto import DTO_FIELDS, SERVICE_FIELDS


class Raw(str):
    """A JSON token written as it is (a number literal no Python value would give)."""


def dump(value: Any) -> str:
    """JSON text; strings escaped ASCII-only, so lone surrogates travel as \\udXXX."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(v) for v in value) + "]"
    return json.dumps(value)


SPECIAL = ["\x00", "\x01", "\x1b", "\x7f", "\x85", "\u202e", "\u2066", "\ufeff", "\ufffd"]
SURROGATES = ["\ud83d", "\udc00", "\udbff"]
characters = st.one_of(
    st.characters(), st.sampled_from(SPECIAL), st.sampled_from(SURROGATES), st.just("😀")
)
huge_text = st.builds(
    lambda c, n: c * n,
    st.sampled_from(["A", "醫", "\x00", "{", "<", "\ud83d", " "]),
    st.sampled_from([65, 201, 256, 1001, 5000, 100_000, 1_200_000]),
)
short_text = st.text(characters, max_size=30)
texts = st.one_of(short_text, short_text, short_text, huge_text)
DATES = [
    "2025-10-26T15:51:31.8166249+08:00",
    "0001-01-01T00:00:00",
    "0001-01-01T00:00:00.0000000+14:00",
    "9999-12-31T23:59:59.9999999",
    "9999-12-31T23:59:59.9999999-12:00",
    "/Date(253402300799999)/",
    "/Date(-62135596800000)/",
    "/Date(-62135596800001)/",
    "/Date(9223372036854775807)/",
    "/Date(" + "9" * 5000 + ")/",
    "2025-02-30",
    "  2025-10-26  ",
    "2025-10-26T24:00:00",
]
dates = st.sampled_from(DATES)
NUMBERS = [
    "9" * 5000,
    "-" + "9" * 5000,
    "0" * 5000 + "7",
    "1e99999",
    "-0.0",
    "0." + "0" * 5000 + "1",
    "2147483648",
    "-2147483649",
    "1.0",
    "5",
]
numbers = st.sampled_from(NUMBERS).map(Raw)
scalars = st.one_of(st.none(), st.booleans(), texts, dates, numbers)


def _with_id(fields: dict[str, Any], msg_id: str | None) -> dict[str, Any]:
    if msg_id is not None:
        fields = {"msg_id": msg_id, **fields}
    return fields


UNIQUE = "fz-@@ID@@"  # replaced by a fresh id per example (see unique_ids)
msg_ids = st.one_of(
    st.just(UNIQUE),
    st.just(UNIQUE),
    st.text(characters, max_size=12).map(lambda t: UNIQUE + t),
    st.sampled_from(["醫" * 100, "m" * 300, "", "   ", "fz-same", None]),
)


def unique_ids(examples: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """Each example's placeholder msg_id made unique (hypothesis repeats its draws), so a
    200 names one message; "fz-same" keeps making msg_id conflicts on purpose."""
    out = []
    for n, (ctype, body) in enumerate(examples):
        fresh = f"{n:08d}"
        for codec in ("utf-8", "utf-16-le", "utf-16-be"):
            body = body.replace("@@ID@@".encode(codec), fresh.encode(codec))
        body = body.replace(b"%40%40ID%40%40", fresh.encode())  # in a form
        out.append((ctype, body))
    return out


service_lines = st.dictionaries(
    st.sampled_from([*SERVICE_FIELDS, *SERVICE_FIELDS.values(), "$id", "$ref"]),
    st.one_of(scalars, numbers),
    max_size=4,
)


def _fan_out(line: dict[str, Any], refs: int) -> list[Any]:
    return [{"$id": "7", **line}] + [{"$ref": "7"}] * refs


def _deep_values(depth: int) -> Raw:
    return Raw('{"$values":' * depth + "[{}]" + "}" * depth)


services = st.one_of(
    st.lists(st.one_of(st.none(), service_lines), max_size=4),
    st.builds(_fan_out, service_lines, st.sampled_from([1, 99, 100, 1000, 20_000])),
    st.builds(lambda n: [{}] * n, st.sampled_from([100, 101, 5000, 200_000])),
    st.builds(lambda lines: {"$id": "9", "$values": lines}, st.lists(service_lines, max_size=3)),
    st.builds(_deep_values, st.sampled_from([3, 255, 300, 5000])),
    st.just({"$ref": "1"}),
    st.builds(lambda n: Raw("[" + ",".join(["1.5"] * n) + "]"), st.sampled_from([19_000, 300_000])),
)
dto_values = st.dictionaries(
    st.sampled_from([f for f in DTO_FIELDS if f != "services"] + ["ADDRESS", "$id", "x"]),
    scalars,
    max_size=8,
)


@st.composite
def json_body(draw: st.DrawFn) -> tuple[str, bytes]:
    fields = draw(dto_values)
    fields["accessionNo"] = draw(st.one_of(st.just("ACC-FZ-1"), texts))
    if draw(st.booleans()):
        fields["services"] = draw(services)
    if draw(st.booleans()):
        fields = {"$id": "1", **fields}
    text = dump(_with_id(fields, draw(msg_ids)))
    ctype = draw(st.sampled_from(["application/json", "text/json; charset=utf-16", "*/*"]))
    return ctype, text.encode("utf-16" if "utf-16" in ctype else "utf-8", "surrogatepass")


def _xml_text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@st.composite
def xml_body(draw: st.DrawFn) -> tuple[str, bytes]:
    parts = ["<QCareDto>"]
    msg_id = draw(msg_ids)
    if msg_id is not None:
        parts.append(f"<msg_id>{_xml_text(msg_id)}</msg_id>")
    parts.append("<accessionNo>ACC-FZ-2</accessionNo>")
    for name in draw(st.lists(st.sampled_from([*DTO_FIELDS, "Address"]), max_size=6)):
        if name == "services":
            count = draw(st.sampled_from([0, 1, 101, 30_000]))
            number = draw(numbers)
            line = f"<ServicesInfo><NoOfImages>{number}</NoOfImages></ServicesInfo>"
            parts.append(f"<services>{line * count}</services>")
        else:
            value = draw(st.one_of(texts, dates))
            raw = draw(st.booleans())  # control characters as character references
            text = "".join(f"&#x{ord(c):x};" for c in value[:50]) if raw else _xml_text(value)
            parts.append(f"<{name}>{text}</{name}>")
    attributes = draw(st.sampled_from([0, 0, 30_000]))  # on the root: 179 MB before the bound
    if attributes:
        parts[0] = "<QCareDto " + " ".join(f'a{i}="1"' for i in range(attributes)) + ">"
    depth = draw(st.sampled_from([0, 0, 300]))
    parts.append("<x>" * depth + "</x>" * depth + "</QCareDto>")
    body = "".join(parts)
    if draw(st.booleans()):
        body = '<!DOCTYPE QCareDto [<!ENTITY a "aaaaaaaaaa">]>' + body
    return "application/xml", body.encode("utf-8", "surrogatepass")


@st.composite
def form_body(draw: st.DrawFn) -> tuple[str, bytes]:
    pairs: list[tuple[str, str]] = []
    msg_id = draw(msg_ids)
    if msg_id is not None:
        pairs.append(("msg_id", msg_id))
    pairs.append(("accessionNo", "ACC-FZ-3"))
    for name in draw(st.lists(st.sampled_from(list(DTO_FIELDS)), max_size=5)):
        pairs.append((name, draw(st.one_of(texts, dates))))
    repeat = draw(st.sampled_from([0, 1, 101, 20_000]))
    if repeat:
        pairs.append(("services.index", ",".join(["0"] * repeat)))
    for index in draw(st.lists(st.text(characters, max_size=5), max_size=3)):
        pairs.append((f"services[{index}].NoOfImages", draw(numbers)))
    body = "&".join(
        f"{quote(k, safe='', errors='surrogatepass')}={quote(v, safe='', errors='surrogatepass')}"
        for k, v in pairs
    )
    return "application/x-www-form-urlencoded", body.encode()


bodies = st.one_of(json_body(), xml_body(), form_body())
