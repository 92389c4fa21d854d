"""Body bytes to text as the old readers decoded them (WIRE.md §2, §4).

Both formatters pick their encoding the same way: the Content-Type charset when it is
exactly `utf-16` (any case, unquoted: UTF-16LE), otherwise UTF-8 (`utf-16le`, `unicode`,
`big5`, `latin1`... are all read as UTF-8). What happens next differs:

* JSON (`decode_body`, a StreamReader): a byte order mark (UTF-8, UTF-16 LE/BE, UTF-32 LE/BE)
  overrides the charset; behind a BOM a bad byte is U+FFFD (except a UTF-16LE BOM with
  `charset=utf-16`), otherwise it is an error. An incomplete sequence at the very end is dropped.
* XML (`decode_xml`): the encoding seen in the bytes (a BOM, or `<` followed by a zero byte)
  must be the one the charset names, and decoding is strict; UTF-8 is checked as the reader
  reads it (not inside comments), so the error carries the text before the first bad byte.
"""

from __future__ import annotations

import codecs
import re

_JSON_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE: it starts with the same bytes
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_LABELS = {"utf-8": "UTF-8", "utf-16-le": "UTF-16LE", "utf-16-be": "UTF-16BE"}


class BodyDecodeError(ValueError):
    def __init__(self, message: str, valid_prefix: str | None = None) -> None:
        super().__init__(message)
        # XML in UTF-8 is checked as it is read: the text before the first bad byte
        self.valid_prefix = valid_prefix


def charset_codec(charset: str | None) -> str:
    """The encoding a formatter reads with: UTF-16LE only for `charset=utf-16` itself."""
    return "utf-16-le" if charset is not None and charset.lower() == "utf-16" else "utf-8"


def body_encoding(body: bytes, charset: str | None) -> tuple[str, int]:
    """(codec, BOM length) a JSON body is read with: a BOM overrides the charset."""
    for bom, codec in _JSON_BOMS:
        if body.startswith(bom):
            if codec == "utf-32-le" and charset_codec(charset) == "utf-16-le":
                return "utf-16-le", len(codecs.BOM_UTF16_LE)  # as the reference reads it
            return codec, len(bom)
    return charset_codec(charset), 0


def _strict(data: bytes, codec: str, *, final: bool) -> str:
    decoder = codecs.getincrementaldecoder(codec)("strict")
    try:
        return decoder.decode(data, final=final)
    except UnicodeDecodeError as exc:
        bad = data[exc.start : exc.start + 1].hex()
        label = _LABELS.get(codec, codec.upper())
        raise BodyDecodeError(
            f"The body is not valid {label} text (byte 0x{bad} at offset {exc.start}); "
            "send UTF-8 or UTF-16"
        ) from None


def decode_body(body: bytes, charset: str | None) -> str:
    """A JSON body's text, as a StreamReader with the formatter's encoding reads it."""
    codec, skip = body_encoding(body, charset)
    data = body[skip:]
    if skip and not (codec == "utf-16-le" == charset_codec(charset)):
        # a BOM brings an encoding that replaces bad bytes, unless it is the preamble of the
        # charset's own (UTF-16LE: the UTF-8 one declares none)
        return codecs.getincrementaldecoder(codec)("replace").decode(data, final=False)
    try:
        return data.decode(codec)  # the common case, at C speed: the same text when it decodes
    except UnicodeDecodeError:
        return _strict(data, codec, final=False)  # an unfinished sequence at the end is dropped


def xml_encoding(body: bytes) -> tuple[str, int]:
    """(codec, BOM length) the bytes themselves show, as the XML text reader detects it."""
    if body.startswith(codecs.BOM_UTF16_LE):
        return "utf-16-le", 2
    if body.startswith(codecs.BOM_UTF16_BE):
        return "utf-16-be", 2
    if body.startswith(codecs.BOM_UTF8):
        return "utf-8", 3
    if body.startswith(b"<\x00"):
        return "utf-16-le", 0
    if body.startswith(b"\x00<"):
        return "utf-16-be", 0
    return "utf-8", 0


def decode_xml(body: bytes, charset: str | None) -> str:
    """An XML body's text: its encoding must be the charset's (UTF-16LE only with
    `charset=utf-16`, UTF-8 otherwise), and every byte must decode."""
    expected = charset_codec(charset)
    if body[:2] == b"\xef\xbb" and body[2:3] != b"\xbf":
        raise BodyDecodeError("The body starts with an incomplete UTF-8 byte order mark")
    actual, skip = xml_encoding(body)
    if actual != expected:
        raise BodyDecodeError(
            f"The body is {_LABELS[actual]} but the Content-Type charset says "
            f"{_LABELS[expected]}: send charset=utf-16 with UTF-16LE, nothing else with UTF-8"
        )
    try:
        return _strict(body[skip:], actual, final=True)
    except BodyDecodeError as exc:
        if actual != "utf-8":
            raise  # UTF-16 is converted ahead of the reader: all of it
        # UTF-8 is checked as the reader reads it, and never inside a comment
        text = body[skip:].decode("utf-8", "surrogateescape")
        bad = _first_bad_byte(text)
        if bad is None:
            return _ESCAPED.sub("\ufffd", text)  # only in comments: the reader never sees them
        raise BodyDecodeError(str(exc), _ESCAPED.sub("\ufffd", text[:bad])) from None


_ESCAPED = re.compile("[\udc80-\udcff]")


# what the reader reads through before a bad byte: text, comments (`<!--` to the first `-->`
# after it) and a `<` that opens no comment; possessive, so it keeps no state per step
_READ_THROUGH = re.compile(r"(?:[^<\udc80-\udcff]++|<!--.*?-->|<)*+", re.S)


def _first_bad_byte(text: str) -> int | None:
    """Where the first bad byte (surrogate-escaped) outside a comment is, if any. Linear: up to
    the end of the last `-->` every opener but those overlapping it is closed, so no comment
    is looked for to the end more than once; after it there are no comments."""
    last = text.rfind("-->")
    read = _READ_THROUGH.match(text, 0, last + 3 if last != -1 else 0)
    assert read is not None  # it matches anything, the empty text too
    bad = _ESCAPED.search(text, read.end())
    return None if bad is None else bad.start()
