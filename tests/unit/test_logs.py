"""Issue 12 (and 7): every value of a log line bounded and escaped, tracebacks kept.

The formatters are fed records the way `logging` builds them (extras are attributes of
the record); a line is checked as a log reader would: strict JSON (no NaN), at most the
line limit in UTF-8, and no character in it or in any decoded value that a terminal acts
on (C0, DEL, C1, bidirectional controls, line separators, lone surrogates).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from qcare_ingest import logs
from qcare_ingest.errors import QcareError
from qcare_ingest.textsafe import escape_json, safe_text

# Written out here, not imported: the test's own idea of what must never reach a reader.
RAW = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
RAW_BUT_NEWLINE = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
HOSTILE = "a\x1b[2J\x1b]0;owned\x07b\x9b31m\x85c\u202edcba\u2066\u200f\x7f\ud83d\x00\r\n\t"
# ... as the reader sees it
HOSTILE_SHOWN = (
    "a\\x1b[2J\\x1b]0;owned\\x07b\\x9b31m\\x85c\\u202edcba\\u2066\\u200f\\x7f\\ud83d\\x00\\r\\n\\t"
)
# in a traceback, whose lines are kept
HOSTILE_IN_TRACEBACK = HOSTILE_SHOWN.replace("\\n", "\n")


def record(
    msg: str = "event", exc_info: Any = None, level: int = logging.INFO, **extra: Any
) -> logging.LogRecord:
    rec = logging.LogRecord("qcare_ingest.test", level, __file__, 1, msg, (), exc_info)
    rec.__dict__.update(extra)
    return rec


def strict(line: str) -> dict[str, Any]:
    def no_constant(name: str) -> None:
        raise AssertionError(f"{name} is not JSON")

    event = json.loads(line, parse_constant=no_constant)
    assert isinstance(event, dict)
    return event


def strings(value: Any) -> list[str]:
    """Every string of a decoded JSON value, dict keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for item in value for s in strings(item)]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *strings(v)]]
    return []


def json_line(rec: logging.LogRecord) -> tuple[str, dict[str, Any]]:
    line = logs.JsonFormatter({"service": "test"}).format(rec)
    assert "\n" not in line
    assert not RAW.search(line)
    event = strict(line)
    multiline = [event.pop(key, "") for key in ("traceback", "stack")]
    assert [s for s in strings(event) if RAW.search(s)] == []
    assert [s for s in multiline if RAW_BUT_NEWLINE.search(s)] == []
    return line, strict(line)


def utf8(line: str) -> int:
    return len(line.encode("utf-8"))


class OurError(QcareError):
    """One of ours: its message is shown (ours carry no personal data)."""


def raise_deep(message: str, depth: int = 3) -> None:
    if depth == 0:
        raise OurError(message)
    raise_deep(message, depth - 1)


def exc_info_of(fn: Any, *args: Any) -> Any:
    try:
        fn(*args)
    except Exception:
        return sys.exc_info()
    raise AssertionError("did not raise")


# --- textsafe -------------------------------------------------------------------------


def test_safe_text_keeps_plain_text_as_it_is() -> None:
    for text in ("msg-1", "ACC-2026-00001", "陳大文 醫院", "A12****(3)", "x" * 256, ""):
        assert safe_text(text, 256) is text  # the fast path: the same object, no copy
    assert safe_text("C:\\temp\\x1b", 64) == "C:\\temp\\x1b"  # a backslash is not a control


def test_safe_text_escapes_every_control_visibly() -> None:
    assert safe_text(HOSTILE, 1000) == HOSTILE_SHOWN
    for code in [*range(0x20), *range(0x7F, 0xA0), 0x61C, 0x200E, 0x200F, 0x2028, 0x2029]:
        assert not RAW.search(safe_text(f"<{chr(code)}>", 100))
    for code in [*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0xD800, 0xDBFF, 0xDFFF]:
        assert safe_text(chr(code), 100) == f"\\u{code:04x}"
    assert safe_text("trace\nback\x1b", 100, newlines=True) == "trace\nback\\x1b"


def test_safe_text_cuts_with_a_marker_saying_how_much() -> None:
    huge = "y" * 200_000
    assert safe_text(huge, 256) == "y" * 256 + "...[+199744 chars]"
    assert safe_text("0123456789", 4, keep_end=True) == "[+6 chars]...6789"
    # an escape is kept whole or left out with its character, never cut in half
    assert safe_text("ab\x1bcd", 4) == "ab...[+3 chars]"
    assert safe_text("ab\x1bcd", 6) == "ab\\x1b...[+2 chars]"
    assert safe_text("ab\x1bcd", 4, keep_end=True) == "[+3 chars]...cd"
    assert safe_text("ab\x1bcd", 6, keep_end=True) == "[+2 chars]...\\x1bcd"
    assert safe_text("\u202e" * 100_000, 64) == "\\u202e" * 10 + "...[+99990 chars]"


def escaped(text: str, newlines: bool) -> str:
    """The test's model of the escaping, one character at a time."""
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
    out = []
    for ch in text:
        if (newlines and ch == "\n") or not RAW.match(ch):
            out.append(ch)
        else:
            code = ord(ch)
            out.append(named.get(ch) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"))
    return "".join(out)


@given(
    st.text() | st.text(st.sampled_from("ab\x1b\x9b\u202e\ud800\n醫"), max_size=400),
    st.integers(min_value=0, max_value=300),
    st.booleans(),
    st.booleans(),
)
def test_safe_text_is_the_longest_escaped_part_that_fits_and_counts_the_rest(
    text: str, limit: int, newlines: bool, keep_end: bool
) -> None:
    out = safe_text(text, limit, newlines=newlines, keep_end=keep_end)
    assert not (RAW_BUT_NEWLINE if newlines else RAW).search(out)
    whole = escaped(text, newlines)
    if len(whole) <= limit:
        assert out == whole
        return
    marker = re.fullmatch(
        r"\[\+(\d+) chars\]\.\.\.(.*)" if keep_end else r"(.*)\.\.\.\[\+(\d+) chars\]", out, re.S
    )
    assert marker is not None, out
    shown, cut = (marker[2], int(marker[1])) if keep_end else (marker[1], int(marker[2]))
    assert 0 < cut <= len(text)
    kept = text[cut:] if keep_end else text[: len(text) - cut]
    one_more = text[cut - 1 :] if keep_end else text[: len(text) - cut + 1]
    assert shown == escaped(kept, newlines)
    assert len(shown) <= limit < len(escaped(one_more, newlines))  # nothing more would fit


@given(
    st.recursive(
        st.none() | st.text() | st.integers(), lambda c: st.lists(c) | st.dictionaries(st.text(), c)
    )
)
@example("\x7f")  # ASCII, and JSON leaves it raw
@example({"\x1b[2J\x9b\u202e": ["\ud83d", "醫"]})
def test_escape_json_keeps_the_values_and_drops_the_raw_characters(value: Any) -> None:
    text = escape_json(json.dumps(value, ensure_ascii=False))
    assert not RAW.search(text)
    assert json.loads(text) == value


# --- the JSON formatter ----------------------------------------------------------------


def test_control_characters_are_escaped_in_the_message_keys_and_values() -> None:
    _, event = json_line(
        record(
            f"refused {HOSTILE}",
            action="refused",
            msg_id=HOSTILE,
            fields=[HOSTILE, {"nested": [HOSTILE]}],
            headers={HOSTILE: HOSTILE},
            raw=HOSTILE.encode("utf-8", "surrogatepass"),
        )
    )
    assert event["event"] == f"refused {HOSTILE_SHOWN}"
    assert event["action"] == "refused"
    assert event["msg_id"] == HOSTILE_SHOWN
    assert event["fields"] == [HOSTILE_SHOWN, {"nested": [HOSTILE_SHOWN]}]
    assert event["headers"] == {HOSTILE_SHOWN: HOSTILE_SHOWN}
    assert event["raw"].startswith("b'a\\x1b[2J")


def test_a_200_kb_value_and_a_100000_item_list_are_cut_with_markers() -> None:
    huge = "6" * 200_000  # the 200 kB "fields" line, the 105 kB accessionNo
    line, event = json_line(
        record(
            "x" * 200_000,
            action="queued",
            updates=[{"msg_id": "m-1", "accession": huge}],
            fields=[f"dto.services[{i}].index" for i in range(100_000)],
            results=[[f"m-{i}", "applied"] for i in range(100_000)],
            count=100_000,
        )
    )
    assert utf8(line) <= logs.LINE_LIMIT
    assert event["count"] == 100_000
    assert (
        event["event"] == "x" * logs.MESSAGE_LIMIT + f"...[+{200_000 - logs.MESSAGE_LIMIT} chars]"
    )
    accession = event["updates"][0]["accession"]
    assert accession == "6" * logs.VALUE_LIMIT + f"...[+{200_000 - logs.VALUE_LIMIT} chars]"
    assert event["fields"] == [
        *(f"dto.services[{i}].index" for i in range(logs.ITEMS_LIMIT)),
        f"...[+{100_000 - logs.ITEMS_LIMIT} items]",
    ]
    # what is left of the line's budget, then a marker: how much depends on the budget
    results = event["results"]
    assert results[:-1] == [[f"m-{i}", "applied"] for i in range(len(results) - 1)]
    assert results[-1] == f"...[+{100_000 - len(results) + 1} items]"


def test_a_full_batch_line_is_kept_whole_and_its_excess_cut() -> None:
    """A worker's batch (up to 1,000 results) and the gateway's 256 updates, with GUID
    ids, are logged whole; from the 1,001st result on they are left out, with a marker."""
    ids = [str(uuid.uuid4()) for _ in range(1_200)]
    line, event = json_line(
        record("batch processed", action="processed", results=[[m, "applied"] for m in ids])
    )
    assert event["results"][:1000] == [[m, "applied"] for m in ids[:1000]]
    assert event["results"][1000:] == ["...[+200 items]"]
    assert utf8(line) <= logs.LINE_LIMIT
    updates = [
        {"msg_id": m, "accession": f"ACC-2026-{i:08d}", "client": "qcare", "publish_ms": 12.51}
        for i, m in enumerate(ids[:256])
    ]
    _, event = json_line(record("updates queued", action="queued", count=256, updates=updates))
    assert event["updates"] == updates


def test_nested_cyclic_and_odd_values_make_a_valid_bounded_line() -> None:
    deep: list[Any] = ["bottom"]
    for _ in range(10_000):
        deep = [deep]
    cycle: list[Any] = ["loop"]
    cycle.append(cycle)
    wide = {f"k{i}\x1b": i for i in range(100_000)}

    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no text")

    line, event = json_line(
        record(
            "odd values",
            deep=deep,
            cycle=cycle,
            wide=wide,
            tuple_keys={(1, "\x1b"): "v"},
            digits=10**5000,
            nan=float("nan"),
            broken=Broken(),
        )
    )
    assert utf8(line) <= logs.LINE_LIMIT
    level = event["deep"]
    for _ in range(logs.DEPTH_LIMIT):
        assert isinstance(level, list)
        level = level[0]
    assert level == "[1 items, nested too deep]"
    assert event["cycle"][0] == "loop"
    assert event["wide"] == {
        **{f"k{i}\\x1b": i for i in range(logs.ITEMS_LIMIT)},
        "...": f"+{100_000 - logs.ITEMS_LIMIT} keys",
    }
    assert event["tuple_keys"] == {"(1, '\\x1b')": "v"}
    assert event["digits"] == "<int of 16610 bits>"
    assert event["nan"] == "nan"
    assert event["broken"] == "<unprintable Broken>"


def test_a_line_over_the_limit_is_cut_to_it_and_stays_json() -> None:
    # quotes take two bytes each in JSON, Chinese three in UTF-8: the first estimate is short
    quotes = {f"q{i}": '"' * 256 for i in range(400)}
    chinese = {f"c{i}": "醫" * 256 for i in range(400)}
    many = {f"field_{i}": "v" * 100 for i in range(5_000)}  # thousands of extra fields
    for extra in (quotes, chinese, many):
        line, event = json_line(record("too much", action="flood", **extra))
        assert utf8(line) <= logs.LINE_LIMIT
        assert event["event"] == "too much"
        assert event["service"] == "test"


def test_an_exception_keeps_its_traceback_bounded_and_escaped() -> None:
    info = exc_info_of(raise_deep, f"bad value {HOSTILE} " + "z" * 200_000)
    _, event = json_line(record("lane failed", exc_info=info, level=logging.ERROR))
    assert event["exc"] == "OurError"
    assert event["exc_text"].startswith(f"bad value {HOSTILE_SHOWN} zzz")
    assert len(event["exc_text"]) <= logs.EXC_TEXT_LIMIT + 30
    trace = event["traceback"]
    assert trace.startswith("Traceback (most recent call last):\n")
    assert trace.count(", in raise_deep\n") == 4  # every frame, though the message is huge
    assert "in exc_info_of\n" in trace
    assert f"OurError: bad value {HOSTILE_IN_TRACEBACK} zzz" in trace
    assert not RAW_BUT_NEWLINE.search(trace)
    assert len(trace) <= logs.TRACEBACK_LIMIT + 30


def test_a_long_chained_traceback_keeps_its_end() -> None:
    def chain(n: int) -> None:
        if n == 0:
            raise OurError("root cause")
        try:
            chain(n - 1)
        except OurError as exc:
            raise OurError(f"level {n}") from exc

    _, event = json_line(record("failed", exc_info=exc_info_of(chain, 200)))
    trace = event["traceback"]
    assert len(trace) <= logs.TRACEBACK_LIMIT + 30
    assert trace.count("Traceback (most recent call last):") == logs.CHAIN_LIMIT  # the last
    assert "OurError: level 193" in trace
    assert "root cause" not in trace
    assert trace.endswith("OurError: level 200")


# --- the text formatter (a terminal) ---------------------------------------------------


def test_text_lines_escape_and_print_the_traceback() -> None:
    info = exc_info_of(raise_deep, f"bad {HOSTILE}")
    line = logs.TextFormatter().format(
        record(
            f"failed {HOSTILE}",
            exc_info=info,
            msg_id=HOSTILE,
            accession="6" * 200_000,
            fields=[HOSTILE] * 100_000,
        )
    )
    first, _, trace = line.partition("\n")
    assert not RAW.search(first)
    assert not RAW_BUT_NEWLINE.search(trace)
    assert f"failed {HOSTILE_SHOWN}" in first
    assert f"msg_id={HOSTILE_SHOWN}" in first
    assert f"accession={'6' * logs.VALUE_LIMIT}...[+{200_000 - logs.VALUE_LIMIT} chars]" in first
    assert "...[+" in first.partition("fields=")[2]  # the list cut
    assert trace.startswith("Traceback (most recent call last):\n")
    assert trace.count(", in raise_deep\n") == 4
    assert trace.endswith(f"OurError: bad {HOSTILE_IN_TRACEBACK}")
    assert len(line) <= logs.LINE_LIMIT + 30


def test_other_libraries_messages_are_withheld_from_logs() -> None:
    """aiohttp quoted a whole request body (HKID and name) in its parser error; pydantic
    quotes input_value; PostgreSQL the bad value. Only the class and frames are logged."""

    def fail() -> None:
        try:
            raise OSError("connect call failed ('127.0.0.1', 5432)")
        except OSError as exc:
            raise ValueError(
                "Data after `Connection: close`: b'hkid Z987654(2) WONG SIU MING'"
            ) from exc

    for line in (
        json.dumps(json_line(record("failed", exc_info=exc_info_of(fail)))[1]),
        logs.TextFormatter().format(record("failed", exc_info=exc_info_of(fail))),
    ):
        assert "Z987654" not in line
        assert "WONG" not in line
        assert "ValueError" in line
        assert "message withheld" in line
        assert "5432" in line  # an OS error speaks of sockets: kept
