"""Content-Type dispatch, as Web API's formatter selection did (WIRE.md §1).

The header is parsed the way the reference server's `MediaTypeHeaderValue` does it: a
`type/subtype` of RFC 2616 tokens (whitespace allowed between tokens), then `;`-separated
parameters, each a token name with an optional `=` token or quoted-string value. A header
that does not parse is no header at all (415, "no Content-Type").

The formatter is the first one (JSON, XML, form) with a supported media type that is a subset
of the request's: `*/*`, `text/*` and `application/*` all pick JSON. `application/*+json` or
`application/problem+json` match nothing (415). Parameters never change the choice.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from functools import lru_cache

from ..textsafe import safe_text


class Format(enum.Enum):
    JSON = "json"
    XML = "xml"
    FORM = "form"


# Each formatter's supported media types, in the configured formatter order.
_SUPPORTED: tuple[tuple[Format, tuple[str, ...]], ...] = (
    (Format.JSON, ("application/json", "text/json", "text/html")),
    (Format.XML, ("application/xml", "text/xml")),
    (Format.FORM, ("application/x-www-form-urlencoded",)),
)

# RFC 2616 token characters: any CHAR except CTLs and separators
_SEPARATORS = frozenset('()<>@,;:\\"/[]?={} \t')
_TOKEN_CHARS = frozenset(chr(c) for c in range(33, 127)) - _SEPARATORS


# a media type as registered ones are spelled (`text/plain`, `application/vnd.ms-excel`) is
# quoted back as Web API did; a "type" like `CHAN.TAI.MAN/A123456` is the client's own text
_SHOWN_TYPE = re.compile(r"[A-Za-z.+*-]{1,40}/[A-Za-z.+*-]{1,60}")


class UnsupportedMediaTypeError(Exception):
    """The request's media type is not one the endpoint reads (415)."""

    def __init__(self, media_type: str | None) -> None:
        if media_type is None:
            message = (
                "The request contains an entity body but no Content-Type header. The inferred "
                "media type 'application/octet-stream' is not supported for this resource."
            )
        elif _SHOWN_TYPE.fullmatch(media_type):
            message = (
                f"The request entity's media type '{safe_text(media_type, 100)}' is not supported "
                "for this resource."
            )
        else:  # the client's text, not a type anyone registers: not echoed (SPEC §5)
            message = "The request entity's media type is not supported for this resource."
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class ContentType:
    media_type: str  # as sent, without whitespace: compare it case-insensitively
    charset: str | None  # the first charset parameter's value as sent (quotes kept), or None


class _Lexer:
    """The reference server's header lexer: tokens, quoted strings and separators."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def scan(self) -> tuple[str, str]:
        """(kind, text): kind is 'end', 'token', 'quoted', one separator character, or 'error'."""
        text, n = self.text, len(self.text)
        while self.pos < n and text[self.pos] in " \t":
            self.pos += 1
        if self.pos >= n:
            return "end", ""
        start = self.pos
        ch = text[start]
        self.pos += 1
        if ch in "=;/,":
            return ch, ch
        if ch == '"':
            while self.pos < n:
                c = text[self.pos]
                if c == '"':
                    self.pos += 1
                    return "quoted", text[start : self.pos]
                if c == "\\" and self.pos + 1 < n:
                    self.pos += 2
                    continue
                if not " " <= c <= "~":
                    break
                self.pos += 1
            return "error", ""
        if ch in _TOKEN_CHARS:
            while self.pos < n and text[self.pos] in _TOKEN_CHARS:
                self.pos += 1
            return "token", text[start : self.pos]
        return "error", ""


def parse_content_type(header: str) -> ContentType | None:
    """The header as the reference server's MediaTypeHeaderValue.TryParse reads it, or None."""
    lexer = _Lexer(header)
    kind, main = lexer.scan()
    if kind != "token" or lexer.scan()[0] != "/":
        return None
    kind, sub = lexer.scan()
    if kind != "token":
        return None
    charset: str | None = None
    kind, _ = lexer.scan()
    if kind == ";":
        while True:
            kind, name = lexer.scan()
            if kind != "token":
                return None
            value: str | None = None
            kind, _ = lexer.scan()
            if kind == "=":
                kind, value = lexer.scan()
                if kind not in ("token", "quoted"):
                    return None
                kind, _ = lexer.scan()
            if kind not in (";", "end"):
                return None
            if charset is None and name.lower() == "charset":
                charset = value
            if kind == "end":
                break
    elif kind != "end":
        return None
    return ContentType(f"{main}/{sub}", charset)


def _subset(supported: str, requested: str) -> bool:
    """Web API's IsSubsetOf for a parameterless supported type: equal, or inside the range."""
    stype, ssub = supported.split("/")
    rtype, rsub = requested.lower().split("/")
    if rsub == "*":
        return rtype == "*" or rtype == stype
    return rtype == stype and rsub == ssub


def select_format(header: str | None) -> tuple[Format, str | None]:
    """The formatter and charset for a Content-Type header, or UnsupportedMediaTypeError.
    The charset is the parameter's value as sent; only `utf-16` changes how a body is read
    (`text.py`)."""
    found = None if header is None else _dispatch(header)
    if isinstance(found, tuple):
        return found
    raise UnsupportedMediaTypeError(found)


@lru_cache(maxsize=512)  # a client sends the same header every time: parse it once
def _dispatch(header: str) -> tuple[Format, str | None] | str | None:
    """(format, charset), else the media type a 415 names (None: no header Web API reads)."""
    ctype = parse_content_type(header)
    if ctype is None:
        return None
    for fmt, types in _SUPPORTED:
        if any(_subset(supported, ctype.media_type) for supported in types):
            return fmt, ctype.charset
    return ctype.media_type
