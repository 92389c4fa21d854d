"""The FHIR mapping, pure: every resource it writes validates with fhir.resources' R4B
models (the R4 line fhir.resources ships for pydantic 2), whatever the stored values."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.servicerequest import ServiceRequest
from hypothesis import given, settings
from hypothesis import strategies as st

from qcare_ingest.fhir_capability import capability_statement
from qcare_ingest.fhir_resources import (
    ORDER_WRITERS,
    PATIENT_ELEMENTS,
    fhir_elements,
    operation_outcome,
    patient,
    searchset,
    service_request,
)
from qcare_ingest.fields import FIELDS, SERVICE_FIELDS

NOW = datetime(2025, 10, 26, 7, 51, 31, 816624, tzinfo=UTC)


def _order(**fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "accession_no": "ACC-1",
        "patient_key": "HKID:A1234563",
        "study_date_raw": "2025-10-26T15:51:31.8166249+08:00",
        "study_at": NOW,
        "study_time": None,
        "location": "Room 3",
        "chitno": "C-77",
        "plan_type": "VIP",
        "ref_doctor": "Dr WONG",
        "ref_clinic_fullname": "Central Clinic",
        "cs_code": "XR01",
        "modality": "CR",
        "ref_clinic_fullname2": None,
        "exam_clinic_fullname": "Kowloon X-ray",
        "created_at": NOW,
        "updated_at": NOW,
    }
    row.update(fields)
    return row


LINES = [
    {"study_desc": "CHEST PA", "bodypart": "CHEST", "no_of_images": 2, "warning_time": 30},
    {"study_desc": "L-SPINE", "bodypart": "SPINE", "no_of_images": None, "warning_time": 0},
]


def test_every_fhir_element_in_fields_has_a_writer() -> None:
    named = {f.fhir for f in (*FIELDS, *SERVICE_FIELDS) if f.fhir is not None}
    assert named == set(ORDER_WRITERS) | set(PATIENT_ELEMENTS)
    assert fhir_elements()["accessionNo"] == "ServiceRequest.identifier[ACSN]"


def test_service_request_mapping() -> None:
    sr = service_request(_order(), LINES)
    ServiceRequest.model_validate(sr)
    assert sr["id"] == "ACC-1"
    assert sr["status"] == "active"
    assert sr["intent"] == "order"
    acsn, chit = sr["identifier"]
    assert acsn["system"] == "urn:qcare:id:accession"
    assert acsn["value"] == "ACC-1"
    assert acsn["type"]["coding"][0]["code"] == "ACSN"
    assert chit == {"system": "urn:qcare:id:chitno", "value": "C-77"}
    assert sr["subject"]["reference"] == "Patient/hkid-A1234563"
    assert sr["occurrenceDateTime"] == "2025-10-26T15:51:31.816624+08:00"
    assert sr["authoredOn"] == "2025-10-26T15:51:31.816624+08:00"
    assert sr["requester"] == {"display": "Dr WONG (Central Clinic)"}
    assert sr["performer"] == [{"display": "Kowloon X-ray"}]
    assert sr["category"][0]["coding"][0] == {
        "system": "http://dicom.nema.org/resources/ontology/DCM",
        "code": "CR",
    }
    assert sr["code"] == {
        "coding": [{"system": "urn:qcare:code:exam", "code": "XR01"}],
        "text": "CHEST PA; L-SPINE",
    }
    assert sr["orderDetail"] == [{"text": "CHEST PA"}, {"text": "L-SPINE"}]
    assert sr["bodySite"] == [{"text": "CHEST"}, {"text": "SPINE"}]
    assert sr["quantityQuantity"] == {"value": 2, "unit": "image"}
    assert sr["locationCode"] == [{"text": "Room 3"}]
    assert sr["insurance"] == [{"display": "VIP"}]
    assert (
        sr["note"][0]["text"] == "line 1; CHEST PA; body part CHEST; 2 image(s); warn after 30 min"
    )
    assert sr["note"][1]["text"] == "line 2; L-SPINE; body part SPINE"


def test_absent_values_leave_their_elements_out() -> None:
    bare = {
        "accession_no": "A 1",
        "patient_key": None,
        "study_date_raw": None,
        "study_at": None,
        "modality": "  ",
        "created_at": NOW,
    }
    sr = service_request(bare, None)
    ServiceRequest.model_validate(sr)
    assert sr["id"].startswith("acc-")
    assert sr["subject"] == {"display": "patient not known"}
    assert set(sr) == {
        "resourceType", "id", "identifier", "status", "intent", "subject", "authoredOn",
    }  # fmt: skip


def test_a_date_only_study_is_a_date() -> None:
    sr = service_request(_order(study_date_raw="2025-10-26", study_at=NOW), [])
    assert sr["occurrenceDateTime"] == "2025-10-26"
    timed = service_request(_order(study_date_raw="2025-10-26", study_time="15:51"), [])
    assert timed["occurrenceDateTime"].startswith("2025-10-26T15:51")


def test_a_modality_that_is_no_dicom_code_is_text() -> None:
    sr = service_request(_order(modality="X-ray (plain)"), [])
    assert sr["category"] == [{"text": "X-ray (plain)"}]
    assert service_request(_order(modality="FOO"), [])["category"] == [{"text": "FOO"}]
    lower = service_request(_order(modality=" dx "), [])["category"][0]
    assert lower["coding"][0]["code"] == "DX"


def test_patient_mapping() -> None:
    row = {
        "patient_key": "HKID:A1234563",
        "hkid": "A1234563",
        "passno": " k1234567 ",
        "name": "CHAN, Tai Man",
        "gender": "F",
        "dob": date(1980, 1, 2),
        "address": "1 Queen's Road",
        "updated_at": NOW,
    }
    p = patient(row)
    Patient.model_validate(p)
    assert p["id"] == "hkid-A1234563"
    assert [(i["system"], i["value"]) for i in p["identifier"]] == [
        ("urn:qcare:id:hkid", "A1234563"),
        ("urn:qcare:id:passport", "K1234567"),
    ]
    assert p["name"] == [
        {"use": "official", "text": "CHAN, Tai Man", "family": "CHAN", "given": ["Tai Man"]}
    ]
    assert p["gender"] == "female"
    assert p["birthDate"] == "1980-01-02"
    assert p["address"] == [{"text": "1 Queen's Road"}]
    empty = patient({"patient_key": "PASSNO:K1", "passno": "k1", "gender": "U"})
    assert empty == {
        "resourceType": "Patient",
        "id": "passno-K1",
        "identifier": [
            {
                "use": "official",
                "system": "urn:qcare:id:passport",
                "value": "K1",
                "type": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "PPN"}
                    ],
                    "text": "Passport number",
                },
            }
        ],
        "gender": "unknown",
    }


ORDER_TEXT_COLUMNS = (
    "location", "chitno", "plan_type", "ref_doctor", "ref_clinic_fullname", "cs_code",
    "modality", "ref_clinic_fullname2", "exam_clinic_fullname", "study_date_raw", "study_time",
)  # fmt: skip
_text = st.one_of(st.none(), st.text(max_size=40))
# What asyncpg can hand back for study_at: any instant to_instant lets through (Hong Kong
# time must hold it too), and PostgreSQL's -infinity / infinity as naive datetime.min / max
# (rows written before to_instant refused UTC's first and last microsecond: a search over
# one of those was a 500)
_instants = st.one_of(
    st.none(),
    st.datetimes(
        min_value=datetime(1, 1, 1, 0, 0, 0, 1),
        max_value=datetime(9999, 12, 31, 15, 59, 59),
        timezones=st.just(UTC),
    ),
    st.sampled_from([datetime.min, datetime.max]),
)


@settings(max_examples=150, deadline=None)
@given(
    accession=st.text(min_size=1, max_size=64).filter(lambda s: "\x00" not in s),
    values=st.fixed_dictionaries(dict.fromkeys(ORDER_TEXT_COLUMNS, _text)),
    study_at=_instants,
    lines=st.one_of(
        st.none(),
        st.lists(
            st.fixed_dictionaries(
                {
                    "study_desc": _text,
                    "bodypart": _text,
                    "no_of_images": st.one_of(st.none(), st.integers(0, 10_000)),
                    "warning_time": st.integers(0, 10_000),
                }
            ),
            max_size=4,
        ),
    ),
    key=st.one_of(st.none(), st.text(min_size=1, max_size=32).map(lambda s: "PASSNO:" + s.upper())),
)
def test_any_stored_order_is_a_valid_service_request(
    accession: str,
    values: dict[str, Any],
    study_at: datetime | None,
    lines: list[dict[str, Any]] | None,
    key: str | None,
) -> None:
    row = {**values, "accession_no": accession, "patient_key": key, "study_at": study_at}
    row["created_at"] = row["updated_at"] = NOW
    ServiceRequest.model_validate(service_request(row, lines))


@settings(max_examples=150, deadline=None)
@given(
    hkid=_text,
    passno=st.text(min_size=1, max_size=32).filter(str.strip),
    name=_text,
    gender=st.sampled_from([None, "M", "F", "U"]),
    dob=st.one_of(st.none(), st.dates()),
    address=_text,
)
def test_any_stored_patient_is_a_valid_patient(
    hkid: str | None,
    passno: str,
    name: str | None,
    gender: str | None,
    dob: date | None,
    address: str | None,
) -> None:
    row = {
        "patient_key": "PASSNO:" + passno.strip().upper(),
        "hkid": hkid,
        "passno": passno,
        "name": name,
        "gender": gender,
        "dob": dob,
        "address": address,
        "updated_at": NOW,
    }
    Patient.model_validate(patient(row))


def test_bundle_capability_and_outcome_validate() -> None:
    sr = service_request(_order(), LINES)
    bundle = searchset(
        "http://h/fhir", [sr], 3, {"self": "http://h/fhir/ServiceRequest?_count=1&_offset=0"}
    )
    Bundle.model_validate(bundle)
    assert bundle["entry"][0]["fullUrl"] == "http://h/fhir/ServiceRequest/ACC-1"
    assert bundle["total"] == 3
    empty = searchset("http://h/fhir", [], 0, {"self": "http://h/fhir/Patient?_id=x"})
    Bundle.model_validate(empty)
    assert "entry" not in empty
    CapabilityStatement.model_validate(capability_statement("http://h/fhir", auth=True))
    OperationOutcome.model_validate(operation_outcome("invalid", "Parameter 'x' is bad."))
