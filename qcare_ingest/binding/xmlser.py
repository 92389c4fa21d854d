"""XML binding as XmlSerializer did it (WIRE.md §4): C# names, any order, all or nothing.

Parsed with defusedxml and DTDs forbidden: no entity expansion, no external
entities, no DOCTYPE at all (the old XmlDictionaryReader refused any `<!`).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from ..dates import parse_dotnet
from ..dto import DTO_FIELDS, INT32_MAX, INT32_MIN, SERVICE_FIELDS, SERVICE_INT_FIELDS, QCareDto
from ..limits import MAX_SERVICE_LINES, MAX_XML_MARKUP, parse_int_text
from .echo import quote_date, quote_number
from .result import BindResult
from .text import BodyDecodeError, body_encoding, decode_body

MAX_DEPTH = 256
XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"
_DECL = re.compile(r"^\s*<\?xml\s[^>]*?\?>")
_DECL_ENCODING = re.compile(r"""encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")


class XmlBindError(ValueError):
    pass


def _check_declaration(text: str, utf16: bool) -> str:
    """The declaration's encoding must match the bytes (x08); return text without it."""
    m = _DECL.match(text)
    if not m:
        return text
    enc = _DECL_ENCODING.search(m[0])
    if enc:
        declared = enc[1].lower().replace("_", "-")
        family = declared.startswith("utf-16") or declared in ("unicode", "ucs-2")
        if declared not in ("utf-8", "utf8") and not family:
            raise XmlBindError(
                f"The XML declares encoding '{enc[1]}'; only UTF-8 and UTF-16 are read"
            )
        if family != utf16:
            actual = "UTF-16" if utf16 else "UTF-8"
            raise XmlBindError(
                f"The XML declaration says encoding '{enc[1]}' but the body is {actual}"
            )
    return text[m.end() :]


def _depth_ok(root: ET.Element) -> bool:
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return False
        stack.extend((child, depth + 1) for child in node)
    return True


def _scalar(elem: ET.Element, name: str) -> str | None:
    if elem.get(XSI_NIL, "").strip() in ("true", "1"):
        return None
    if len(elem):
        raise XmlBindError(f"<{name}> must hold text, not the element <{elem[0].tag}>")
    return elem.text or ""


def _int(elem: ET.Element, name: str) -> int:
    text = _scalar(elem, name)
    value = parse_int_text(text) if text is not None else None
    if text is None or value is None:
        shown = "an empty element" if not text else quote_number(text)
        raise XmlBindError(f"<{name}> must be a whole number (Int32), got {shown}")
    if not INT32_MIN <= value <= INT32_MAX:
        raise XmlBindError(f"<{name}> is outside the Int32 range")
    return value


def _first_children(elem: ET.Element, names: dict[str, str]) -> dict[str, ET.Element]:
    """Known children by C# name (exact, no namespace); a repeat is ignored."""
    found: dict[str, ET.Element] = {}
    for child in elem:
        if isinstance(child.tag, str) and child.tag in names and child.tag not in found:
            found[child.tag] = child
    return found


def _service(elem: ET.Element) -> dict[str, Any]:
    line: dict[str, Any] = {}
    for tag, child in _first_children(elem, SERVICE_FIELDS).items():
        canon = SERVICE_FIELDS[tag]
        line[canon] = _int(child, tag) if canon in SERVICE_INT_FIELDS else _scalar(child, tag)
    return line


def _services(elem: ET.Element) -> list[dict[str, Any] | None] | None:
    if elem.get(XSI_NIL, "").strip() in ("true", "1"):
        return None
    lines: list[dict[str, Any] | None] = []
    for child in elem:
        if len(lines) > MAX_SERVICE_LINES:
            break  # never bind more than the limit lets through (limits.check refuses)
        if child.tag == "ServicesInfo":
            nil = child.get(XSI_NIL, "").strip() in ("true", "1")
            lines.append(None if nil else _service(child))
    return lines


def _bind_root(root: ET.Element) -> QCareDto:
    if root.tag != "QCareDto":
        tag = str(root.tag)
        hint = " (DataContract namespaces are not read)" if tag.startswith("{") else ""
        raise XmlBindError(f"The root element must be <QCareDto>, not <{tag[:80]}>{hint}")
    fields: dict[str, Any] = {}
    for tag, child in _first_children(root, DTO_FIELDS).items():
        canon = DTO_FIELDS[tag]
        if canon == "services":
            fields[canon] = _services(child)
        elif canon == "studyDate":
            text = _scalar(child, tag)
            if text is not None and parse_dotnet(text, xml=True) is None:
                raise XmlBindError(f"<studyDate> {quote_date(text)} is not an xsd:dateTime")
            fields[canon] = text.strip() if text is not None else None
        else:
            fields[canon] = _scalar(child, tag)
    return QCareDto(**fields)


def bind_xml(body: bytes, charset: str | None) -> BindResult:
    """Any error nulls the whole model under the parameter's own key (x06, x12)."""
    result = BindResult(None)
    try:
        text = decode_body(body, charset)
        utf16 = body_encoding(body, charset)[0] != "utf-8"
        text = _check_declaration(text, utf16)
        if text.count("<") + text.count("=") > MAX_XML_MARKUP:  # 350,000 attributes: 179 MB
            raise XmlBindError(f"The XML holds more than {MAX_XML_MARKUP} tags and attributes")
        root = fromstring(text, forbid_dtd=True, forbid_entities=True, forbid_external=True)
        if not _depth_ok(root):
            raise XmlBindError(f"The XML is nested deeper than {MAX_DEPTH} levels")
        result.model = _bind_root(root)
    except (BodyDecodeError, XmlBindError) as exc:
        result.add("", str(exc))
    except DefusedXmlException:
        result.add("", "DTDs and entity declarations are not allowed in the XML")
    except ET.ParseError as exc:
        result.add("", f"The XML is not well-formed: {exc}")
    except RecursionError:
        result.add("", f"The XML is nested deeper than {MAX_DEPTH} levels")
    return result
