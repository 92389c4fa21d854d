"""Logging set-up, called only by entry points: JSON lines, or text on a terminal.

Every free-text value of a record is bounded and escaped before it is written (issue 12):
a log line is read on terminals and by log shippers, and the values in it come from
requests. The message, every extra field (recursively, through lists, tuples, sets and
dicts, keys included) and the exception go through `textsafe.safe_text`:

* a string value: 256 characters (`msg_id`, at most 200, and `accessionNo`, 64, whole);
  the exception's message: 512 (as much as a dead-letter header keeps);
* the message (`event`): 1,024 characters (our text, with a value or two in it);
* a dict key, the logger's name: 128 characters;
* a list or dict: 1,000 items (a worker logs its whole batch, `QCARE_WORKER_BATCH` <= 1000,
  as one list, and the gateway up to 256 accepted updates);
* containers in containers: 6 deep (deeper is data, not a log field; a cycle ends there);
* the traceback: its last 8,192 characters (the end says what failed), each frame and
  each exception's message in it 1,024 at most;
* a whole JSON line: 64 KiB of UTF-8 (the longest lines of normal operation, with
  GUID-sized ids: 256 accepted updates, 38 KiB; 1,000 batch results, 53 KiB).

The line limit is a last resort: values are taken in order while the line's budget lasts,
then containers are cut with a marker; a line that still does not fit (thousands of
extra fields) keeps its base fields and the exception and says how many fields it left
out. Every cut carries a marker saying how much: `...[+N chars]`, `...[+N items]`.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import traceback
from datetime import UTC, datetime
from typing import Any

from .errors import QcareError
from .textsafe import safe_text

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}

VALUE_LIMIT = 256
EXC_TEXT_LIMIT = 512
MESSAGE_LIMIT = 1024
KEY_LIMIT = 128
ITEMS_LIMIT = 1000
DEPTH_LIMIT = 6
TRACEBACK_LIMIT = 8192
CHAIN_LIMIT = 8  # exceptions of one chain (raise ... from ...) shown, the last ones
TRACEBACK_PART_LIMIT = 1024  # one frame, or one exception's message, in the traceback
STACK_LIMIT = 4096
LINE_LIMIT = 64 * 1024
_INT_BITS = 256  # a larger int is logged by its size (str() refuses over 4,300 digits)
_BIG = 2**_INT_BITS
_NUMBERS = (int, float)  # exactly these types, not their subclasses
# Dict keys already seen to need nothing (the same few field names, line after line);
# bounded, so keys made of request data cannot grow it for ever.
_SAFE_KEYS: set[str] = set()
_SAFE_KEYS_MAX = 4096

_ENCODE = json.JSONEncoder(ensure_ascii=False).encode


def _cost(text: str) -> int:
    """UTF-8 bytes `text` takes in a JSON line, near enough (quotes and a separator)."""
    return len(text) + 4 if text.isascii() else 3 * len(text) + 4


class _Bounded:
    """One record's values, bounded, with what is left of the line's budget (`left`).

    The loops over containers take plain values (a short printable ASCII string, a
    small int) on the spot: a worker's batch line is a thousand of them.
    """

    __slots__ = ("left",)

    def __init__(self, budget: int) -> None:
        self.left = budget

    def text(self, value: str, limit: int = VALUE_LIMIT) -> str:
        if self.left < 3 * limit:
            limit = max(self.left // 3, 0)
        out = safe_text(value, limit)
        self.left -= _cost(out)
        return out

    def value(self, value: Any, depth: int = 0) -> Any:
        kind = type(value)
        if kind is str:
            return self.text(value)
        if value is None or kind is bool:
            self.left -= 6
            return value
        if kind is int or kind is float:
            return self._number(value)
        if kind is list or kind is tuple:
            return self._items(value, depth)
        if kind is dict:
            return self._dict(value, depth)
        return self._other(value, depth)

    def _number(self, value: float) -> Any:
        self.left -= 12
        if isinstance(value, int):
            return (
                value if value.bit_length() <= _INT_BITS else f"<int of {value.bit_length()} bits>"
            )
        return value if math.isfinite(value) else str(value)  # NaN is not JSON

    def _items(
        self, value: list[Any] | tuple[Any, ...] | set[Any] | frozenset[Any], depth: int
    ) -> Any:
        if depth >= DEPTH_LIMIT:
            return self.text(f"[{len(value)} items, nested too deep]")
        out: list[Any] = []
        append = out.append
        left = self.left
        for done, item in enumerate(value):
            if done >= ITEMS_LIMIT or left <= 0:
                append(f"...[+{len(value) - done} items]")
                left -= 24
                break
            kind = type(item)
            if kind is str:
                if len(item) <= VALUE_LIMIT and item.isascii() and item.isprintable():
                    left -= len(item) + 4
                    append(item)
                    continue
            elif item is None or kind is bool or (kind in _NUMBERS and -_BIG < item < _BIG):
                left -= 12
                append(item)
                continue
            self.left = left - 2
            append(self.value(item, depth + 1))
            left = self.left
        self.left = left
        return out

    def _dict(self, value: dict[Any, Any], depth: int) -> Any:
        if depth >= DEPTH_LIMIT:
            return self.text(f"{{{len(value)} keys, nested too deep}}")
        out: dict[str, Any] = {}
        left = self.left
        for done, (key, item) in enumerate(value.items()):
            if done >= ITEMS_LIMIT or left <= 0:
                out["..."] = f"+{len(value) - done} keys"
                left -= 24
                break
            if type(key) is not str or key not in _SAFE_KEYS:
                self.left = left
                key = self.key(key)
                left = self.left
            left -= len(key) + 4
            kind = type(item)
            if kind is str:
                if len(item) <= VALUE_LIMIT and item.isascii() and item.isprintable():
                    left -= len(item) + 4
                    out[key] = item
                    continue
            elif item is None or kind is bool or (kind in _NUMBERS and -_BIG < item < _BIG):
                left -= 12
                out[key] = item
                continue
            self.left = left
            out[key] = self.value(item, depth + 1)
            left = self.left
        self.left = left
        return out

    def key(self, key: Any) -> str:
        text = key if type(key) is str else _str(key)
        if len(text) <= KEY_LIMIT and text.isascii() and text.isprintable():
            if len(_SAFE_KEYS) < _SAFE_KEYS_MAX:
                _SAFE_KEYS.add(text)
            return text
        return self.text(text, KEY_LIMIT)

    def _other(self, value: Any, depth: int) -> Any:
        if isinstance(value, str):  # a subclass (an Enum's value): its text
            return self.text(str.__str__(value))
        if isinstance(value, bool | int | float):
            return self._number(value)
        if isinstance(value, list | tuple | set | frozenset):
            return self._items(value, depth)
        if isinstance(value, dict):
            return self._dict(value, depth)
        if isinstance(value, bytes | bytearray):
            data = bytes(value[:VALUE_LIMIT])
            more = len(value) - len(data)
            # repr() of bytes is printable ASCII, at most four characters a byte
            shown = repr(data) + (f"...[+{more} bytes]" if more > 0 else "")
            return self.text(shown, 5 * VALUE_LIMIT)
        return self.text(_str(value))


def _str(value: Any) -> str:
    try:
        return str(value)
    except Exception:  # a broken __str__ must not cost the line
        return f"<unprintable {type(value).__name__}>"


def _message(error: BaseException) -> str:
    """What an exception may say in a log line. Ours (QcareError) are written without
    personal data, and OS and broker errors speak of sockets; any other library's message
    may quote the value it choked on (aiohttp quoted a whole body, HKID and name included;
    pydantic quotes `input_value`; PostgreSQL quotes the bad value), so it is withheld."""
    if isinstance(error, QcareError | OSError):
        return _str(error)
    state = getattr(error, "sqlstate", None)
    if isinstance(state, str):
        return f"SQLSTATE {state} (message withheld: it may quote data)"
    module = type(error).__module__
    if module.startswith(("aiormq", "pamqp", "aio_pika")) and not isinstance(error, ValueError):
        return _str(error)
    return "(message withheld: it may quote data)"


def _chain(error: BaseException) -> list[BaseException]:
    """The exception and those it happened during or because of, the first cause first
    (the last CHAIN_LIMIT of them)."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and len(chain) < CHAIN_LIMIT:
        if any(current is seen for seen in chain):
            break  # a cycle
        chain.append(current)
        if current.__cause__ is not None or current.__suppress_context__:
            current = current.__cause__
        else:
            current = current.__context__
    return chain[::-1]


def _traceback(error: BaseException) -> str:
    """The formatted traceback (frames of every exception in the chain, each message as
    `_message` allows), each part bounded and escaped, so that a huge message cannot push
    the frames out of the last 8 KiB."""
    parts = []
    for n, link in enumerate(_chain(error)):
        if n:
            parts.append("\nDuring or because of the above, another exception occurred:\n\n")
        parts.append("Traceback (most recent call last):\n")
        parts.extend(traceback.format_tb(link.__traceback__))
        parts.append(f"{type(link).__module__}.{type(link).__qualname__}: {_message(link)}\n")
    shown = [safe_text(part, TRACEBACK_PART_LIMIT, newlines=True) for part in parts]
    return safe_text("".join(shown).rstrip("\n"), TRACEBACK_LIMIT, newlines=True, keep_end=True)


def _exception(record: logging.LogRecord) -> dict[str, str]:
    """`exc`, `exc_text` (its message, as `_message` allows) and `traceback`, bounded and
    escaped; `stack`."""
    out: dict[str, str] = {}
    exc_info = record.exc_info
    if exc_info and exc_info[0] is not None and exc_info[1] is not None:
        out["exc"] = safe_text(exc_info[0].__name__, KEY_LIMIT)
        out["exc_text"] = safe_text(_message(exc_info[1]), EXC_TEXT_LIMIT)
        out["traceback"] = _traceback(exc_info[1])
    if record.stack_info:
        out["stack"] = safe_text(record.stack_info, STACK_LIMIT, newlines=True, keep_end=True)
    return out


def _extras(record: logging.LogRecord, budget: int) -> dict[str, Any]:
    bounded = _Bounded(budget)
    return {
        bounded.key(key): bounded.value(value)
        for key, value in record.__dict__.items()
        if key not in _STANDARD
    }


class JsonFormatter(logging.Formatter):
    def __init__(self, static: dict[str, str] | None = None) -> None:
        super().__init__()
        self.static = {
            safe_text(k, KEY_LIMIT): safe_text(v, VALUE_LIMIT) for k, v in (static or {}).items()
        }
        self._second = -1
        self._stamp = ""

    def _ts(self, created: float) -> str:
        # the same second's prefix is formatted once (a busy worker logs many lines a second)
        second = int(created)
        if second != self._second:
            self._second = second
            self._stamp = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._stamp}.{int((created - second) * 1000):03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "ts": self._ts(record.created),
            "level": safe_text(record.levelname.lower(), KEY_LIMIT),
            "logger": safe_text(record.name, KEY_LIMIT),
            "event": safe_text(record.getMessage(), MESSAGE_LIMIT),
            **self.static,
        }
        exception = _exception(record)
        fixed = (
            64 + sum(_cost(v) for v in event.values()) + sum(_cost(v) for v in exception.values())
        )
        budget = LINE_LIMIT - fixed
        # A line over the limit after all (quotes and backslashes JSON doubles) is built
        # again with a quarter of the budget, then without its extras.
        for attempt in (budget, budget // 4):
            line = _ENCODE({**event, **_extras(record, attempt), **exception})
            if (
                len(line) <= LINE_LIMIT // 3
                or len(line.encode("utf-8", "surrogatepass")) <= LINE_LIMIT
            ):
                return line
        left_out = sum(1 for key in record.__dict__ if key not in _STANDARD)
        return _ENCODE({**event, "extras_left_out": left_out, **exception})


def _render(value: Any) -> str:
    """A bounded value for a terminal: strings as they are (already escaped)."""
    if type(value) is str:
        return value
    if isinstance(value, list):
        return "[" + ", ".join(_render(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_render(v)}" for k, v in value.items()) + "}"
    return str(value)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = f"{datetime.fromtimestamp(record.created).strftime('%H:%M:%S')} "
        base += f"{safe_text(record.levelname, KEY_LIMIT):<7} {safe_text(record.name, KEY_LIMIT)}: "
        base += safe_text(record.getMessage(), MESSAGE_LIMIT)
        exception = _exception(record)
        after = "".join("\n" + exception[k] for k in ("traceback", "stack") if k in exception)
        extras = _extras(record, LINE_LIMIT - len(base) - len(after) - 64)
        shown = " ".join(f"{k}={_render(v)}" for k, v in extras.items())
        line = f"{base} {shown}".rstrip() + after
        return safe_text(line, LINE_LIMIT, newlines=True)  # escaped already: only the cut


def configure_logging(
    level: str = "INFO", service: str = "qcare", json_lines: bool | None = None
) -> None:
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter({"service": service}) if json_lines else TextFormatter())
    # The logging cookbook's "Optimization": no caller, thread or process lookup per record
    # (lines carry their own fields): nothing here reads them.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiormq", "aio_pika", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
