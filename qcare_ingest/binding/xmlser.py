"""XML binding as XmlSerializer did it (WIRE.md §4): C# names, any order, all or nothing.

What the reference server (the real Web API over an XmlDictionaryReader text reader and
XmlSerializer) does, and so do we:

* the root is `<QCareDto>` in no namespace (`xsi:type`, when present, must name QCareDto,
  and on a service line ServicesInfo); `xsi:nil="true"` on the root binds a null model;
* members are matched by exact C# name in no namespace; anything else is skipped, as is a
  repeated member (the first one wins: a warning says what was dropped);
* `services` is a list that is always there (`[]` when absent or `xsi:nil`); repeated
  `<services>` elements add to it; a `<ServicesInfo xsi:nil="true"/>` is a null line;
* a string member ignores `xsi:nil` (an empty string); `studyDate` and `NoOfImages` are
  nullable (`xsi:nil` true or 1 is null; a nil value that is not a boolean is an error);
* `studyDate` is XmlConvert.ToDateTime (`xsdtime.py`), integers XmlConvert.ToInt32;
* processing instructions are refused anywhere, comments are allowed between elements;
* the declaration, if any, is `version="1.0"` with an encoding that names the body's own;
* after the root's end tag one node is read (whitespace or a comment: fine; anything else:
  an error) and nothing more, so later junk or bad UTF-8 there is never seen; a document of
  only a declaration or comments binds a null model.

Where the reference is Mono's and not .NET Framework's, .NET's stricter rule is kept: a
comment or a child element inside a string, number or date is refused, and so is `&#0;`.
Character references to other control characters, surrogates and U+FFFE/U+FFFF are read as
the reference reads them.

Parsed with defusedxml and DTDs forbidden: no entity expansion, no external entities, no
DOCTYPE at all (the old XmlDictionaryReader refused any `<!DOCTYPE`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any
from xml.etree.ElementTree import ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from ..dto import DTO_FIELDS, INT32_MAX, INT32_MIN, SERVICE_FIELDS, SERVICE_INT_FIELDS, QCareDto
from ..limits import MAX_SERVICE_LINES, MAX_XML_MARKUP, parse_int_text
from .echo import quote_date, quote_number
from .result import BindResult
from .text import BodyDecodeError, decode_xml, xml_encoding
from .xsdtime import xsd_datetime

MAX_DEPTH = 256
XSI = "http://www.w3.org/2001/XMLSchema-instance"
_XSI_OLD = (
    "http://www.w3.org/2000/10/XMLSchema-instance",
    "http://www.w3.org/1999/XMLSchema-instance",
)
# XmlSerializationReader.GetNullAttr and GetXsiType: the first of these attributes present
_NIL_ATTRS = (f"{{{XSI}}}nil", f"{{{XSI}}}null", *(f"{{{ns}}}null" for ns in _XSI_OLD))
_TYPE_ATTRS = (f"{{{XSI}}}type", *(f"{{{ns}}}type" for ns in _XSI_OLD))
# a document without a root element: only whitespace and comments
_NO_ROOT = re.compile(r"(?:[ \t\r\n]+|<!--(?:(?!--).)*-->)*", re.S)
_NULLABLE = frozenset({"studyDate"})
_NULLABLE_LINE = frozenset({"NoOfImages"})
_WS = "[ \t\r\n]"
_DECL = re.compile(
    rf"<\?xml{_WS}+version{_WS}*={_WS}*(?:\"1\.0\"|'1\.0')"
    rf"(?:{_WS}+encoding{_WS}*={_WS}*(?:\"([A-Za-z][\w.-]*)\"|'([A-Za-z][\w.-]*)'))?"
    rf"(?:{_WS}+standalone{_WS}*={_WS}*(?:\"(?:yes|no)\"|'(?:yes|no)'))?{_WS}*\?>",
    re.ASCII,
)
_DECL_NAMES = {"utf-8": ("utf-8",), "utf-16-le": ("utf-16", "utf-16le")}
# character references: the only ones outside CDATA sections and comments count. Only those
# that may name a character the parser refuses are looked at: these patterns match more of
# them than that, never fewer (_protect_char_refs checks each one with _invalid_char).
_MAY_PROTECT_REF = (
    r"&#(?:x0*(?:[1-8bcefBCEF]|1[0-9a-fA-F]|[dD][89a-fA-F][0-9a-fA-F]{2}|[fF]{3}[eEfF])"
    r"|0*(?:[1-8]|1[124-9]|2[0-9]|3[01]|5[5-7][0-9]{3}|6553[45]));"
)
_MAY_PROTECT = re.compile(_MAY_PROTECT_REF)
_OPENER = re.compile(r"<!--|<!\[CDATA\[")
# element names a message may show: ours in any case (a client's name could be anything)
_OUR_NAMES = {n.lower(): n for n in (*DTO_FIELDS, *SERVICE_FIELDS, "QCareDto", "ServicesInfo")}


class XmlBindError(ValueError):
    pass


def _strip_declaration(text: str, codec: str) -> str:
    """The text after a valid declaration (x08); a malformed one, or one naming another
    encoding than the body's, is refused. Any other `<?` is a processing instruction."""
    if not text.startswith("<?"):
        return text
    m = _DECL.match(text)
    if m is None:
        raise XmlBindError(
            'The XML declaration is malformed: only <?xml version="1.0" encoding="..." '
            'standalone="..."?> is read, and no processing instructions'
        )
    declared = m[1] or m[2]
    if declared is not None and declared.lower() not in _DECL_NAMES[codec]:
        actual = "UTF-8" if codec == "utf-8" else "UTF-16"
        raise XmlBindError(f"The XML declaration names another encoding than the body's {actual}")
    return text[m.end() :]


def _invalid_char(code: int) -> bool:
    """A character XML 1.0 does not allow, that the reference still reads from a reference."""
    return (
        1 <= code <= 8
        or code in (0x0B, 0x0C)
        or 0x0E <= code <= 0x1F
        or 0xD800 <= code <= 0xDFFF
        or code in (0xFFFE, 0xFFFF)
    )


def _unused_private_use(text: str) -> Iterator[str]:
    """Private-use characters the text does not hold (its characters are read once, at the
    first one asked for)."""
    present = set(text)
    for code in range(0xE000, 0xF900):
        if chr(code) not in present:
            yield chr(code)


def _sections(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of the CDATA sections and comments, each from its opener to the first
    close after it. An opener never closed is none, and what follows it is still read; it is
    known to be unclosed from where the last close is, so the text is read once."""
    last_comment = text.rfind("-->")  # an opener at i is closed when i + 4 <= this
    last_cdata = text.rfind("]]>")  # a CDATA section's when i + 9 <= this
    pos = 0
    while (m := _OPENER.search(text, pos)) is not None:
        start = m.start()
        pos = m.end()
        if m[0] == "<!--":
            if start + 4 <= last_comment:
                pos = text.index("-->", start + 4) + 3
                yield start, pos
        elif start + 9 <= last_cdata:
            pos = text.index("]]>", start + 9) + 3
            yield start, pos


def _protect_char_refs(text: str) -> tuple[str, dict[int, str]]:
    """Character references the parser would refuse become private-use placeholders (not
    otherwise in the text); returns the text and placeholder -> character. References in
    CDATA sections and comments are left alone."""
    if "&#" not in text or _MAY_PROTECT.search(text) is None:
        return text, {}  # the common case: nothing to protect, nothing more to read
    pieces: list[str] = []  # outside sections, inside, outside, ... inside, outside
    done = 0
    for start, end in _sections(text):
        pieces += (text[done:start], text[start:end])
        done = end
    pieces.append(text[done:])
    outside = pieces[::2]
    found: dict[str, None] = {}  # the references that may need it, first seen first
    count = 0
    for piece in outside:
        matches = _MAY_PROTECT.findall(piece)
        count += len(matches)
        found.update(dict.fromkeys(matches))
    refs: dict[int, str] = {}  # code -> placeholder, in the order the codes are first seen
    swaps: dict[str, str] = {}  # reference -> placeholder
    free = _unused_private_use(text)
    for ref in found:
        digits = ref[2:-1]
        if len(digits) > 7:  # 1 to 7 decimal digits, or x and 1 to 6 hex digits
            continue
        code = int(digits[1:], 16) if digits[0] == "x" else int(digits)
        if not _invalid_char(code):
            continue
        if code not in refs:
            placeholder = next(free, None)
            if placeholder is None:
                continue  # the parser refuses it: nothing is lost
            refs[code] = placeholder
        swaps[ref] = refs[code]
    if not swaps:
        return text, {}
    # str.replace for each reference reads the text at C speed; a callback for each one found
    # costs about what a thousand characters read does: whichever is less
    replace = len(swaps) * sum(map(len, outside)) <= count * 1000
    for index in range(0, len(pieces), 2):
        # a reference ends at its ';' and holds no '&': every occurrence of it is one
        if replace:
            for ref, placeholder in swaps.items():
                pieces[index] = pieces[index].replace(ref, placeholder)
        else:
            pieces[index] = _MAY_PROTECT.sub(lambda m: swaps.get(m[0], m[0]), pieces[index])
    return "".join(pieces), {ord(p): chr(code) for code, p in refs.items()}


class _Scope:
    """Namespace prefixes in scope: an element's own declarations over its parent's scope.
    Shared by the elements that declare nothing, never changed: memory is linear in the body
    (a lookup walks up at most MAX_DEPTH scopes)."""

    __slots__ = ("declared", "parent")

    def __init__(self, declared: dict[str, str], parent: _Scope | None) -> None:
        self.declared = declared
        self.parent = parent

    def uri(self, prefix: str) -> str | None:
        scope: _Scope | None = self
        while scope is not None:
            uri = scope.declared.get(prefix)
            if uri is not None:
                return uri
            scope = scope.parent
        return None


class _Node:
    __slots__ = ("attrib", "children", "mixed", "scope", "tag", "texts")

    def __init__(self, tag: str, attrib: dict[str, str], scope: _Scope) -> None:
        self.tag = tag
        self.attrib = attrib
        self.children: list[_Node] = []
        self.texts: list[str] = []
        self.mixed = False  # a comment inside
        self.scope = scope  # namespace prefixes in scope


class _RootEnd(Exception):
    """Raised at the root's end tag: the reader reads one node more, never the rest."""


class _Target:
    """Builds a light tree; refuses processing instructions and depth beyond MAX_DEPTH."""

    def __init__(self) -> None:
        self.stack: list[_Node] = []
        self.root: _Node | None = None
        self.scopes: list[_Scope] = [_Scope({"": ""}, None)]
        self.pending: dict[str, str] = {}
        self.position: Callable[[], int] = lambda: 0  # the parser's current byte index
        self.root_start = 0

    def start_ns(self, prefix: str, uri: str) -> None:
        self.pending[prefix or ""] = uri

    def end_ns(self, prefix: str) -> None:
        pass

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        if len(self.stack) >= MAX_DEPTH:
            raise XmlBindError(f"The XML is nested deeper than {MAX_DEPTH} levels")
        scope = self.scopes[-1]
        if self.pending:
            scope = _Scope(self.pending, scope)
            self.pending = {}
        self.scopes.append(scope)
        node = _Node(tag, attrib, scope)
        if self.stack:
            self.stack[-1].children.append(node)
        else:
            self.root = node
            self.root_start = self.position()
        self.stack.append(node)

    def end(self, tag: str) -> None:
        self.stack.pop()
        self.scopes.pop()
        if not self.stack:
            raise _RootEnd(self.root_start, self.position())

    def data(self, text: str) -> None:
        if self.stack:
            self.stack[-1].texts.append(text)

    def comment(self, text: str) -> None:
        if self.stack:
            self.stack[-1].mixed = True

    def pi(self, target: str, data: str) -> None:
        raise XmlBindError("The XML holds a processing instruction; none is read")

    def close(self) -> _Node | None:
        return self.root


_QUOTE = re.compile(b"[\"']")


def _tag_end(data: bytes, pos: int) -> int:
    """The index of a well-formed tag's closing '>' (the first outside an attribute value).
    One step per attribute value, each searched for at C speed."""
    while True:
        close = data.find(b">", pos)
        if close == -1:  # pragma: no cover - the parser saw the whole tag
            return len(data)
        quote = _QUOTE.search(data, pos, close)
        if quote is None:
            return close
        pos = data.find(quote[0], quote.end())
        if pos == -1:  # pragma: no cover - the parser saw the whole tag
            return len(data)
        pos += 1


def _check_after_root(data: bytes, root_start: int, root_end: int, *, whole: bool) -> None:
    """After the root's end tag the reader reads one node: whitespace, a comment or nothing
    is fine (what follows it is never read); text, an element or a PI is an error.
    root_start, root_end: the parser's byte index at the root's start and end events; whole:
    data is the whole body, not the part before a byte that does not decode."""
    pos = _tag_end(data, root_start)
    if data[pos - 1 : pos] != b"/":  # not an empty-element tag: root_end is at its end tag
        pos = _tag_end(data, root_end)
    rest = data[pos + 1 : pos + 1 + 4]
    if (not rest and whole) or (rest and rest[:1] in b" \t\r\n"):
        return
    if rest == b"<!--":
        close = data.find(b"-->", pos + 5)
        if close != -1 and b"--" not in data[pos + 5 : close]:
            return
    raise XmlBindError("The XML has content after the root element")


def _shown(tag: str) -> str:
    """An element's name for a message: only when it is one of ours in another case or
    namespace (the usual mistake); anything else is not echoed."""
    local = tag.rpartition("}")[2]
    if local.lower() not in _OUR_NAMES:
        return "an element of another name"
    return f"<{local}> in a namespace" if tag.startswith("{") else f"<{local}>"


def _nil(node: _Node, name: str) -> bool:
    """XmlConvert.ToBoolean of xsi:nil: true/1, false/0 (whitespace around), else an error."""
    value = next((node.attrib[a] for a in _NIL_ATTRS if a in node.attrib), None)
    if value is None:
        return False
    flag = value.strip(" \t\r\n")
    if flag in ("true", "1"):
        return True
    if flag in ("false", "0"):
        return False
    raise XmlBindError(f"<{name}> has an xsi:nil that is not true, false, 1 or 0")


def _check_type(node: _Node, type_name: str) -> None:
    """GetXsiType on an element read as a class: the QName must name the class."""
    value = next((node.attrib[a] for a in _TYPE_ATTRS if a in node.attrib), None)
    if value is None:
        return
    prefix, _, local = value.rpartition(":")
    uri = node.scope.uri(prefix)
    if uri is None:
        raise XmlBindError(f"<{type_name}> has an xsi:type with an undeclared prefix")
    if (uri, local) != ("", type_name):
        raise XmlBindError(f"<{type_name}> has an xsi:type that is not {type_name}")


class _Binder:
    def __init__(self, restore: dict[int, str]) -> None:
        self.restore = restore
        self.repeated: list[str] = []
        self.unknown: list[str] = []
        self.lines = 0

    def scalar(self, node: _Node, name: str) -> str:
        """ReadElementString as .NET Framework reads it: text and CDATA only."""
        if node.children:
            raise XmlBindError(f"<{name}> must hold text, not elements")
        if node.mixed:
            raise XmlBindError(f"<{name}> must hold text, not comments")
        text = "".join(node.texts)
        if self.restore:
            text = text.translate(self.restore)
            text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
        return text

    def integer(self, node: _Node, name: str) -> int:
        text = self.scalar(node, name)
        value = parse_int_text(text)
        if value is None:
            shown = "an empty element" if not text else quote_number(text)
            raise XmlBindError(f"<{name}> must be a whole number (Int32), got {shown}")
        if not INT32_MIN <= value <= INT32_MAX:
            raise XmlBindError(f"<{name}> is outside the Int32 range")
        return value

    def skipped(self, node: _Node, known: bool, where: str) -> None:
        if known:
            self.repeated.append(f"{where}{node.tag}")
        elif len(self.unknown) < 5:
            self.unknown.append(_shown(node.tag))
        else:
            self.unknown.append("")

    def service(self, node: _Node) -> dict[str, Any] | None:
        _check_type(node, "ServicesInfo")
        if _nil(node, "ServicesInfo"):
            return None
        line: dict[str, Any] = {}
        seen: set[str] = set()
        for child in node.children:
            if child.tag not in SERVICE_FIELDS or child.tag in seen:
                self.skipped(child, child.tag in seen, "services[].")
                continue
            seen.add(child.tag)
            canon = SERVICE_FIELDS[child.tag]
            if child.tag in _NULLABLE_LINE and _nil(child, child.tag):
                line[canon] = None
            elif canon in SERVICE_INT_FIELDS:
                line[canon] = self.integer(child, child.tag)
            else:
                line[canon] = self.scalar(child, child.tag)
        return line

    def services(self, node: _Node, lines: list[dict[str, Any] | None]) -> None:
        if _nil(node, "services"):
            return
        for child in node.children:
            if child.tag != "ServicesInfo":
                self.skipped(child, False, "services.")
                continue
            if len(lines) > MAX_SERVICE_LINES:
                return  # never bind more than the limit lets through (limits.check refuses)
            lines.append(self.service(child))

    def root(self, root: _Node) -> QCareDto | None:
        if root.tag != "QCareDto":
            tag = root.tag
            hint = " (in no namespace)" if tag.startswith("{") else ""
            raise XmlBindError(f"The root element must be <QCareDto>{hint}, not {_shown(tag)}")
        _check_type(root, "QCareDto")
        if _nil(root, "QCareDto"):
            return None
        fields: dict[str, Any] = {}
        lines: list[dict[str, Any] | None] = []
        for child in root.children:
            tag = child.tag
            if tag == "services":
                self.services(child, lines)
                continue
            if tag not in DTO_FIELDS or tag in fields:
                self.skipped(child, tag in DTO_FIELDS, "")
                continue
            if tag in _NULLABLE and _nil(child, tag):
                fields[tag] = None
            elif tag == "studyDate":
                text = self.scalar(child, tag)
                value = xsd_datetime(text)
                if value is None:
                    raise XmlBindError(f"<studyDate> {quote_date(text)} is not an xsd:dateTime")
                fields[tag] = value
            else:
                fields[tag] = self.scalar(child, tag)
        data = {DTO_FIELDS[tag]: value for tag, value in fields.items()}
        data["services"] = lines
        return QCareDto(**data)

    def warnings(self) -> list[str]:
        out = []
        if self.repeated:
            names = ", ".join(sorted(set(self.repeated)))
            out.append(f"XML: repeated elements were ignored, the first one was bound ({names})")
        if self.unknown:
            shown = ", ".join(sorted({u for u in self.unknown if u}))
            out.append(f"XML: {len(self.unknown)} unknown element(s) were ignored ({shown})")
        return out


def bind_xml(body: bytes, charset: str | None) -> BindResult:
    """Any error nulls the whole model under the parameter's own key (x06, x12)."""
    result = BindResult(None)
    try:
        try:
            text, undecodable = decode_xml(body, charset), None
        except BodyDecodeError as exc:
            if exc.valid_prefix is None:
                raise
            text, undecodable = exc.valid_prefix, exc  # an error if the reader gets there
        codec, bom = xml_encoding(body)
        rest = _strip_declaration(text, codec)
        if undecodable is None and _NO_ROOT.fullmatch(rest):
            # the reference binds a null model when something was read before the end
            if len(rest) < len(text) or "<" in rest or (bom and rest):
                return result
            raise XmlBindError("The XML has no root element")
        text = rest
        if text.count("<") + text.count("=") > MAX_XML_MARKUP:  # 350,000 attributes: 179 MB
            raise XmlBindError(f"The XML holds more than {MAX_XML_MARKUP} tags and attributes")
        text, restore = _protect_char_refs(text)
        target = _Target()
        parser = DefusedXMLParser(
            target=target, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
        if "\x00" in text:
            raise XmlBindError("The XML holds a NUL character")
        data = text.encode()
        expat = parser.parser
        target.position = lambda: int(expat.CurrentByteIndex)
        try:
            parser.feed(data)
            parser.close()
            raise XmlBindError("The XML has no root element")  # pragma: no cover (expat)
        except _RootEnd as end:
            _check_after_root(data, *end.args, whole=undecodable is None)
        except ParseError:
            if undecodable is not None:
                raise undecodable from None
            raise
        root = target.root
        assert root is not None
        binder = _Binder(restore)
        result.model = binder.root(root)
        result.warnings.extend(binder.warnings())
    except (BodyDecodeError, XmlBindError) as exc:
        result.add("", str(exc))
    except DefusedXmlException:
        result.add("", "DTDs and entity declarations are not allowed in the XML")
    except ParseError as exc:
        result.add("", f"The XML is not well-formed: {exc}")
    except RecursionError:
        result.add("", f"The XML is nested deeper than {MAX_DEPTH} levels")
    return result
