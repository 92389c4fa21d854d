"""fields.py is the one description of each DTO field (issue 16): the models, the limits,
the plan, the store's SQL, the reads, masking and OpenAPI follow it. These tests hold the
pieces that cannot be generated from it (the pydantic classes, the derive functions)
to it; tests/integration/test_fields_schema.py holds the migrations to it."""

from __future__ import annotations

import typing
from typing import Any

import pytest

from qcare_ingest import dlq, dto, fields, limits, openapi, plan, store
from qcare_ingest.dto import QCareDto, ServicesInfo
from qcare_ingest.fields import FIELDS, SERVICE_FIELDS, registers
from qcare_ingest.sqlnamed import Named


def test_the_models_hold_the_tables_fields_in_order() -> None:
    # the canonical JSON (the queue's body) is written in the model's order
    assert list(QCareDto.model_fields) == [f.name for f in FIELDS]
    assert list(ServicesInfo.model_fields) == [f.name for f in SERVICE_FIELDS]
    assert list(QCareDto().model_dump()) == [f.name for f in FIELDS]


def test_integer_fields_are_ints_and_the_rest_text() -> None:
    for spec in SERVICE_FIELDS:
        args = typing.get_args(ServicesInfo.model_fields[spec.name].annotation)
        kinds = set(args) or {ServicesInfo.model_fields[spec.name].annotation}
        assert (int in kinds) == spec.integer, spec.name
        assert (str in kinds) == (not spec.integer), spec.name
    for spec in FIELDS:
        if spec.name != "services":
            assert QCareDto.model_fields[spec.name].annotation == str | None, spec.name
    assert {"noOfImages", "warningTime"} == dto.SERVICE_INT_FIELDS


def test_wire_names_and_limits_come_from_the_table() -> None:
    assert {f.wire: f.name for f in FIELDS} == dto.DTO_FIELDS
    assert dto.DTO_FIELDS["Address"] == "address"
    assert dto.SERVICE_FIELDS == {
        "studyDesc": "studyDesc",
        "bodypart": "bodypart",
        "NoOfImages": "noOfImages",
        "WarningTime": "warningTime",
    }
    texts = [f.name for f in FIELDS if f.sql_type == "text"]
    assert list(limits.DTO_LIMITS) == texts  # every text field has its limit
    assert list(limits.SERVICE_LIMITS) == [f.name for f in SERVICE_FIELDS if not f.integer]
    assert {n for n, lim in limits.DTO_LIMITS.items() if lim.identifier} == {
        "msg_id",
        "accessionNo",
    }


def test_names_are_unique_and_registers_are_known() -> None:
    assert len(fields.BY_NAME) == len(FIELDS)
    assert len({f.wire.lower() for f in FIELDS}) == len(FIELDS)  # Json.NET ignores case
    assert len(fields.SERVICE_BY_NAME) == len(SERVICE_FIELDS)
    for derived in (*fields.PATIENT_DERIVED, *fields.ORDER_DERIVED):
        assert derived.register in fields.BY_NAME
    assert {d.register for d in fields.PATIENT_DERIVED} <= {f.name for f in registers("patient")}
    assert {d.register for d in fields.ORDER_DERIVED} <= {f.name for f in registers("order")}
    for spec in (*FIELDS, *SERVICE_FIELDS):
        if spec.identifier:
            assert spec.personal, spec.name


def test_the_plan_keeps_the_tables_registers() -> None:
    assert plan.PATIENT_REGISTERS == ("name", "hkid", "passno", "gender", "dob", "address")
    assert plan.ORDER_REGISTERS[-2:] == ("services", "patient")
    assert set(plan.ORDER_REGISTERS[:-1]) == {f.name for f in registers("order")}
    assert {
        f.name: f.column for f in registers("patient") if f.column is not None
    } == store.PATIENT_COLUMNS
    assert store.ORDER_COLUMNS["patient"] == "patient_key"
    assert store.ORDER_COLUMNS["refClinicFullname"] == "ref_clinic_fullname2"


def _dto(accession: str) -> QCareDto:
    return QCareDto(msg_id="m", accessionNo=accession, studyDate="2025-10-26")


def test_an_accession_too_long_for_a_worklist_is_a_warning() -> None:
    assert fields.DICOM_SH_MAX == 16
    assert plan.make_plan(_dto("A" * 16)).warnings == []
    assert plan.make_plan(_dto(" " + "A" * 16 + " ")).warnings == []  # kept stripped
    assert plan.make_plan(_dto("A" * 17)).warnings == [
        "accessionNo is longer than 16 characters: a DICOM worklist cannot carry it; "
        "the order is left off the worklist"
    ]
    assert plan.make_plan(_dto("醫" * 17)).warnings == [plan.LONG_ACCESSION]


def test_derive_functions_fill_exactly_the_derived_columns() -> None:
    patient: dict[str, Any] = {c: None for c in store.PATIENT_COLUMNS.values()}
    patient.update(hkid_raw="A123456(3)", gender_raw="男", dob_raw="1970-01-02")
    before = set(patient)
    store._patient_derived(patient)
    assert set(patient) - before == {d.column for d in fields.PATIENT_DERIVED}
    assert (patient["hkid"], patient["hkid_valid"], patient["gender"]) == ("A1234563", True, "M")
    order: dict[str, Any] = {c: None for c in store.ORDER_COLUMNS.values()}
    order["study_date_raw"] = "2025-10-26T15:51:31+08:00"
    before = set(order)
    store._order_derived(order)
    assert set(order) - before == {d.column for d in fields.ORDER_DERIVED}
    assert set(store.PATIENT_WRITE) == set(patient)
    assert set(store.ORDER_WRITE) == set(order)


def test_the_write_statement_takes_what_a_batch_gives() -> None:
    values = {
        **store._changed("patients", {}, store.PATIENT_WRITE, store._patient_derived),
        **store._changed("orders", {}, store.ORDER_WRITE, store._order_derived),
        **store._service_arrays({"A1": [{"studyDesc": "CHEST", "bodypart": None,
                                          "noOfImages": None, "warningTime": 0}]}),
        "inbox_msg_id": [],
        "inbox_status": [],
        "inbox_stale_for": [],
    }  # fmt: skip
    args = store._WRITE.args(values)
    assert len(args) == len(store._WRITE.names)
    assert ["CHEST"] in args
    assert f"${len(args)}::text[]" in store._WRITE.sql
    assert ":patients_key" not in store._WRITE.sql


def test_masking_shows_exactly_what_it_showed_before_the_table() -> None:
    assert {
        "msg_id", "accessionNo", "studyDate", "studyTime", "location", "plan_type",
        "ref_doctor", "ref_clinic_fullname", "csCode", "modality", "refClinicFullname",
        "examClinicFullName",
    } == dlq.SHOWN_FIELDS  # fmt: skip
    assert {"studyDesc", "bodypart", "noOfImages", "warningTime"} == dlq.SHOWN_SERVICE_FIELDS
    assert {"hkid", "passno"} == dlq.IDENTIFIERS
    for spec in FIELDS:  # whatever is personal is masked
        if spec.personal:
            assert spec.name not in dlq.SHOWN_FIELDS


def test_openapi_descriptions_are_the_tables() -> None:
    doc = openapi.document()
    schemas = doc["components"]["schemas"]
    for model in ("QCareDto", "QCareDtoRequest", "QCareDtoXml", "QCareDtoForm", "OrderView"):
        props = schemas[model]["properties"]
        for spec in FIELDS:
            if spec.name in props and spec.name != "studyDate":
                assert props[spec.name]["description"] == spec.description, (model, spec.name)
    for model in ("ServicesInfo", "ServicesInfoRequest", "ServicesInfoXml"):
        for spec in SERVICE_FIELDS:
            assert schemas[model]["properties"][spec.name]["description"] == spec.description
    normalized = schemas["Normalized"]["properties"]
    for derived in (*fields.PATIENT_DERIVED, *fields.ORDER_DERIVED):
        assert normalized[derived.read]["description"] == derived.description
    assert schemas["QCareDtoXml"]["properties"]["address"]["xml"] == {"name": "Address"}


# --- sqlnamed ---


def test_named_parameters_become_positional_once() -> None:
    q = Named(
        "SELECT :a::text[], :b, :a, ':not_a_name', \"col:x\", x::int, '12:30'::time "
        "WHERE y = :b_2 AND z=:c"
    )
    assert q.sql == (
        "SELECT $1::text[], $2, $1, ':not_a_name', \"col:x\", x::int, '12:30'::time "
        "WHERE y = $3 AND z=$4"
    )
    assert q.names == ("a", "b", "b_2", "c")
    assert q.args({"c": 4, "b_2": 3, "b": 2, "a": 1}) == [1, 2, 3, 4]


@pytest.mark.parametrize("values", [{"a": 1}, {"a": 1, "b": 2, "c": 3}, {"a": 1, "c": 3}], ids=str)
def test_named_parameters_must_all_be_given_and_nothing_else(values: dict[str, int]) -> None:
    with pytest.raises(KeyError):
        Named("SELECT :a, :b").args(values)
