"""Text that is safe to show: in a log line, on an operator's terminal (issue 12).

`safe_text` escapes every character that can move a terminal's cursor, rewrite what is
already on screen, reorder text, or make a line invalid UTF-8, and cuts the text to a
bounded length with a marker saying how much was cut:

* C0 controls, DEL and C1 controls (U+0080-U+009F, where 8-bit CSI U+009B lives):
  `\\x1b`, `\\x7f`, `\\x9b`; newline, carriage return and tab as `\\n`, `\\r`, `\\t`;
* the bidirectional controls (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069: the
  "Trojan Source" characters) and the line and paragraph separators U+2028, U+2029:
  `\\u202e`;
* unpaired surrogates (U+D800-U+DFFF; a Python str can hold them, UTF-8 cannot): `\\ud83d`.

Everything else, Chinese text included, is kept as it is. A backslash is not escaped, so
the text `\\x1b` and an escaped ESC look the same: the output is for reading, and a
reader can never be handed a raw control character.

`escape_json` does the same for text that is already JSON (`json.dumps(...,
ensure_ascii=False)`), with JSON's own `\\u` escapes, so the JSON stays valid and decodes
to exactly the original values.

Both are pure. Most strings are short plain text: for those, `safe_text` is one length
check and one `str.isprintable()` (a C loop) and returns the string itself.
"""

from __future__ import annotations

import re

# The bidirectional controls and separators, shared by both patterns.
_UNICODE_CONTROLS = "\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_UNSAFE = re.compile(f"[\x00-\x1f\x7f-\x9f{_UNICODE_CONTROLS}]")
_UNSAFE_KEEP_NEWLINES = re.compile(f"[\x00-\x09\x0b-\x1f\x7f-\x9f{_UNICODE_CONTROLS}]")
# What json.dumps(ensure_ascii=False) leaves raw (it escapes C0 itself).
_JSON_UNSAFE = re.compile(f"[\x7f-\x9f{_UNICODE_CONTROLS}]")

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _cut_marker(count: int, keep_end: bool) -> str:
    return f"[+{count} chars]..." if keep_end else f"...[+{count} chars]"


def safe_text(value: str, limit: int, *, newlines: bool = False, keep_end: bool = False) -> str:
    """`value` with control characters escaped, at most `limit` characters plus a marker.

    The marker (`...[+N chars]`, at most 31 characters) says how many characters of
    `value` were left out. An escape sequence is never cut in half: it is kept whole or
    left out with the character it stands for. `newlines=True` keeps newlines as they are
    (a traceback), escaping the rest; `keep_end=True` keeps the end of the text and cuts
    its beginning (the end of a traceback says what failed).
    """
    if len(value) <= limit and value.isprintable():
        return value  # the fast path: nothing to escape (isprintable is False for all of it)
    limit = max(limit, 0)
    pattern = _UNSAFE_KEEP_NEWLINES if newlines else _UNSAFE
    # Escaping never shortens text, so `limit` characters of input are all that can be shown.
    window = value[-limit:] if keep_end and limit else value[:limit]
    if pattern.search(window) is None:
        return _with_marker(window, len(value) - len(window), keep_end)
    if keep_end:  # the same walk over the reversed text, then turned back
        pieces, used = _pieces(window[::-1], pattern, limit, reverse=True)
        return _with_marker("".join(pieces)[::-1], len(value) - used, keep_end)
    pieces, used = _pieces(window, pattern, limit, reverse=False)
    return _with_marker("".join(pieces), len(value) - used, keep_end)


def _pieces(
    window: str, pattern: re.Pattern[str], limit: int, *, reverse: bool
) -> tuple[list[str], int]:
    """Escaped pieces of `window`, at most `limit` characters together, and how many
    characters of `window` they stand for. With `reverse`, `window` is reversed text and
    each escape is written reversed too, so that the joined result reads right once
    reversed back."""
    out: list[str] = []
    room = limit
    pos = 0
    for match in pattern.finditer(window):
        plain = window[pos : match.start()]
        if len(plain) >= room:
            out.append(plain[:room])
            return out, pos + room
        out.append(plain)
        room -= len(plain)
        escaped = _escape(match.group())
        if len(escaped) > room:
            return out, match.start()
        out.append(escaped[::-1] if reverse else escaped)
        room -= len(escaped)
        pos = match.end()
    plain = window[pos : pos + room]
    out.append(plain)
    return out, pos + len(plain)


def _with_marker(text: str, cut: int, keep_end: bool) -> str:
    if cut <= 0:
        return text
    return _cut_marker(cut, True) + text if keep_end else text + _cut_marker(cut, False)


def escape_json(encoded: str) -> str:
    """JSON text (from `json.dumps(..., ensure_ascii=False)`) with every character that
    JSON leaves raw but a terminal would act on written as a `\\uXXXX` escape.

    Only strings can hold such characters, and inside a JSON string `\\uXXXX` means the
    character itself: the result decodes to the same values.
    """
    if encoded.isascii() and "\x7f" not in encoded:
        return encoded  # JSON escaped C0 already; DEL is the one ASCII control it keeps
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", encoded)
