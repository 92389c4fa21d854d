"""A text field's storable length, in characters and in UTF-8 bytes (issue 12).

Its own module so that the field table (fields.py) and the checks (limits.py) can both
use it without importing each other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# characters an identifier (msg_id, accessionNo) may not hold
NOT_IN_ID = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


@dataclass(frozen=True)
class TextLimit:
    chars: int
    utf8_bytes: int
    identifier: bool = False  # no control characters

    def problem(self, value: str) -> str | None:
        """Why `value` is refused, or None. The value itself is never quoted."""
        if len(value) > self.chars:
            return f"is longer than {self.chars} characters"
        if not value.isascii() and len(value.encode("utf-8", "surrogatepass")) > self.utf8_bytes:
            return f"is longer than {self.utf8_bytes} bytes in UTF-8"
        if self.identifier and NOT_IN_ID.search(value):
            return "must not contain control characters or unpaired UTF-16 surrogates"
        return None
