"""Body bytes to text as the old readers decoded them (WIRE.md §2, §4)."""

from __future__ import annotations

import codecs


class BodyDecodeError(ValueError):
    pass


def decode_body(body: bytes, charset: str | None) -> str:
    """UTF-8 (strict) or UTF-16; a BOM overrides the header; other charsets mean UTF-8."""
    if body.startswith(codecs.BOM_UTF8):
        return _decode(body[3:], "utf-8")
    if body.startswith(codecs.BOM_UTF16_LE):
        return _decode(body[2:], "utf-16-le")
    if body.startswith(codecs.BOM_UTF16_BE):
        return _decode(body[2:], "utf-16-be")
    if charset in ("utf-16", "utf-16le", "unicode"):
        return _decode(body, "utf-16-le")
    if charset == "utf-16be":
        return _decode(body, "utf-16-be")
    return _decode(body, "utf-8")


def _decode(data: bytes, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        bad = data[exc.start : exc.start + 1].hex()
        label = "UTF-8" if encoding == "utf-8" else "UTF-16"
        raise BodyDecodeError(
            f"The body is not valid {label} text (byte 0x{bad} at offset {exc.start}); "
            "send UTF-8 or UTF-16"
        ) from None
