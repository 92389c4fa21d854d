"""The binding result and the dispatcher over the three body formats."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..dto import QCareDto
from .media import Format


@dataclass
class BindResult:
    """What the old server's model binder produced: a model or None, plus ModelState."""

    model: QCareDto | None
    errors: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    def add(self, path: str, message: str) -> None:
        self.errors.setdefault(path, []).append(message)


def bind(fmt: Format, charset: str | None, body: bytes) -> BindResult:
    """Bind a body already dispatched by `media.select_format`. Never raises."""
    if not body:
        return BindResult(None)  # Content-Length: 0 -> null model, no error (c04)
    if fmt is Format.JSON:
        from .jsonnet import bind_json

        return bind_json(body, charset)
    if fmt is Format.XML:
        from .xmlser import bind_xml

        return bind_xml(body, charset)
    from .form import bind_form

    return bind_form(body)
