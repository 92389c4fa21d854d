"""What the console shows of a message's body and DTO, masked unless revealed.

Personal data is masked by an allow-list (qcare_ingest.dlq.SHOWN_FIELDS and
SHOWN_SERVICE_FIELDS, compared case-insensitively, as the old binder matched names): any
other key's, element's or form field's value is `***`, identifiers keep a hint of
themselves (`A12****(3)`). A body that cannot be parsed is not shown at all until revealed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl
from xml.etree import ElementTree as ET

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as xml_fromstring

from qcare_ingest.binding import Format
from qcare_ingest.binding.echo import safe_key
from qcare_ingest.binding.media import UnsupportedMediaTypeError, select_format
from qcare_ingest.binding.text import BodyDecodeError, charset_codec, decode_body, decode_xml
from qcare_ingest.dlq import HIDDEN, SHOWN_FIELDS, SHOWN_SERVICE_FIELDS
from qcare_ingest.dlq import IDENTIFIERS as DTO_IDENTIFIERS
from qcare_ingest.normalize import mask_id

# Values are shown only where the DTO's allow-listed fields sit: a top-level field of
# SHOWN_FIELDS, or a service line's field of SHOWN_SERVICE_FIELDS inside `services`. The
# same name anywhere else (under `name`, under an unknown member) is masked like the rest.
TOP = frozenset(f.lower() for f in SHOWN_FIELDS)
LINE = frozenset(f.lower() for f in SHOWN_SERVICE_FIELDS)
SHOWN = TOP | LINE
IDENTIFIERS = frozenset(f.lower() for f in DTO_IDENTIFIERS)  # from fields.py, as dlq's
XSI_URI = "http://www.w3.org/2001/XMLSchema-instance"
XSI = "{" + XSI_URI + "}"
# namespaces a masked XML rendition names; any other URI is client text and is masked
KNOWN_NAMESPACES = (XSI_URI, "http://www.w3.org/2001/XMLSchema",
                    "http://schemas.datacontract.org/2004/07/")  # fmt: skip
MASKED_NAMESPACE = "urn:qcare:masked"
MAX_SHOWN_CHARS = 1_000_000  # a rendition longer than this is cut, with a note
MAX_FORM_FIELDS = 5000
_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
_FORM_NAME_PARTS = re.compile(r"[.\[\]]+")
# Json.NET's reference ids are small numbers ("1", "2"); any other `$id`/`$ref` is masked
_REFERENCE_ID = re.compile(r"\d{1,9}")
_METADATA = frozenset({"$id", "$ref"})
_SAFE_NAME = re.compile(r"[A-Za-z_$][A-Za-z_$]{0,63}")  # as safe_key shows member names
_FORM_LINE = re.compile(r"services(?:\[\d{1,9}\]\.?|\.)\[?([A-Za-z]{1,64})\]?", re.IGNORECASE)


def shown(key: str | None) -> bool:
    """Is `key` an allow-listed field name (at its own place in the DTO)?"""
    return key is not None and key.lower() in SHOWN


def mask_value(key: str | None, value: Any) -> Any:
    """A personal value's masked form: identifiers `A12****(3)`, anything else `***`."""
    if value is None or value == "":
        return value
    if key is not None and key.lower() in IDENTIFIERS and isinstance(value, str):
        return mask_id(value)
    return HIDDEN


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _masked_keys(node: dict[str, Any]) -> dict[str, str]:
    """Member names as a masked rendition shows them (safe_key: no client text), kept
    distinct when several mask alike."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for key in node:
        name, n = safe_key(key), 1
        while name in taken:
            n += 1
            name = f"{safe_key(key)} ({n})"
        taken.add(name)
        out[key] = name
    return out


def mask_tree(node: Any, allowed: frozenset[str] = TOP, key: str | None = None) -> Any:
    """A parsed JSON value masked: a scalar is shown only under a name `allowed` at its
    place (the root object's fields, then a service line's in `services`); `$id`/`$ref`
    only as Json.NET's small numbers; member names only when they cannot be client text."""
    if isinstance(node, dict):
        names = _masked_keys(node)
        out: dict[str, Any] = {}
        for k, v in node.items():
            lower = k.lower()
            if lower in _METADATA and isinstance(v, str) and _REFERENCE_ID.fullmatch(v):
                out[names[k]] = v
            elif lower == "services" and allowed is TOP:
                out[names[k]] = _mask_lines(v)
            elif lower in allowed and _scalar(v):
                out[names[k]] = v
            else:
                out[names[k]] = mask_tree(v, frozenset(), k)
        return out
    if isinstance(node, list):
        return [mask_tree(item, frozenset(), key) for item in node]
    return mask_value(key, node)


def _mask_lines(value: Any) -> Any:
    """`services`: a list of lines, or Json.NET's {"$id", "$values": [...]} wrapper."""
    if isinstance(value, dict) and isinstance(value.get("$values"), list):
        inner = {k: v for k, v in value.items() if k != "$values"}
        return {**mask_tree(inner, frozenset()), "$values": _mask_lines(value["$values"])}
    if isinstance(value, list):
        return [mask_tree(line, LINE) if isinstance(line, dict) else mask_value(None, line)
                for line in value]  # fmt: skip
    return mask_tree(value, frozenset(), "services")


@dataclass
class Rendition:
    """kind: json | xml | form | text (revealed, unparseable) | hidden | empty."""

    kind: str
    size: int
    text: str = ""
    pairs: list[tuple[str, str, bool]] = field(default_factory=list)  # form: key, value, masked
    note: str | None = None


def _cut(text: str) -> tuple[str, str | None]:
    if len(text) <= MAX_SHOWN_CHARS:
        return text, None
    return text[:MAX_SHOWN_CHARS], f"Cut at {MAX_SHOWN_CHARS:,} characters."


def _json(body: bytes, charset: str | None, reveal: bool) -> str:
    data = json.loads(decode_body(body, charset))
    return json.dumps(data if reveal else mask_tree(data), indent=2, ensure_ascii=False)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _masked_name(qname: str, fallback: str) -> str:
    """An element's or attribute's name in a masked rendition: its namespace URI only if
    well known, its local name only if it cannot be client text."""
    uri, local = (qname[1:].split("}", 1)) if qname.startswith("{") else ("", qname)
    if not _SAFE_NAME.fullmatch(local):
        local = fallback
    if uri and not uri.startswith(KNOWN_NAMESPACES):
        uri = MASKED_NAMESPACE
    return f"{{{uri}}}{local}" if uri else local


def _mask_xml(element: ET.Element, role: str = "dto") -> None:
    """Mask in place. `role`: the element's place in the DTO: "dto" (the root), "services",
    "line" (a ServicesInfo), "field" (an allow-listed field at its place) or "other". Text
    is shown only in a leaf "field"; attributes only as `xsi:nil="true|false"`; client
    text in element and attribute names and namespace URIs is replaced."""
    name = _local(element.tag).lower() if isinstance(element.tag, str) else ""
    for attr, value in list(element.attrib.items()):
        del element.attrib[attr]
        if attr == XSI + "nil" and value.strip() in ("true", "false", "1", "0"):
            element.attrib[attr] = value
        else:
            element.attrib[_masked_name(attr, "attribute")] = HIDDEN
    children = list(element)
    text = element.text
    if text is not None and text.strip() and (children or role != "field"):
        element.text = str(mask_value(name, text))
    for child in children:
        _mask_xml(child, _child_role(role, child))
        if child.tail is not None and child.tail.strip():
            child.tail = HIDDEN
    if isinstance(element.tag, str):
        element.tag = _masked_name(element.tag, "member")


def _child_role(role: str, child: ET.Element) -> str:
    name = _local(child.tag).lower() if isinstance(child.tag, str) else ""
    if role == "dto":
        return "services" if name == "services" else "field" if name in TOP else "other"
    if role == "services":
        return "line"
    if role == "line":
        return "field" if name in LINE else "other"
    return "other"


def _xml(body: bytes, charset: str | None, reveal: bool) -> str:
    text = _DECLARATION.sub("", decode_xml(body, charset), count=1)
    root = xml_fromstring(text, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    if not reveal:
        _mask_xml(root)
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode")


def _form_field(key: str) -> str | None:
    """The allow-listed field a form key names at its place (`location`,
    `services[0].studyDesc`, `services[0][studyDesc]`), else None."""
    if key.lower() in TOP:
        return key
    line = _FORM_LINE.fullmatch(key)
    if line is not None and line[1].lower() in LINE:
        return line[1]
    return None


def _form(body: bytes, charset: str | None, reveal: bool) -> list[tuple[str, str, bool]]:
    """Key/value rows, masked unless `reveal`; at most MAX_SHOWN_CHARS of keys and values
    in all (a 4 MiB value would otherwise be 4 MB of HTML), then a row saying what is cut."""
    text = body.decode(charset_codec(charset), "replace")
    pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    out: list[tuple[str, str, bool]] = []
    budget = MAX_SHOWN_CHARS
    for n, (key, value) in enumerate(pairs):
        if reveal or _form_field(key) is not None:
            row = (key, value, False)
        else:
            leaf = [p for p in _FORM_NAME_PARTS.split(key) if p]
            row = (safe_key(key), str(mask_value(leaf[-1] if leaf else key, value)), bool(value))
        if len(row[0]) + len(row[1]) > budget:
            rest = len(pairs) - n
            out.append(("…", f"Cut at {MAX_SHOWN_CHARS:,} characters: {rest} field(s) "
                             "not shown.", False))  # fmt: skip
            break
        budget -= len(row[0]) + len(row[1])
        out.append(row)
    return out


def body_rendition(body: bytes, content_type: str | None, reveal: bool) -> Rendition:
    """The request body as received, pretty-printed for its format and masked unless
    `reveal`; hidden entirely (unless revealed) when it cannot be parsed."""
    size = len(body)
    if not body:
        return Rendition("empty", 0)
    try:
        fmt, charset = select_format(content_type)
    except UnsupportedMediaTypeError:
        fmt, charset = None, None
    try:
        if fmt is Format.JSON:
            text, note = _cut(_json(body, charset, reveal))
            return Rendition("json", size, text=text, note=note)
        if fmt is Format.XML:
            text, note = _cut(_xml(body, charset, reveal))
            return Rendition("xml", size, text=text, note=note)
        if fmt is Format.FORM:
            return Rendition("form", size, pairs=_form(body, charset, reveal))
    except (ValueError, BodyDecodeError, ET.ParseError, DefusedXmlException, RecursionError):
        pass  # json.JSONDecodeError and too many form fields are ValueErrors
    what = fmt.value.upper() if fmt is not None else "a known format"
    if not reveal:
        return Rendition(
            "hidden",
            size,
            note=f"The body could not be read as {what}, so it "
            "is hidden: it may hold personal data. Reveal to see it as text.",
        )
    text, note = _cut(body.decode("utf-8", "replace"))
    return Rendition(
        "text",
        size,
        text=text,
        note=note or f"The body could not be read as {what}; shown as text.",
    )


@dataclass
class DtoTable:
    """The canonical DTO as rows (field, value, masked) and its service lines."""

    rows: list[tuple[str, str, bool]]
    services: list[list[tuple[str, str, bool]]] | None  # None: the DTO has no services
    service_columns: list[str]
    unreadable: bool = False


def _cell(key: str, value: Any, reveal: bool) -> tuple[str, str, bool]:
    if reveal or shown(key) or value is None or value == "":
        return key, _display(value), False
    return key, _display(mask_value(key, value)), True


def _display(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def dto_table(dto_text: str, reveal: bool) -> DtoTable:
    try:
        data = json.loads(dto_text)
    except (ValueError, RecursionError):
        return DtoTable([], None, [], unreadable=True)
    if not isinstance(data, dict):
        return DtoTable([], None, [], unreadable=True)
    rows = [_cell(k, v, reveal) for k, v in data.items() if k != "services"]
    services = data.get("services")
    if not isinstance(services, list):
        if services is not None:
            rows.append(_cell("services", services, reveal))
        return DtoTable(rows, None, [])
    columns: list[str] = []
    for line in services:
        for key in line if isinstance(line, dict) else ():
            if key not in columns:
                columns.append(key)
    lines = [
        [_cell(c, line.get(c), reveal) for c in columns]
        if isinstance(line, dict)
        else [_cell("services", line, reveal)]
        for line in services
    ]
    return DtoTable(rows, lines, columns)
