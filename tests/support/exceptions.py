"""The documented divergences from the reference server (issue 13): where we bind a body
differently from the old endpoint on purpose, or where the reference is not the old server.

Each entry is `(id, description, predicate, reason)`; the predicate sees the body, the
Content-Type header and both outcomes (`tests.support.reference.Outcome`) and says whether
this divergence is the documented one. Keep predicates narrow: the body must show the
cause (a comment inside a string element, nesting past the limit, ...) AND the outcomes
must differ exactly as documented. `reason` is "Mono artefact" (the reference runs on
Mono, see ../shared/oracle/README.md) or "deliberate: ..." (SPEC, or the hardening limits
in qcare_ingest/limits.py).

To add one: append a `Documented(...)` to REGISTRY with an `example` body that shows it;
tests/integration/test_reference.py checks every example against the running reference.

    python -m tests.support.exceptions --markdown    # the README's table
"""

from __future__ import annotations

import argparse
import codecs
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from qcare_ingest import limits
from qcare_ingest.binding import form as form_binding
from qcare_ingest.binding import select_format
from qcare_ingest.binding.echo import safe_key
from qcare_ingest.binding.netdate import parse_invariant
from qcare_ingest.binding.text import BodyDecodeError, decode_body
from qcare_ingest.dto import DTO_FIELDS, SERVICE_FIELDS

# the Outcome type lives in tests/support/reference.py; this module only reads its fields
# (status, error_keys, model, accepted), so a tool can load it by file path beside a binder
# from another checkout.
Outcome = Any
Predicate = Callable[[bytes, str | None, Outcome, Outcome], bool]

# C# names (XML elements): every member that binds as a string
STRING_MEMBERS = [name for name in DTO_FIELDS if name not in ("studyDate", "services")]
STRING_MEMBERS += [name for name in SERVICE_FIELDS if name not in ("NoOfImages", "WarningTime")]
_MEMBER = "|".join(STRING_MEMBERS)
# every member XmlSerializer reads as element text (ReadElementString)
_SIMPLE = "|".join([*STRING_MEMBERS, "studyDate", "NoOfImages", "WarningTime"])
FORM_MAX_KEYS: int = getattr(form_binding, "MAX_KEYS", 1000)


@dataclass(frozen=True)
class Documented:
    id: str
    description: str
    predicate: Predicate
    reason: str  # "Mono artefact" or "deliberate: ..."
    example: bytes  # a body that shows it (checked against the reference by the test)
    content_type: str
    reference: str  # what the reference answers for the example, in words
    ours: str  # what we answer

    def __post_init__(self) -> None:
        assert self.reason == "Mono artefact" or self.reason.startswith("deliberate: "), self.id

    def matches(
        self, body: bytes, content_type: str | None, theirs: Outcome, mine: Outcome
    ) -> bool:
        try:
            return bool(self.predicate(body, content_type, theirs, mine))
        except (LookupError, TypeError, ValueError, AttributeError):
            return False  # a model or body a predicate cannot read is not its divergence


# --- helpers for predicates


def media(content_type: str | None) -> str:
    """The media type, lower case, parameters dropped ('' when absent)."""
    return (content_type or "").partition(";")[0].strip().lower()


def is_xml(content_type: str | None) -> bool:
    return media(content_type) in ("application/xml", "text/xml")


def is_json(content_type: str | None) -> bool:
    return media(content_type) in (
        "application/json", "text/json", "text/html", "*/*", "text/*", "application/*",
    )  # fmt: skip


def is_form(content_type: str | None) -> bool:
    return media(content_type) == "application/x-www-form-urlencoded"


def text(body: bytes) -> str:
    """The body as text, whatever its encoding (good enough to look for markup)."""
    for bom, codec in (
        (codecs.BOM_UTF32_LE, "utf-32-le"),
        (codecs.BOM_UTF32_BE, "utf-32-be"),
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if body.startswith(bom):
            return body[len(bom) :].decode(codec, "replace")
    if body[:1] == b"\x00":
        return body.decode("utf-16-be", "replace")
    if body[1:2] == b"\x00":
        return body.decode("utf-16-le", "replace")
    return body.decode("utf-8", "replace")


def refused_whole(outcome: Outcome) -> bool:
    """Refused with the parameter's own key only ('' : the body as a whole)."""
    return outcome.status is None and outcome.error_keys == frozenset({""})


def json_nesting(body: bytes) -> int:
    """The deepest bracket nesting outside strings."""
    depth = deepest = 0
    in_string: int | None = None
    escaped = False
    for byte in body:
        if in_string is not None:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == in_string:
                in_string = None
        elif byte in (0x22, 0x27):  # " or '
            in_string = byte
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def json_parts(body: bytes) -> int:
    """Objects, arrays and values as limits.MAX_JSON_PARTS counts them: brackets and commas
    outside strings."""
    count = 0
    in_string: int | None = None
    escaped = False
    for byte in body:
        if in_string is not None:
            if escaped:
                escaped = False
            elif byte == 0x5C:
                escaped = True
            elif byte == in_string:
                in_string = None
        elif byte in (0x22, 0x27):
            in_string = byte
        elif byte in (0x5B, 0x7B, 0x2C):
            count += 1
    return count


def _member_value(model: dict[str, Any], key: str) -> Any:
    """The value a ModelState key of ours names in a reference model, or KeyError."""
    m = re.fullmatch(r"services\[(\d+)\]\.(\w+)", key)
    if m:
        item = model["services"][int(m[1])]
        name = {k.lower(): k for k in item}[m[2].lower()]
        return limits.SERVICE_LIMITS[name], item[name]
    name = {k.lower(): k for k in model}[key.lower()]
    return limits.DTO_LIMITS[name], model[name]


def _over_limits(theirs: Outcome, mine: Outcome, *, services: bool) -> bool:
    """The reference bound it and every key we refuse names a value over our limits (with
    `services` among them when `services`, else a text member only)."""
    if not theirs.accepted or mine.status is not None or not mine.error_keys:
        return False
    if services != ("services" in mine.error_keys):
        return False
    for key in mine.error_keys:
        if key == "services":
            if len(theirs.model["services"] or ()) <= limits.MAX_SERVICE_LINES:
                return False
            continue
        limit, value = _member_value(theirs.model, key)
        if value is None or limit.problem(value) is None:
            return False
    return True


# a date that depends on the day it arrives: a time alone (.NET: today), a day without a year
_NOT_REPEATABLE_DATE = re.compile(
    r"""\s*(?:
        \d{1,2}(?::\d{1,2}){1,2}(?:\.\d+)?\s*(?:[AaPp][Mm])?   # 15:51, 3:51 PM, 15:51:31.5
      | \d{1,2}\s*[AaPp][Mm]                                 # 3 PM
      | [A-Za-z]{3,9}\.?\s+\d{1,2}                            # Oct 26
      | \d{1,2}\s+[A-Za-z]{3,9}                               # 26 Oct
      | \d{1,2}[-/.]\d{1,2}                                  # 10/26, 01-10
    )\s*""",
    re.VERBOSE,
)
# xsd: a time alone, a month or a day without a year (binding/xsdtime.py)
_XSD_NOT_REPEATABLE = re.compile(
    r"\s*(?:\d{2}:\d{2}:\d{2}(?:\.\d+)?|--\d{2}(?:--)?|---\d{2})(?:[Zz]|[+-]\d{2}:\d{2})?\s*"
)
_FORM_DATE = re.compile(rb"(?:^|&)studydate=([^&]*)", re.IGNORECASE)
_GAP = (
    r"\s*(?:(?:/\*(?:[^*]|\*(?!/))*\*/|//[^\n]*\n)\s*)*"  # blanks and comments: Json.NET skips them
)
_JSON_STRING = r""""((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)'"""
_JSON_MEMBER = re.compile(
    rf"(?:{_JSON_STRING}|([A-Za-z_$][\w$]*)){_GAP}:{_GAP}(?:{_JSON_STRING})", re.DOTALL
)


def _unescape(text: str) -> str:
    text = re.sub(r"\\u([0-9A-Fa-f]{4})", lambda m: chr(int(m[1], 16)), text)
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t", "r": "\r"}.get(m[1], m[1]), text)


def _json_dates(doc: str) -> list[str]:
    """Every string value of a member named studyDate (any case, escapes decoded)."""
    out = []
    for m in _JSON_MEMBER.finditer(doc):
        name = _unescape(m[1] if m[1] is not None else m[2] if m[2] is not None else m[3])
        if name.lower() == "studydate":
            out.append(_unescape(m[4] if m[4] is not None else m[5]))
    return out


def _study_dates(body: bytes, content_type: str | None) -> list[str]:
    """The studyDate texts that are read from a form (the first value only) or JSON body
    (every string value: each one is read, and each bad one is an error), roughly decoded."""
    if is_form(content_type):
        m = _FORM_DATE.search(body)
        return [] if m is None else [unquote_plus(m[1].decode("utf-8", "replace"))]
    if is_json(content_type):
        return _json_dates(text(body))
    return []


_XML_DATE = re.compile(r"<studyDate(?:\s[^>/]*)?>([^<]*)</studyDate>")


def _refused_date(shape: Callable[[str], object]) -> Predicate:
    """We refuse a studyDate of this shape that the reference bound: our errors are the
    reference's plus studyDate (in whatever case the body wrote it), nothing else; in XML,
    all or nothing, the body as a whole where the reference bound it."""

    def predicate(body: bytes, ct: str | None, theirs: Outcome, mine: Outcome) -> bool:
        if is_xml(ct):
            m = _XML_DATE.search(text(body))
            return theirs.accepted and refused_whole(mine) and m is not None and bool(shape(m[1]))
        if theirs.status is not None or mine.status is not None or not mine.error_keys:
            return False
        if theirs.model is None and not theirs.error_keys:
            return False  # a null model: nothing was bound
        differ = theirs.error_keys ^ mine.error_keys
        if not (mine.error_keys - theirs.error_keys):
            return False
        if any(key.lower() != "studydate" for key in differ):
            return False
        return any(shape(value) for value in _study_dates(body, ct))

    return predicate


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _storable(value: Any) -> Any:
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_storable(v) for v in value]
    if isinstance(value, dict):
        return {k: _storable(v) for k, v in value.items()}
    return value


def _stored_as_fffd(theirs: Outcome, mine: Outcome) -> bool:
    if not (theirs.accepted and mine.accepted):
        return False
    cleaned = {
        k: (v if k in ("msg_id", "accessionNo") else _storable(v)) for k, v in theirs.model.items()
    }
    return cleaned == mine.model and cleaned != theirs.model


_INVALID_XML_CHARS = set(range(0x20)) - {0x9, 0xA, 0xD} | set(range(0xD800, 0xE000))
_INVALID_XML_CHARS |= {0xFFFE, 0xFFFF}


def _invalid_char_refs(doc: str) -> bool:
    for m in re.finditer(r"&#(x[0-9A-Fa-f]+|[0-9]+);", doc):
        ref = m[1]
        code = int(ref[1:], 16) if ref[0] in "xX" else int(ref)
        if code in _INVALID_XML_CHARS:
            return True
    return False


def _undecodable(body: bytes, content_type: str | None) -> bool:
    try:
        decode_body(body, select_format(content_type)[1])
    except BodyDecodeError:
        return True
    return False


def _segments(body: bytes) -> int:
    return sum(1 for part in body.split(b"&") if part)


# --- the registry

REGISTRY: list[Documented] = [
    Documented(
        "mono-xml-child-in-string",
        "XML: a child element at the start of a string member's content",
        lambda body, ct, theirs, mine: (
            is_xml(ct)
            and theirs.accepted
            and refused_whole(mine)
            and re.search(rf"<({_MEMBER})(\s[^>]*[^/>])?>\s*<[A-Za-z_]", text(body)) is not None
        ),
        "Mono artefact",
        b"<QCareDto><name><b>x</b></name></QCareDto>",
        "application/xml",
        "binds name='x'",
        "refuses ['']: .NET's ReadElementString throws on a child element",
    ),
    Documented(
        "mono-xml-comment-in-string",
        "XML: a comment after the text of a simple member (string, int or date)",
        lambda body, ct, theirs, mine: (
            is_xml(ct)
            and theirs.accepted
            and refused_whole(mine)
            and re.search(rf"<({_SIMPLE})(\s[^>/]*)?>[^<]*<!--", text(body)) is not None
        ),
        "Mono artefact",
        b"<QCareDto><name>a<!--c--></name></QCareDto>",
        "application/xml",
        "binds name='a'",
        "refuses ['']: .NET's ReadElementString stops at the comment and throws "
        "(Xml_UnexpectedNodeInSimpleContent); Mono reads past it",
    ),
    Documented(
        "mono-xml-invalid-char-ref",
        "XML: a character reference to a character XML 1.0 forbids (`&#0;`, `&#1;`, ...)",
        lambda body, ct, theirs, mine: (
            is_xml(ct)
            and theirs.accepted
            and refused_whole(mine)
            and _invalid_char_refs(text(body))
        ),
        "Mono artefact",
        b"<QCareDto><name>&#0;</name></QCareDto>",
        "application/xml",
        "binds name='\\x00'",
        "refuses ['']: .NET's reader checks characters",
    ),
    Documented(
        "limit-json-parts",
        f"JSON with more than {limits.MAX_JSON_PARTS:,} objects, arrays and values",
        lambda body, ct, theirs, mine: (
            is_json(ct) and refused_whole(mine) and json_parts(body) > limits.MAX_JSON_PARTS
        ),
        f"deliberate: limits.MAX_JSON_PARTS ({limits.MAX_JSON_PARTS:,}) bounds what parsing builds",
        b'{"extra":[' + b",".join([b"0"] * 20_010) + b'],"name":"a"}',
        "application/json",
        "binds name='a'",
        "refuses ['']",
    ),
    Documented(
        "limit-xml-markup",
        f"XML with more than {limits.MAX_XML_MARKUP:,} tags and attributes",
        lambda body, ct, theirs, mine: (
            is_xml(ct)
            and refused_whole(mine)
            and (lambda doc: doc.count("<") + doc.count("=") > limits.MAX_XML_MARKUP)(text(body))
        ),
        f"deliberate: limits.MAX_XML_MARKUP ({limits.MAX_XML_MARKUP:,}) bounds what parsing builds",
        b"<QCareDto>" + b"<x/>" * 20_010 + b"<name>a</name></QCareDto>",
        "application/xml",
        "binds name='a'",
        "refuses ['']",
    ),
    Documented(
        "limit-text-length",
        "a string member longer than its limit (characters or UTF-8 bytes), or an identifier "
        "(msg_id, accessionNo) with control characters",
        lambda body, ct, theirs, mine: _over_limits(theirs, mine, services=False),
        "deliberate: field lengths and identifiers (limits.DTO_LIMITS, SERVICE_LIMITS)",
        b'{"name":"' + b"x" * 201 + b'"}',
        "application/json",
        "binds the 201 characters",
        "refuses ['name']",
    ),
    Documented(
        "limit-services",
        f"more than {limits.MAX_SERVICE_LINES} service lines (and maybe members over their limits)",
        lambda body, ct, theirs, mine: _over_limits(theirs, mine, services=True),
        f"deliberate: limits.MAX_SERVICE_LINES ({limits.MAX_SERVICE_LINES})",
        b'{"services":[' + b",".join([b"{}"] * 101) + b"]}",
        "application/json",
        "binds 101 lines",
        "refuses ['services']",
    ),
    Documented(
        "storable-text",
        "NUL or an unpaired UTF-16 surrogate in a string member (not msg_id/accessionNo)",
        lambda body, ct, theirs, mine: _stored_as_fffd(theirs, mine),
        "deliberate: stored as U+FFFD with a warning (limits.make_storable; PostgreSQL text)",
        b'{"name":"a\\u0000b"}',
        "application/json",
        "binds name='a\\x00b'",
        "binds name='a\\ufffdb'",
    ),
    Documented(
        "limit-form-keys",
        f"a form post with more than {FORM_MAX_KEYS:,} keys",
        lambda body, ct, theirs, mine: (
            is_form(ct)
            and theirs.status is None
            and refused_whole(mine)
            and _segments(body) > FORM_MAX_KEYS
        ),
        f"deliberate: form keys are bounded (SPEC §5; binding/form.py MAX_KEYS, {FORM_MAX_KEYS:,})",
        b"&".join([b"k%d=v" % i for i in range(FORM_MAX_KEYS)] + [b"name=a"]),
        "application/x-www-form-urlencoded",
        "binds name='a'",
        "refuses ['']",
    ),
    Documented(
        "date-not-repeatable",
        "studyDate as a time without a date, or a day without a year (JSON, form, XML); any "
        "other errors the same",
        _refused_date(
            lambda value: (
                _NOT_REPEATABLE_DATE.fullmatch(value) or _XSD_NOT_REPEATABLE.fullmatch(value)
            )
        ),
        "deliberate: .NET's DateTime.Parse fills in today's date or this year, so the same "
        "message would mean another day tomorrow (binding/netdate.py REFUSED, xsdtime.py)",
        b"studyDate=15%3A51",
        "application/x-www-form-urlencoded",
        "binds studyDate = today 15:51",
        "refuses ['studyDate']",
    ),
    Documented(
        "date-outside-grammar",
        "studyDate in a shape netdate does not read (docs/WIRE.md: the shapes read) although "
        ".NET's DateTime.Parse reads it (JSON, form); any other errors the same",
        _refused_date(lambda value: parse_invariant(value) is None),
        "deliberate: DateTime.Parse reads hundreds of shapes in culture-dependent ways; we read "
        "the ones clients write and refuse the rest with a 400 on studyDate, never guessing a "
        "value (no value different from the reference's in the probes)",
        b'{"studyDate":"9 08 2000"}',
        "application/json",
        "binds 2000-09-08",
        "refuses ['studyDate']",
    ),
    Documented(
        "undecodable-body",
        "JSON that is not valid text in its encoding: both refuse; past its first buffer the "
        "reference decodes as it reads and keys the error at the member it was reading",
        lambda body, ct, theirs, mine: (
            is_json(ct)
            and theirs.status is None
            and bool(theirs.error_keys)
            and refused_whole(mine)
            and _undecodable(body, ct)
        ),
        "deliberate: the body is decoded before it is parsed, so bytes that are not text are "
        "refused as a whole with the offset of the first bad byte, wherever they are",
        b'{"note":"' + b"x" * 4000 + b'Zo\xeb"}',
        "application/json",
        "refuses ['note']",
        "refuses [''] (not valid UTF-8 at offset 4011)",
    ),
    Documented(
        "masked-member-names",
        "a ModelState key naming a member the client made up with characters other than "
        "letters, `_` and `$` (or over 64 of them), or a key over 1,000 characters",
        lambda body, ct, theirs, mine: (
            theirs.status is None
            and mine.status is None
            and theirs.error_keys != mine.error_keys
            and frozenset(safe_key(key) for key in theirs.error_keys) == mine.error_keys
        ),
        "deliberate: Json.NET keys an error at the JSON path, so a client's text would be "
        "echoed in the 400 and the log (SPEC: no personal data); it is shown as `<member>`",
        b'{"msg_id":"m-1","CHAN TAI MAN A123456(3)":[x]}',
        "application/json",
        "refuses ['CHAN TAI MAN A123456(3)']",
        "refuses ['<member>']",
    ),
]

_IDS = [entry.id for entry in REGISTRY]
assert len(set(_IDS)) == len(_IDS), "duplicate registry ids"


def match(
    body: bytes, content_type: str | None, theirs: Outcome, mine: Outcome
) -> Documented | None:
    """The registry entry that documents this divergence, or None."""
    for entry in REGISTRY:
        if entry.matches(body, content_type, theirs, mine):
            return entry
    return None


def _cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")


def _body_cell(entry: Documented, limit: int = 70) -> str:
    shown = repr(entry.example)[2:-1]
    if len(shown) > limit:
        shown = f"{shown[: limit - 25]}…{shown[-20:]} ({len(entry.example):,} bytes)"
    return f"`{_cell(shown)}` ({entry.content_type})"


def markdown() -> str:
    """The registry as the README's table."""
    lines = [
        "| id | body | reference | ours | why |",
        "|---|---|---|---|---|",
    ]
    for e in REGISTRY:
        lines.append(
            f"| `{e.id}` | {_body_cell(e)} | {_cell(e.reference)} | {_cell(e.ours)} | "
            f"{_cell(e.reason)}: {_cell(e.description)} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print the README table")
    args = parser.parse_args(argv)
    if args.markdown:
        sys.stdout.write(markdown())
    else:
        for e in REGISTRY:
            print(f"{e.id}: {e.description} [{e.reason}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
