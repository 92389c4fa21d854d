"""Bind a request body as the old ASP.NET Web API endpoint did (WIRE.md).

`bind()` returns the old server's binding result: a model (or None) plus
ModelState errors keyed by field path ('' is the parameter itself). Turning
that into an HTTP answer is the gateway's job (SPEC §2).
"""

from __future__ import annotations

from .media import Format, UnsupportedMediaTypeError, parse_content_type, select_format
from .result import BindResult, bind

__all__ = [
    "BindResult",
    "Format",
    "UnsupportedMediaTypeError",
    "bind",
    "parse_content_type",
    "select_format",
]
