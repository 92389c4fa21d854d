"""SQL written with named parameters (`:name`), for asyncpg, which only knows `$1, $2, …`.

A statement is turned into its positional form once, when the module defining it is
imported; a call only maps its dict of values to the argument list, in `$n` order:

    _FIND = Named("SELECT * FROM orders WHERE accession_no = :acc AND patient_key = :key")
    await conn.fetch(_FIND.sql, *_FIND.args({"acc": acc, "key": key}))

A name used twice is one parameter. `::type` casts, quoted literals and quoted identifiers
are left alone, so `:msgs::text[]` is parameter `msgs` cast to text[].
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# a quoted literal or identifier (skipped, '' and "" escapes included), or a :name that is
# not the second colon of a cast (::) nor glued to a word (a time literal's 12:30 is quoted)
_TOKEN = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|(?<![:\w]):([A-Za-z_]\w*)")


@dataclass(frozen=True)
class Named:
    """One statement: `sql` with `$n` in place of each name, and `names` in `$n` order."""

    sql: str
    names: tuple[str, ...]

    def __init__(self, text: str) -> None:
        names: dict[str, int] = {}

        def number(m: re.Match[str]) -> str:
            if m[1] is None:
                return m[0]
            return f"${names.setdefault(m[1], len(names) + 1)}"

        object.__setattr__(self, "sql", _TOKEN.sub(number, text))
        object.__setattr__(self, "names", tuple(names))

    def args(self, values: Mapping[str, Any]) -> list[Any]:
        """The arguments in `$n` order. Every name must be given, and nothing else."""
        if len(values) != len(self.names):
            extra = sorted(set(values) - set(self.names))
            missing = sorted(set(self.names) - set(values))
            raise KeyError(f"parameters: missing {missing}, unknown {extra}")
        return [values[name] for name in self.names]
