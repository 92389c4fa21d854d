"""The limits of one update (qcare_ingest/limits.py), as pure functions."""

from __future__ import annotations

import pytest

from qcare_ingest import limits
from qcare_ingest.binding import bind, select_format
from qcare_ingest.dto import QCareDto, ServicesInfo


def test_the_largest_update_the_limits_allow_fits_the_message_bound() -> None:
    worst = "\x01"  # JSON writes a control character in six bytes, more than any other
    fields = {name: worst * limit.chars for name, limit in limits.DTO_LIMITS.items()}
    fields["msg_id"] = fields["accessionNo"] = "m" * 64
    fields["studyDate"] = "\x0b" * 54 + "2025-10-26"  # a date, padded with what JSON escapes
    line = ServicesInfo(**{n: worst * lim.chars for n, lim in limits.SERVICE_LIMITS.items()})
    dto = QCareDto(**fields, services=[line] * limits.MAX_SERVICE_LINES)
    assert {k for k in limits.check(dto) if k not in ("msg_id", "accessionNo")} == set()
    assert len(dto.encode()) <= limits.MAX_MESSAGE_BYTES


def test_limits_count_characters_and_bytes() -> None:
    assert limits.check(QCareDto(msg_id="m", name="a" * 200)) == {}
    assert "200 characters" in limits.check(QCareDto(msg_id="m", name="a" * 201))["name"][0]
    assert limits.check(QCareDto(msg_id="醫" * 85)) == {}  # 255 bytes
    assert "255 bytes" in limits.check(QCareDto(msg_id="醫" * 86))["msg_id"][0]
    over = limits.check(QCareDto(msg_id="m", accessionNo="A\tB"))
    assert "control characters" in over["accessionNo"][0]


def test_a_refusal_never_quotes_the_value() -> None:
    errors = limits.check(QCareDto(msg_id="m", name="CHAN TAI MAN" * 50))
    assert "CHAN" not in str(errors)


@pytest.mark.parametrize(
    ("text", "value"),
    [("12", 12), (" -7 ", -7), ("+0", 0), ("0" * 5000 + "5", 5), ("x", None), ("١٢", None)],
)
def test_int_text(text: str, value: int | None) -> None:
    assert limits.parse_int_text(text) == value


def test_int_text_never_reaches_ints_digit_limit() -> None:
    huge = limits.parse_int_text("9" * 100_000)
    assert huge is not None
    assert huge > 2**31
    negative = limits.parse_int_text("-" + "9" * 100_000)
    assert negative is not None
    assert negative < -(2**31)


def test_unstorable_characters_become_replacement_characters_with_warnings() -> None:
    dto = QCareDto(
        msg_id="m",
        name="CHAN \ud83d",
        address="a\x00b",
        services=[ServicesInfo(studyDesc="\udc00X"), None],
    )
    clean, warnings = limits.make_storable(dto)
    assert (clean.name, clean.address) == ("CHAN \ufffd", "a\ufffdb")
    assert clean.services is not None
    assert clean.services[0] is not None
    assert clean.services[0].studyDesc == "\ufffdX"
    assert [w.split(":")[0] for w in warnings] == ["name", "address", "services"]
    clean.encode()  # storable now: this raised PydanticSerializationError before


def test_identifiers_are_refused_not_changed() -> None:
    dto = QCareDto(msg_id="m\ud83d", accessionNo="A\x00")
    assert limits.make_storable(dto) == (dto, [])
    assert set(limits.check(dto)) == {"msg_id", "accessionNo"}


def test_nothing_to_change_costs_no_copy() -> None:
    dto = QCareDto(msg_id="m", name="陳大文", services=[ServicesInfo(studyDesc="CHEST")])
    assert limits.make_storable(dto)[0] is dto


@pytest.mark.parametrize(
    ("ctype", "body"),
    [
        ("application/json", b'{"x":[' + b"{}," * 20_000 + b"{}]}"),
        ("application/json", b'{"x":' + b"[" * 20_000 + b"]" * 20_000 + b"}"),
        ("application/xml", b"<QCareDto>" + b"<a/>" * 30_000 + b"</QCareDto>"),
        ("application/json", b'{"x":[' + b"1.5," * 30_000 + b"1]}"),
        (
            "application/xml",
            b"<QCareDto " + b" ".join(b'a%d="1"' % i for i in range(30_000)) + b"/>",
        ),
    ],
)
def test_what_parsing_may_build_is_bounded(ctype: str, body: bytes) -> None:
    result = bind(*select_format(ctype), body)
    assert result.model is None
    assert list(result.errors) == [""]


def test_brackets_inside_strings_do_not_count() -> None:
    body = b'{"msg_id":"m","accessionNo":"A","x":"' + b"{[" * 20_000 + b'"}'
    result = bind(*select_format("application/json"), body)
    assert result.ok


def test_counting_brackets_is_linear_even_for_unterminated_strings() -> None:
    """The bracket count skips strings; an unterminated one full of escaped quotes made
    that scan quadratic (4.6 s for 60 kB; this body would not finish)."""
    body = b"{" * 20_001 + b'"' + b'\\"' * 300_000
    result = bind(*select_format("application/json"), body)
    assert result.model is None
    assert result.errors


def test_the_fast_path_knows_every_identifier() -> None:
    """check() tests the identifiers by name on its fast path."""
    named = {name for name, limit in limits.DTO_LIMITS.items() if limit.identifier}
    assert named == {"msg_id", "accessionNo"}
    assert "control" in limits.check(QCareDto(msg_id="m", accessionNo="A\x7f"))["accessionNo"][0]


def test_a_line_repeated_by_ref_is_scanned_and_cleaned_once() -> None:
    """Fuzz seed 4125409733: one line's 1.2 MB of text, repeated by `$ref` 1,000 times,
    took the gateway to 545 MB (the text joined once per repetition). Now each text
    counts once, a repeated one is cleaned once, and what check() refuses (more than
    MAX_SERVICE_LINES lines) is not cleaned first."""
    import tracemalloc

    text = "A" * 1_200_000 + "\x00"  # NUL: stored as U+FFFD
    line = {"studyDesc": text, "bodypart": "chest"}
    for repeats in (1_000, limits.MAX_SERVICE_LINES):
        dto = QCareDto(msg_id="m", services=[ServicesInfo(**line) for _ in range(repeats)])
        tracemalloc.start()
        try:
            stored, warnings = limits.make_storable(dto)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 20_000_000, (repeats, peak)
        if repeats == limits.MAX_SERVICE_LINES:  # within the limit: cleaned, once
            assert warnings
            assert stored.services is not None
            assert {line.studyDesc for line in stored.services} == {"A" * 1_200_000 + "\ufffd"}


def test_a_string_shared_by_repeated_lines_is_scanned_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Non-ASCII text is scanned by a regular expression: 2.6 MB of it in one line
    repeated 100 times held the gateway's event loop 1,078 ms, 40 ms scanned once."""
    scanned: list[int] = []
    real = limits._needs_cleaning

    def counting(value: str | None) -> bool:
        scanned.append(len(value or ""))
        return real(value)

    monkeypatch.setattr(limits, "_needs_cleaning", counting)
    text = "\u00e9" * 100_000 + "\x00"
    dto = QCareDto(
        msg_id="m",
        services=[ServicesInfo(studyDesc=text, bodypart="x") for _ in range(100)],
    )
    stored, warnings = limits.make_storable(dto)
    assert warnings == ["services: an unpaired UTF-16 surrogate or NUL was stored as U+FFFD"]
    assert stored.services is not None
    assert all(line.studyDesc == "\u00e9" * 100_000 + "\ufffd" for line in stored.services)
    assert sum(scanned) < 3 * len(text)  # the joined text, then each distinct string
