"""What the console shows of bodies and DTOs: pretty-printed, personal values masked by the
allow-list (case-insensitively), unparseable bodies hidden until revealed; field_versions."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from gateway.console.pages import patient_label
from gateway.console.renditions import body_rendition, dto_table, mask_tree
from qcare_ingest.console_queries import patient_keys, provenance
from tests.support.payloads import order, vector

PERSONAL = ("CHAN TAI MAN", "A123456(3)", "A1234563", "1 Main St", "1980-01-02", "K9876543")


def person(**more: object) -> bytes:
    return order("m-1", "ACC-1", address="1 Main St", dob="1980-01-02", passno="K9876543", **more)


def test_json_indented_and_masked() -> None:
    r = body_rendition(person(), "application/json; charset=utf-8", reveal=False)
    assert r.kind == "json"
    for value in PERSONAL:
        assert value not in r.text, value
    data = json.loads(r.text)
    assert data["hkid"] == "A12****(3)"
    assert data["passno"] == "K98****(3)"
    assert data["name"] == "***"
    assert data["accessionNo"] == "ACC-1"
    assert data["services"][0]["studyDesc"] == "CHEST PA"
    assert r.text.startswith("{\n  ")
    shown = body_rendition(person(), "application/json", reveal=True)
    for value in ("CHAN TAI MAN", "A123456(3)", "1 Main St"):
        assert value in shown.text


def test_json_names_are_matched_case_insensitively() -> None:
    body = json.dumps(
        {
            "MSG_ID": "m",
            "Name": "CHAN TAI MAN",
            "HKID": "A123456(3)",
            "Location": "RM 1",
            "Services": [{"STUDYDESC": "X", "Secret": "s"}],
            "extra": {"nested": "CHAN TAI MAN"},
            "list": ["CHAN TAI MAN"],
        }
    )
    data = json.loads(body_rendition(body.encode(), "text/json", reveal=False).text)
    assert data["Name"] == "***"
    assert data["HKID"] == "A12****(3)"
    assert data["Location"] == "RM 1"
    assert data["Services"] == [{"STUDYDESC": "X", "Secret": "***"}]
    assert data["extra"] == {"nested": "***"}
    assert data["list"] == ["***"]


def test_a_root_that_is_not_an_object_is_masked() -> None:
    assert mask_tree(["CHAN TAI MAN", {"name": "x"}]) == ["***", {"name": "***"}]
    assert mask_tree("CHAN TAI MAN") == "***"


def test_xml_indented_and_masked() -> None:
    body = vector("xml_01_help_page_sample.xml").replace(
        b"<name>sample string 2<", b"<name>CHAN TAI MAN<"
    )
    r = body_rendition(body, "application/xml", reveal=False)
    assert r.kind == "xml"
    assert "CHAN TAI MAN" not in r.text
    assert "<name>***</name>" in r.text
    assert "<location>sample string 8</location>" in r.text
    assert "<Address>***</Address>" in r.text  # the C# element name, masked too
    assert "\n  <msg_id>" in r.text
    assert "CHAN TAI MAN" in body_rendition(body, "application/xml", reveal=True).text


def test_form_as_pairs_masked() -> None:
    r = body_rendition(
        vector("form_01_mvc_style.form"), "application/x-www-form-urlencoded", reveal=False
    )
    pairs = {k: (v, masked) for k, v, masked in r.pairs}
    assert r.kind == "form"
    assert pairs["name"] == ("***", True)
    assert pairs["Address"] == ("***", True)
    assert pairs["services[0].studyDesc"] == ("CHEST PA", False)
    assert pairs["msg_id"] == ("M1", False)
    jquery = b"services%5B0%5D%5BstudyDesc%5D=KUB&hkid=A123456(3)"
    r = body_rendition(jquery, "application/x-www-form-urlencoded", reveal=False)
    assert r.pairs == [("services[0][studyDesc]", "KUB", False), ("hkid", "A12****(3)", True)]


@pytest.mark.parametrize(
    ("body", "ctype"),
    [
        (b'{"name": "CHAN TAI MAN",', "application/json"),
        (b"<QCareDto><name>CHAN TAI MAN</name>", "application/xml"),
        (b'<!DOCTYPE x [<!ENTITY e "CHAN TAI MAN">]><x>&e;</x>', "application/xml"),
        (b"CHAN TAI MAN", None),
        (vector("json_21_hostile_deep_nesting_100k.json"), "application/json"),
    ],
)
def test_an_unreadable_body_is_hidden_until_revealed(body: bytes, ctype: str | None) -> None:
    r = body_rendition(body, ctype, reveal=False)
    assert r.kind == "hidden"
    assert r.text == ""
    assert r.note is not None
    assert "hidden" in r.note
    revealed = body_rendition(body, ctype, reveal=True)
    assert revealed.kind == "text"
    assert revealed.text.startswith(body[:20].decode())


def test_utf16_and_bom_bodies() -> None:
    body = '\ufeff{"msg_id":"m","name":"陳大文","location":"九龍"}'.encode("utf-16-le")
    r = body_rendition(body, "application/json; charset=utf-16", reveal=False)
    assert r.kind == "json"
    assert "九龍" in r.text
    assert "陳大文" not in r.text


def test_dto_table() -> None:
    table = dto_table(person().decode(), reveal=False)
    rows = {k: (v, masked) for k, v, masked in table.rows}
    assert rows["name"] == ("***", True)
    assert rows["hkid"] == ("A12****(3)", True)
    assert rows["accessionNo"] == ("ACC-1", False)
    assert table.service_columns == ["studyDesc", "bodypart", "noOfImages"]
    assert table.services == [
        [("studyDesc", "CHEST PA", False), ("bodypart", "CHEST", False), ("noOfImages", "2", False)]
    ]
    revealed = {k: v for k, v, _ in dto_table(person().decode(), reveal=True).rows}
    assert revealed["name"] == "CHAN TAI MAN"
    assert dto_table("not json", reveal=False).unreadable
    assert dto_table('{"msg_id": "m"}', reveal=False).services is None


def test_provenance_parses_field_versions() -> None:
    p = provenance("00001764705792123456|msg-1|with-bar")
    assert p is not None
    assert p.msg_id == "msg-1|with-bar"
    assert p.at == datetime(2025, 12, 2, 20, 3, 12, 123456, tzinfo=UTC)
    assert provenance(None) is None
    assert provenance("garbage") is None
    bad = provenance("x|m")
    assert bad is not None
    assert bad.at is None


def test_search_keys_and_labels() -> None:
    assert patient_keys(" a123456 (3) ") == ["HKID:A1234563", "PASSNO:A123456 (3)"]
    assert patient_keys("k1234567") == ["HKID:K1234567", "PASSNO:K1234567"]
    assert patient_keys("  ") == []
    assert patient_label("HKID:A1234563") == "HKID A12****(3)"
    assert patient_label(None) == "-"


# --- what the outside review found shown in full before a reveal (F4) ---

LEAKS = ("CHAN TAI MAN", "A1234563", "E12345678", "K350192")


@pytest.mark.parametrize(
    ("body", "ctype"),
    [
        (b'{"$id":"CHAN TAI MAN A1234563","msg_id":"r","accessionNo":"R1"}', "application/json"),
        (b'{"msg_id":"r","junk":{"$id":"E12345678","$ref":"A1234563"}}', "application/json"),
        (b'{"msg_id":"r","name":{"location":"CHAN TAI MAN"}}', "application/json"),
        (b'{"msg_id":"r","CHAN TAI MAN A1234563":1,"E12345678":2}', "application/json"),
        (b'{"msg_id":"r","services":[{"studyDesc":{"bodypart":"A1234563"}}]}', "text/json"),
        (b'{"msg_id":"r","services":{"$id":"9","$values":[{"x":"A1234563"}]}}', "text/json"),
        (
            b'<QCareDto xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
            b'<name xsi:type="CHAN TAI MAN">x</name><gender xsi:nil="K350192(2)"/></QCareDto>',
            "application/xml",
        ),
        (b'<QCareDto xmlns="urn:CHAN-TAI-MAN:A1234563"><msg_id>r</msg_id></QCareDto>', "text/xml"),
        (b"<QCareDto><name><location>CHAN TAI MAN</location></name></QCareDto>", "text/xml"),
        (b"<QCareDto><A1234563>1</A1234563></QCareDto>", "text/xml"),
        (b"msg_id=r&hkid[accessionNo]=A1234563&passno.studyDesc=E12345678", None),
        (b"msg_id=r&CHAN+TAI+MAN+A1234563=1&services[0].name=E12345678", None),
    ],
)
def test_nothing_personal_is_shown_before_a_reveal(body: bytes, ctype: str | None) -> None:
    r = body_rendition(body, ctype or "application/x-www-form-urlencoded", reveal=False)
    assert r.kind in ("json", "xml", "form")
    shown_text = r.text + "".join(f"{k}={v}" for k, v, _ in r.pairs)
    for leak in LEAKS:
        assert leak not in shown_text, (leak, shown_text)
    revealed = body_rendition(body, ctype or "application/x-www-form-urlencoded", reveal=True)
    revealed_text = revealed.text + "".join(f"{k}={v}" for k, v, _ in revealed.pairs)
    assert any(leak in revealed_text for leak in LEAKS)


def test_allow_listed_fields_at_their_places_stay_shown() -> None:
    body = (
        b'{"$id":"1","msg_id":"r","location":"RM 1","services":{"$id":"2","$values":'
        b'[{"$id":"3","studyDesc":"CHEST PA","noOfImages":2}]}}'
    )
    data = json.loads(body_rendition(body, "application/json", reveal=False).text)
    assert data == {
        "$id": "1", "msg_id": "r", "location": "RM 1",
        "services": {"$id": "2", "$values": [{"$id": "3", "studyDesc": "CHEST PA",
                                              "noOfImages": 2}]},
    }  # fmt: skip
    form = b"services%5B0%5D%5BstudyDesc%5D=KUB&services[1].bodypart=CHEST&location=RM+2"
    pairs = body_rendition(form, "application/x-www-form-urlencoded", reveal=False).pairs
    assert pairs == [
        ("services[0][studyDesc]", "KUB", False),
        ("services[1].bodypart", "CHEST", False),
        ("location", "RM 2", False),
    ]
    xml = vector("xml_01_help_page_sample.xml")
    text = body_rendition(xml, "application/xml", reveal=False).text
    assert "<studyDesc>sample string 1</studyDesc>" in text
    assert 'xsi:nil="true"' in text or "xsi:nil" not in xml.decode()


def test_a_huge_form_value_is_cut_revealed_or_not() -> None:
    body = b"msg_id=r&location=" + b"x" * 4_000_000 + b"&name=CHAN"
    for reveal in (False, True):
        pairs = body_rendition(body, "application/x-www-form-urlencoded", reveal=reveal).pairs
        assert sum(len(k) + len(v) for k, v, _ in pairs) < 1_100_000
        assert pairs[0] == ("msg_id", "r", False)
        assert pairs[-1][0] == "…"
        assert "2 field(s) not shown" in pairs[-1][1]
