"""The form binder against what the reference server (../shared/oracle) bound.

CASES were posted to the reference server as application/x-www-form-urlencoded: the error
keys it answered (after `dto.`), and, when there were none, the fields it bound that are not
null (studyDate as the wall clock, or as the UTC instant when it bound a Local or Utc value).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC
from typing import Any
from urllib.parse import quote

import pytest

from qcare_ingest.binding import bind, select_format
from qcare_ingest.binding.form import (
    MAX_KEYS,
    READ_BUFFER,
    bind_form,
    jquery_fails,
    property_of,
    url_decode,
)
from qcare_ingest.dates import parse_dotnet
from tests.support.cost import assert_linear

FORM = "application/x-www-form-urlencoded"

CASES: list[tuple[bytes, list[str], dict[str, str] | None]] = [
    (b"name=", [], {}),
    (b"name=+", [], {}),
    (b"name=%C2%A0", [], {}),
    (b"name=%E3%80%80", [], {}),
    (b"studyDate=", [], {}),
    (b"studyDate=%C2%A0", [], {}),
    (b"name=a&name=b", [], {"name": "a"}),
    (b"name=&name=b", [], {}),
    (b"NAME=a", [], {"name": "a"}),
    (b"Name=a&name=b", [], {"name": "a"}),
    (b"name[]=a", [], {"name": "a"}),
    (b"na[]me=a", [], {"name": "a"}),
    (b"name[x]=a", [], {}),
    (b"name[0]=a", [], {}),
    (b"name[=a", [""], None),
    (b"zzz[=a&name=b", [""], None),
    (b"services[0&name=b", [""], None),
    (b"name]=a", [], {}),
    (b"zzz=1", [], {}),
    (b"=", [], {}),
    (b"&", [], {}),
    (b"a", [], {}),
    (b"name", [], {}),
    (b"name&name=b", [], {}),
    (b"name=a;hkid=b", [], {"name": "a;hkid=b"}),
    (b"name=a+b%20c%zz%4", [], {"name": "a b c%zz%4"}),
    (b"name=%E9%80", [], {"name": "�"}),
    (b"name=%E9%99%B3%E9", [], {"name": "陳�"}),
    (b"name=%e9%99%b3", [], {"name": "陳"}),
    (b"hk%C4%B1d=X", [], {}),
    (b"%C5%BFtudyTime=Y", [], {}),
    (b"h%E2%84%AAid=Z", [], {}),
    (b"pa%C3%9Fno=Q", [], {}),
    (b"services=a&name=x", [], {"name": "x"}),
    (b"dto.name=a", [], {}),
    (b" name=a", [], {}),
    (b"name.x=a", [], {}),
    (b"name+=a", [], {}),
    (b"%6Eame=a", [], {"name": "a"}),
    (b"name=%ED%A0%80", [], {"name": "��"}),
    (b"name=%C0%80x", [], {"name": "��x"}),
    (b"name=%F4%90%80%80", [], {"name": "���"}),
    (b"name=\xed\xa0\x80", [], {"name": "��"}),
    (b"name=\xff\xfe", [], {"name": "��"}),
    (b"name=\xe9\x99", [], {"name": "�"}),
    (b"name=a%2Bb", [], {"name": "a+b"}),
    (b"name=a%26b%3Dc", [], {"name": "a&b=c"}),
    (b"name=a=b", [], {"name": "a=b"}),
    (b"name==", [], {"name": "="}),
    (b"studyDate=2025-10-26&studyDate=junk", [], {"studyDate": "2025-10-26T00:00:00"}),
    (b"studyDate=junk&studyDate=2025-10-26", ["studyDate"], None),
    (b"studyDate=&studyDate=2025-10-26", [], {}),
    (b"studyDate=2025-10-26,2025-10-27", ["studyDate"], None),
    (b"studyDate=%2FDate(1761465091816)%2F", ["studyDate"], None),
    (b"studyDate=2025-10-26T10:00:00Z", [], {"studyDate": "2025-10-26T10:00:00Z"}),
    (
        b"studyDate=2025-10-26T15:51:31.8166249%2B08:00",
        [],
        {"studyDate": "2025-10-26T07:51:31.8166249Z"},
    ),
    (b"studyDate=2025-10-26T15:51:31.8166249+08:00", ["studyDate"], None),
    (b"studyDate=Sun,+26+Oct+2025+10:00:00+GMT", [], {"studyDate": "2025-10-26T10:00:00Z"}),
    (b"studyDate=10%2F26%2F2025+10:00+PM", [], {"studyDate": "2025-10-26T22:00:00"}),
    (b"studyDate=2025-02-30", ["studyDate"], None),
    (b"studyDate=+2025-10-26+", [], {"studyDate": "2025-10-26T00:00:00"}),
    (b"STUDYDATE=2025-1-6", [], {"studyDate": "2025-01-06T00:00:00"}),
    (
        b"name=\xe9\x99\xb3\xe5\xa4\xa7\xe6\x96\x87&address=1+Main+St",
        [],
        {"name": "陳大文", "address": "1 Main St"},
    ),
    (b"Address=x&ADDRESS=y", [], {"address": "x"}),
    (
        b"examclinicfullname=E&REF_CLINIC_FULLNAME=R",
        [],
        {"ref_clinic_fullname": "R", "examClinicFullName": "E"},
    ),
]

MIB = 1 << 20


def _date(text: str) -> str:
    """The value as the table writes it: the wall clock, or the UTC instant."""
    parsed = parse_dotnet(text)
    assert parsed is not None
    value = parsed.value
    suffix = ""
    if value.tzinfo is not None:
        value, suffix = value.astimezone(UTC), "Z"
    fraction = value.microsecond * 10 + parsed.extra_ticks
    return value.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction:07d}" if fraction else "") + suffix


def _bound(body: bytes, ctype: str = FORM) -> tuple[list[str], dict[str, Any] | None]:
    result = bind(*select_format(ctype), body)
    if result.errors:
        return sorted(result.errors), None
    assert result.model is not None
    fields = {k: v for k, v in result.model.model_dump().items() if v is not None}
    if "studyDate" in fields:
        fields["studyDate"] = _date(fields["studyDate"])
    return [], fields


@pytest.mark.parametrize(("body", "error_keys", "fields"), CASES)
def test_binds_as_the_reference_did(
    body: bytes, error_keys: list[str], fields: dict[str, str] | None
) -> None:
    assert _bound(body) == (error_keys, fields)


@pytest.mark.parametrize(
    "ctype",
    [FORM, f"{FORM}; charset=iso-8859-1", f"{FORM}; charset=big5", f"{FORM};charset=utf-16"],
)
def test_charset_is_not_consulted(ctype: str) -> None:
    assert _bound("name=陳&hkid=\xe9".encode(), ctype) == ([], {"name": "陳", "hkid": "é"})


def test_services_are_never_bound_and_a_warning_says_so() -> None:
    body = (
        b"services%5B0%5D.studyDesc=CHEST+PA&services[0].NoOfImages=abc&services[0].WarningTime="
        b"&Services[1][bodypart]=X&services.index=0&services=a&msg_id=M1"
    )
    result = bind(*select_format(FORM), body)
    assert result.ok, result.errors  # not even a bad number is looked at
    assert result.model is not None
    assert (result.model.msg_id, result.model.services) == ("M1", None)
    assert result.warnings == [
        "form posts never bound services: 6 services keys ignored, as the old server did"
    ]


def test_no_warning_without_services_keys() -> None:
    result = bind_form(b"msg_id=M1&servicesX=1&service=2")
    assert result.warnings == []


def test_a_bad_key_fails_the_whole_body_wherever_it_is() -> None:
    body = b"name=a&" + b"k=v&" * 500 + b"x%5By=1"
    result = bind_form(body)
    assert result.model is None
    assert list(result.errors) == [""]


def test_studydate_error_does_not_echo_text() -> None:
    result = bind_form(b"studyDate=CHAN+TAI+MAN")
    assert result.errors == {"studyDate": ["The value sent is not valid for studyDate."]}
    result = bind_form(b"studyDate=2025-02-30")
    assert result.errors == {"studyDate": ["The value '2025-02-30' is not valid for studyDate."]}


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        # dates.parse_dotnet reads the same value from it: kept as sent, as JSON keeps it
        ("2025-10-26T15:51:31.8166249+08:00", "2025-10-26T15:51:31.8166249+08:00"),
        ("2025-10-26T10:00:00-05:30", "2025-10-26T10:00:00-05:30"),
        (" 2025-10-26 ", " 2025-10-26 "),
        ("10/26/2025", "10/26/2025"),
        # else the value .NET parsed, in a shape dates.parse_dotnet reads
        ("Sun, 26 Oct 2025 10:00:00 GMT", "2025-10-26T10:00:00Z"),
        ("2025-10-26T10:00:00.12345678", "2025-10-26T10:00:00.1234568"),
        ("2025-10-26 10 PM +08", "2025-10-26T22:00:00+08:00"),
        # a day alone stays a day alone: studyTime completes it (SPEC §3)
        ("Oct 26 2025", "2025-10-26"),
        ("2025/1/6", "2025-01-06"),
        ("2025-10", "2025-10-01"),
        ("Oct 26 2025 12:00 AM", "2025-10-26T00:00:00"),
        ("2025-10-26Z", "2025-10-26T00:00:00Z"),
    ],
)
def test_studydate_is_kept_as_sent_or_as_the_value_it_names(sent: str, stored: str) -> None:
    result = bind_form(b"studyDate=" + quote(sent, safe="").encode())
    assert result.model is not None, result.errors
    assert result.model.studyDate == stored
    parsed = parse_dotnet(stored)
    assert parsed is not None
    assert parsed.date_only is (len(stored.strip()) == 10)


def test_nul_is_stored_as_replacement_with_a_warning() -> None:
    """Deliberate (limits.py): the reference binds NUL; no store can hold it."""
    result = bind(*select_format(FORM), b"name=a%00b&msg_id=M")
    assert result.model is not None
    assert result.model.name == "a\ufffdb"
    assert any("name" in w for w in result.warnings)


@pytest.mark.parametrize("cut", [1, 2])
def test_a_character_cut_by_the_read_buffer_is_lost_as_it_was(cut: int) -> None:
    """The old parser decoded each 32 KiB read on its own (the reference shows it)."""
    pad = READ_BUFFER - len(b"address=") - cut
    result = bind_form(b"address=" + b"a" * pad + "陳".encode() + b"b&name=%E9%99%B3")
    assert result.model is not None
    assert result.model.address is not None
    assert result.model.address.endswith(("a\ufffd\ufffd\ufffdb", "a\ufffd\ufffdb")[cut - 1])
    assert result.model.name == "陳"  # escapes are decoded after reading: never cut


def test_many_keys_up_to_the_limit() -> None:
    """The old server had no limit (Int32.MaxValue); ours is MAX_KEYS (hardening)."""
    body = ("&".join(f"k{i}=v" for i in range(MAX_KEYS - 1)) + "&name=x").encode()
    started = time.perf_counter()
    result = bind_form(body)
    assert time.perf_counter() - started < 2
    assert result.ok
    assert result.model is not None
    assert result.model.name == "x"
    over = bind_form(body + b"&k=v")
    assert list(over.errors) == [""]
    assert over.model is None


def test_huge_values_decode_in_bounded_memory() -> None:
    name = url_decode("%E9%99%B3" * 400_000)
    assert name == "陳" * 400_000


@pytest.mark.parametrize(
    ("key", "fails", "name"),
    [
        ("name", False, "name"),
        ("NaMe[]", False, "name"),
        ("n[]a[]m[]e[]", False, "name"),
        ("name[x]", False, None),  # name.x
        ("name[0]", False, None),
        ("name[\u0663]", False, None),
        ("name]", False, None),
        ("name[]]", False, None),  # name]
        ("name[[]]", False, None),  # name.[]
        ("address", False, "Address"),
        ("h\u212aid", False, None),  # Kelvin sign: not ASCII case
        ("name[", True, None),
        ("a[b]c[", True, None),
        ("[]" * 100_000 + "[", True, None),
    ],
)
def test_jquery_keys(key: str, fails: bool, name: str | None) -> None:
    assert jquery_fails(key) is fails
    if not fails:
        assert property_of(key) == name


HOSTILE: dict[str, Callable[[int], bytes]] = {
    "bracket-members": lambda n: b"[a]" * (n // 3) + b"=1",
    "empty-brackets": lambda n: b"[]" * (n // 2) + b"=1",
    "brackets-inside-name": lambda n: b"n" + b"[]" * (n // 2) + b"ame=1",
    "open-brackets-value": lambda n: b"x=" + b"[" * n,
    "open-brackets-key": lambda n: b"[" * n,
    "many-jquery-keys": lambda n: b"k%5B%5D=1&" * (n // 10),
    "surrogate-bytes": lambda n: b"name=" + b"\xed\xa0\x80" * (n // 3),  # a U+FFFD per 3 bytes
    "escaped-surrogates": lambda n: b"name=" + b"%ED%A0%80" * (n // 9),
    "invalid-bytes": lambda n: b"\xff" * n,
}


@pytest.mark.parametrize("make", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_bodies_cost_linear(make: Callable[[int], bytes]) -> None:
    assert_linear(bind_form, make, MIB)
