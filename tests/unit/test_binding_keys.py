"""ModelState keys are member paths the client wrote: what of them an answer may show, and
what a hostile path costs (an outside attack on the reference-server binder, issue 13)."""

from __future__ import annotations

import time

import pytest

from qcare_ingest.binding import bind, select_format
from qcare_ingest.binding.echo import MASKED_MEMBER, MAX_KEY, safe_key


def _keys(body: bytes) -> list[str]:
    return list(bind(*select_format("application/json"), body).errors)


def test_a_made_up_member_name_is_not_echoed() -> None:
    keys = _keys(b'{"msg_id":"1","CHAN TAI MAN A123456(3)":[x]}')
    assert keys == [MASKED_MEMBER]
    assert _keys(b'{"services":[{"A123456(3)":[x]}]}') == [f"services[0].{MASKED_MEMBER}"]


@pytest.mark.parametrize(
    "key",
    ["", "studyDate", "services[0].NoOfImages", "services[12].$ref", "extra", "a.b", "x[0][0]"],
)
def test_names_a_programmer_writes_are_kept(key: str) -> None:
    assert safe_key(key) == key


def test_keys_are_bounded() -> None:
    assert len(safe_key("x" + "[0]" * 5000)) <= MAX_KEY + 1
    started = time.perf_counter()
    keys = _keys(('{"' + "醫" * 1_400_000 + '":[x]}').encode())
    assert keys == [MASKED_MEMBER]
    assert time.perf_counter() - started < 2  # 0.9 s in Python per character before; 0.04 now


def test_constructor_nesting_counts_towards_the_parts_limit() -> None:
    """4 MiB of `new (` nested 838,860 levels (2.8 s, a 300,000-character key)."""
    started = time.perf_counter()
    keys = _keys(('{"msg_id":"1","a":' + "new (" * 838_860).encode())
    assert keys == [""]
    assert time.perf_counter() - started < 1  # 0.04 s here


def test_long_form_keys_and_values_are_not_decoded_past_what_can_bind() -> None:
    """4 MiB of `%C3a` in a value or a key took 2.7 s; a key over 1 KiB names no property,
    a value is decoded as far as a limit can let it through (it is refused as too long)."""
    form = select_format("application/x-www-form-urlencoded")
    started = time.perf_counter()
    value = bind(*form, b"msg_id=1&name=" + b"%C3a" * 1_000_000)
    key = bind(*form, b"%FFa" * 1_000_000 + b"=1&msg_id=1")
    assert time.perf_counter() - started < 1  # 0.05 s here
    assert value.model is not None
    assert value.model.name is not None
    assert len(value.model.name) > 1000  # still refused by limits.check as too long
    assert key.model is not None
    assert key.model.msg_id == "1"
    assert list(bind(*form, b"msg_id=1&a" + b"%5B" * 600 + b"=1").errors) == [""]
    assert not bind(*form, b"msg_id=1&a" + b"%5B" * 600 + b"%5D=1").errors
