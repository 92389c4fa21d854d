"""Content-Type dispatch, as Web API's formatter selection did (WIRE.md §1)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..textsafe import safe_text


class Format(enum.Enum):
    JSON = "json"
    XML = "xml"
    FORM = "form"


_FORMATS = {
    "application/json": Format.JSON,
    "text/json": Format.JSON,
    "text/html": Format.JSON,
    # a media range matches the first formatter that supports it: the JSON one
    "*/*": Format.JSON,
    "text/*": Format.JSON,
    "application/*": Format.JSON,
    "application/xml": Format.XML,
    "text/xml": Format.XML,
    "application/x-www-form-urlencoded": Format.FORM,
}


class UnsupportedMediaTypeError(Exception):
    """The request's media type is not one the endpoint reads (415)."""

    def __init__(self, media_type: str | None) -> None:
        if media_type is None:
            message = (
                "The request contains an entity body but no Content-Type header. The inferred "
                "media type 'application/octet-stream' is not supported for this resource."
            )
        else:
            message = (
                f"The request entity's media type '{safe_text(media_type, 100)}' is not supported "
                "for this resource."
            )
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class ContentType:
    media_type: str
    charset: str | None


def parse_content_type(header: str) -> ContentType:
    media, _, params = header.partition(";")
    charset = None
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            charset = value.strip().strip('"').lower() or None
    return ContentType(media.strip().lower(), charset)


def select_format(header: str | None) -> tuple[Format, str | None]:
    """The formatter and charset for a Content-Type header, or UnsupportedMediaTypeError."""
    if header is None:
        raise UnsupportedMediaTypeError(None)
    ctype = parse_content_type(header)
    fmt = _FORMATS.get(ctype.media_type)
    if fmt is None:
        raise UnsupportedMediaTypeError(ctype.media_type)
    return fmt, ctype.charset
