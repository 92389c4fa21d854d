"""Bind a request body as the old ASP.NET Web API endpoint did (WIRE.md).

`bind()` returns the old server's binding result: a model (or None) plus
ModelState errors keyed by field path ('' is the parameter itself). Turning
that into an HTTP answer is the gateway's job (SPEC §2).
"""

from __future__ import annotations

from ..limits import make_storable
from .echo import safe_key
from .form import bind_form
from .jsonnet import bind_json
from .media import Format, UnsupportedMediaTypeError, parse_content_type, select_format
from .result import BindResult
from .xmlser import bind_xml


def bind(fmt: Format, charset: str | None, body: bytes) -> BindResult:
    """Bind a body already dispatched by `media.select_format`. Never raises.
    What no store can hold (unpaired surrogates, NUL) comes back as U+FFFD, with warnings."""
    if not body:
        return BindResult(None)  # Content-Length: 0 -> null model, no error (c04)
    if fmt is Format.JSON:
        result = bind_json(body, charset)
    elif fmt is Format.XML:
        result = bind_xml(body, charset)
    else:
        result = bind_form(body)
    if result.model is not None:
        result.model, stored = make_storable(result.model)
        result.warnings.extend(stored)
    if any(safe_key(key) != key for key in result.errors):
        masked: dict[str, list[str]] = {}
        for key, messages in result.errors.items():
            masked.setdefault(safe_key(key), []).extend(messages)
        result.errors = masked
    return result


__all__ = [
    "BindResult",
    "Format",
    "UnsupportedMediaTypeError",
    "bind",
    "parse_content_type",
    "select_format",
]
