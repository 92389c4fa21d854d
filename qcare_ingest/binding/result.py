"""The binding result: a model or None, plus ModelState errors."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..dto import QCareDto


@dataclass
class BindResult:
    """What the old server's model binder produced: a model or None, plus ModelState."""

    model: QCareDto | None
    errors: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # what was changed to store it

    @property
    def ok(self) -> bool:
        return not self.errors

    def add(self, path: str, message: str) -> None:
        self.errors.setdefault(path, []).append(message)
