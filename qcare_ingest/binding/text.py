"""Body bytes to text as the old readers decoded them (WIRE.md §2, §4)."""

from __future__ import annotations

import codecs

_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_UTF16_CHARSETS = {
    "utf-16": "utf-16-le",
    "utf-16le": "utf-16-le",
    "unicode": "utf-16-le",
    "utf-16be": "utf-16-be",
}


class BodyDecodeError(ValueError):
    pass


def body_encoding(body: bytes, charset: str | None) -> tuple[str, int]:
    """(codec, BOM length): a BOM overrides the header; any charset but UTF-16 means UTF-8."""
    for bom, codec in _BOMS:
        if body.startswith(bom):
            return codec, len(bom)
    return _UTF16_CHARSETS.get(charset or "", "utf-8"), 0


def decode_body(body: bytes, charset: str | None) -> str:
    """Strict UTF-8 or UTF-16 text; anything else is a clear error."""
    codec, skip = body_encoding(body, charset)
    data = body[skip:]
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        bad = data[exc.start : exc.start + 1].hex()
        label = "UTF-8" if codec == "utf-8" else "UTF-16"
        raise BodyDecodeError(
            f"The body is not valid {label} text (byte 0x{bad} at offset {exc.start}); "
            "send UTF-8 or UTF-16"
        ) from None
