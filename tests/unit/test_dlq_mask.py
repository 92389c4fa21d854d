"""`dlq show` masks every personal field by default (issue 14); --reveal is the exception."""

from __future__ import annotations

import json

from qcare_ingest.dlq import masked_body
from qcare_ingest.dto import DTO_FIELDS

PERSONAL = {
    "name": "WONG SECRET NAME",
    "hkid": "K987654(2)",
    "passno": "E99887766",
    "dob": "1961-07-23",
    "address": "88 SECRET ROAD",
    "gender": "F",
    "chitno": "CHIT-77123",
}


def test_every_personal_field_is_masked() -> None:
    body = {"msg_id": "m1", "accessionNo": "ACC-1", "modality": "CR", **PERSONAL}
    shown = masked_body(json.dumps(body).encode())
    assert shown == {
        "msg_id": "m1",
        "accessionNo": "ACC-1",
        "modality": "CR",
        "name": "***",
        "hkid": "K98****(2)",
        "passno": "E99*****(6)",
        "dob": "***",
        "address": "***",
        "gender": "***",
        "chitno": "***",
    }
    for value in PERSONAL.values():
        assert value not in json.dumps(shown)


def test_unknown_fields_and_shapes_are_masked_too() -> None:
    """An allow-list: a field nobody classified, a differently cased name or a value of an
    unexpected type is masked, not shown."""
    body = {
        "Address": "88 SECRET ROAD",
        "mother_name": "WONG SECRET NAME",
        "accessionNo": {"name": "WONG SECRET NAME"},
        "services": [{"studyDesc": "CHEST PA", "patient": "WONG SECRET NAME"}, "K987654(2)"],
        "msg_id": None,
    }
    shown = masked_body(json.dumps(body).encode())
    assert shown == {
        "Address": "***",
        "mother_name": "***",
        "accessionNo": "***",
        "services": [{"studyDesc": "CHEST PA", "patient": "***"}, "***"],
        "msg_id": None,
    }
    assert masked_body(b'["K987654(2)"]') == {"masked_body": "list", "bytes": 14}


def test_every_dto_field_is_classified() -> None:
    """A field added to the DTO is masked until someone decides it is harmless."""
    body = {name: "VALUE-OF-" + name for name in DTO_FIELDS.values() if name != "services"}
    shown = masked_body(json.dumps(body).encode())
    visible = {k for k, v in shown.items() if v == body[k]}
    assert visible == {
        "msg_id", "accessionNo", "studyDate", "studyTime", "location", "plan_type",
        "ref_doctor", "ref_clinic_fullname", "csCode", "modality", "refClinicFullname",
        "examClinicFullName",
    }  # fmt: skip
