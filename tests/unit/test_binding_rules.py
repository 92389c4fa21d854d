"""Binding rules of WIRE.md beyond the manifest's vectors."""

from __future__ import annotations

import codecs
import json

import pytest

from qcare_ingest.binding import BindResult, UnsupportedMediaTypeError, bind, select_format


def bind_as(ctype: str, body: bytes) -> BindResult:
    return bind(*select_format(ctype), body)


SAMPLE = {"msg_id": "m1", "name": "陳大文", "accessionNo": "A1"}


@pytest.mark.parametrize(
    ("ctype", "body"),
    [
        ("application/json", codecs.BOM_UTF16_LE + json.dumps(SAMPLE).encode("utf-16-le")),
        ("application/json; charset=utf-16", json.dumps(SAMPLE).encode("utf-16-le")),
        ("application/json", codecs.BOM_UTF8 + json.dumps(SAMPLE, ensure_ascii=False).encode()),
    ],
)
def test_json_encodings(ctype: str, body: bytes) -> None:
    result = bind_as(ctype, body)
    assert result.ok
    assert result.model is not None
    assert result.model.name == "陳大文"


def test_utf16_xml_with_matching_declaration() -> None:
    text = '<?xml version="1.0" encoding="utf-16"?><QCareDto><name>陳大文</name></QCareDto>'
    body = codecs.BOM_UTF16_LE + text.encode("utf-16-le")
    result = bind_as("application/xml; charset=utf-16", body)
    assert result.ok
    assert result.model is not None
    assert result.model.name == "陳大文"
    # the reference: the XML reader expects UTF-8 unless the charset is utf-16, BOM or not
    assert list(bind_as("application/xml", body).errors) == [""]


def test_ms_date_form_is_kept_as_sent() -> None:
    result = bind_as("application/json", b'{"studyDate":"\\/Date(1761465091816+0800)\\/"}')
    assert result.ok
    assert result.model is not None
    assert result.model.studyDate == "/Date(1761465091816+0800)/"


def test_json_duplicate_key_last_wins_and_names_ignore_case() -> None:
    result = bind_as("application/json", b'{"name":"a","NAME":"b","Address":"x"}')
    assert result.model is not None
    assert (result.model.name, result.model.address) == ("b", "x")


def test_id_not_leading_is_an_ordinary_property() -> None:
    body = b'{"services":[{"studyDesc":"a","$id":"2"},{"$ref":"2"}]}'
    result = bind_as("application/json", body)
    assert result.ok
    assert result.model is not None
    assert result.model.services is not None
    assert result.model.services[1] is None  # j09: the $ref finds nothing


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("1.0", "whole number"),
        ('"7.0"', "'7.0'"),
        ("2147483648", "Int32 range"),
        ("true", "boolean"),
    ],
)
def test_json_int_errors_say_why(value: str, fragment: str) -> None:
    result = bind_as("application/json", f'{{"services":[{{"noOfImages":{value}}}]}}'.encode())
    # a bad number literal leaves Json.NET's reader mid-object: its recovery adds the
    # keys of the containers it then trips over (as the reference server does)
    assert "services[0].noOfImages" in result.errors
    assert fragment in result.errors["services[0].noOfImages"][0]


def test_json_numbers_become_their_dotnet_text() -> None:
    # the reference server: Json.NET reads 1.50 as a double and writes it with ToString()
    result = bind_as("application/json", b'{"name":1.50,"dob":19800229,"gender":false}')
    assert result.model is not None
    assert (result.model.name, result.model.dob, result.model.gender) == (
        "1.5",
        "19800229",
        "False",
    )


def test_form_never_binds_services_and_ignores_charset() -> None:
    """The reference server: `services` is a field, form binding binds properties only
    (more in test_binding_form.py)."""
    body = "services[0].studyDesc=A&services.index=0&name=陳".encode()
    result = bind_as("application/x-www-form-urlencoded; charset=big5", body)
    assert result.ok
    assert result.model is not None
    assert (result.model.name, result.model.services) == ("陳", None)
    assert result.warnings == [
        "form posts never bound services: 2 services keys ignored, as the old server did"
    ]


def test_form_plus_in_date_names_the_value() -> None:
    result = bind_as("application/x-www-form-urlencoded", b"studyDate=2025-10-26T15:51:31+08:00")
    assert result.errors == {
        "studyDate": ["The value '2025-10-26T15:51:31 08:00' is not valid for studyDate."]
    }


def test_xml_repeated_element_first_wins_and_nil() -> None:
    body = (
        b'<QCareDto xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><name>a</name>'
        b'<name>b</name><hkid xsi:nil="true"/><services xsi:nil="true"/></QCareDto>'
    )
    result = bind_as("text/xml", body)
    assert result.model is not None
    # the reference: a string ignores xsi:nil, the services list is always there
    assert (result.model.name, result.model.hkid, result.model.services) == ("a", "", [])
    assert any("repeated" in w and "name" in w for w in result.warnings)


@pytest.mark.parametrize("ctype", [None, "text/plain", "application/octet-stream", "image/png"])
def test_unsupported_types(ctype: str | None) -> None:
    with pytest.raises(UnsupportedMediaTypeError, match="not supported"):
        select_format(ctype)
