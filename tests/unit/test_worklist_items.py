"""Worklist items (a row -> what is returned), queries (identifier -> keys -> response) and
the SQL a query becomes."""

from __future__ import annotations

import io
import warnings
from datetime import UTC, date, datetime
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from qcare_ingest.config import Settings
from qcare_ingest.worklist import items, query, reads
from qcare_ingest.worklist.matching import InvalidQuery


def row(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "accession_no": "ACC-1",
        "study_at": datetime(2025, 10, 26, 7, 51, 31, tzinfo=UTC),  # 15:51:31 in Hong Kong
        "location": "ROOM 1",
        "ref_doctor": "WONG SIU MING",
        "cs_code": "XR001",
        "modality": "cr",
        "exam_clinic_fullname": "Central Clinic",
        "name": "CHAN TAI MAN",
        "hkid": "A1234563",
        "passno": None,
        "gender": "M",
        "dob": date(1980, 1, 2),
        "descriptions": "CHEST PA; ABDOMEN",
    }
    base.update(changes)
    return base


def test_an_item_holds_every_mapped_attribute() -> None:
    it = items.item(row(), {"ROOM 1": "CR01"})
    assert dict(it.top) == {
        "PatientName": "CHAN^TAI MAN",
        "PatientID": "A1234563",
        "IssuerOfPatientID": "HKID",
        "PatientBirthDate": "19800102",
        "PatientSex": "M",
        "AccessionNumber": "ACC-1",
        "ReferringPhysicianName": "WONG^SIU MING",
        "RequestedProcedureID": "XR001",
        "RequestedProcedureDescription": "CHEST PA; ABDOMEN",
        "StudyInstanceUID": items.study_instance_uid("ACC-1"),
    }
    assert dict(it.step) == {
        "Modality": "CR",
        "ScheduledStationAETitle": "CR01",
        "ScheduledProcedureStepStartDate": "20251026",
        "ScheduledProcedureStepStartTime": "155131",
        "ScheduledProcedureStepDescription": "CHEST PA; ABDOMEN",
        "ScheduledProcedureStepLocation": "ROOM 1",
        "ScheduledStationName": "Central Clinic",
        "ScheduledProcedureStepID": "ACC-1",
    }
    assert it.other_ids == ()
    assert set(it.top) == items.TOP_KEYS
    assert set(it.step) == items.STEP_KEYS
    # a query's keys only: what it does not ask for is never worked out
    some = items.item(row(), {}, wanted={"PatientName", "Modality"})
    assert (dict(some.top), dict(some.step)) == (
        {"PatientName": "CHAN^TAI MAN"},
        {"Modality": "CR"},
    )
    # every attribute fields.py maps is in the item, where fields.py says
    for keyword, (_, in_step) in items.MAPPED.items():
        assert keyword in (it.step if in_step else it.top)


def test_the_study_uid_is_stable_and_valid() -> None:
    uid = items.study_instance_uid("ACC-1")
    assert uid == items.study_instance_uid("ACC-1") != items.study_instance_uid("ACC-2")
    assert uid.startswith("2.25.")
    assert len(uid) <= 64
    assert uid[5:].isdigit()
    assert uid == "2.25.91350620083048943525041489461723293898"  # never changes


def test_passport_patients_and_both_identifiers() -> None:
    it = items.item(row(hkid=None, passno=" k1234567 "), {})
    assert (it.top["PatientID"], it.top["IssuerOfPatientID"]) == ("K1234567", "PASSPORT")
    both = items.item(row(passno="K1234567"), {})
    assert both.top["PatientID"] == "A1234563"
    assert both.other_ids == (
        {"PatientID": "K1234567", "IssuerOfPatientID": "PASSPORT", "TypeOfPatientID": "TEXT"},
    )
    nobody = items.item(
        row(name=None, hkid=None, passno=None, gender=None, dob=None, study_at=None), {}
    )
    assert nobody.top["PatientName"] == nobody.top["PatientID"] == ""
    assert nobody.top["PatientSex"] == nobody.step["ScheduledProcedureStepStartDate"] == ""


def test_a_stored_infinity_is_an_item_without_a_start() -> None:
    """PostgreSQL's -infinity / infinity come back from asyncpg as naive datetime.min /
    max (rows written before the worker refused those instants): no start, no crash."""
    for stored in (datetime.min, datetime.max):
        it = items.item(row(study_at=stored), {})
        assert it.step["ScheduledProcedureStepStartDate"] == ""
        assert it.step["ScheduledProcedureStepStartTime"] == ""


def test_values_are_cut_and_cleaned_to_fit_their_vr() -> None:
    it = items.item(
        row(
            name="CHAN, Tai^Man=X",
            location="RADIOLOGY DEPARTMENT ROOM 12",
            descriptions="; ".join(["CHEST PA"] * 20),
            cs_code="A\\B\r\nC",
            modality="c-r",
            gender="U",
            ref_doctor="陳大文",
        ),
        {},
    )
    assert it.top["PatientName"] == "CHAN^Tai Man X"
    assert it.step["ScheduledProcedureStepLocation"] == "RADIOLOGY DEPART"  # SH: 16
    assert len(it.top["RequestedProcedureDescription"]) <= 64
    assert it.top["RequestedProcedureID"] == "A B  C"
    assert it.step["Modality"] == "C_R"
    assert it.top["PatientSex"] == "O"
    assert it.top["ReferringPhysicianName"] == "陳大文"
    long_name = items.person_name("CHAN " + "TAI " * 40)
    assert len(long_name) <= 64
    assert long_name.startswith("CHAN^TAI")


def identifier(**keys: Any) -> Dataset:
    """A query identifier; values pydicom would warn about (too long) are what some tests
    send, as a hostile SCU would."""
    ds = Dataset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for keyword, value in keys.items():
            setattr(ds, keyword, value)
    return ds


step = identifier


def encoded(ds: Dataset) -> Dataset:
    """The response as it goes on the wire, read back (UTF-8, explicit VR)."""
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any value pydicom finds invalid fails the test
        ds.save_as(buf, enforce_file_format=False)
    return dcmread(io.BytesIO(buf.getvalue()), force=True)


def test_only_the_keys_asked_for_come_back() -> None:
    ident = identifier(
        PatientName="chan*",
        PatientID="",
        AccessionNumber="",
        PatientWeight=None,  # not supported: returned empty, never narrows
        ScheduledProcedureStepSequence=[step(Modality="CR", ScheduledProcedureStepStartDate="")],
    )
    q = query.parse(ident)
    it = items.item(row(), {})
    assert query.matches(q, it)
    out = encoded(query.response(q, it))
    assert out.SpecificCharacterSet == "ISO_IR 192"
    assert [e.keyword for e in out] == [
        "SpecificCharacterSet",
        "AccessionNumber",
        "PatientName",
        "PatientID",
        "PatientWeight",
        "ScheduledProcedureStepSequence",
    ]
    assert out.PatientName == "CHAN^TAI MAN"
    assert out.PatientID == "A1234563"
    assert out.PatientWeight is None or out.PatientWeight == ""
    (sps,) = out.ScheduledProcedureStepSequence
    assert [e.keyword for e in sps] == ["Modality", "ScheduledProcedureStepStartDate"]
    assert sps.ScheduledProcedureStepStartDate == "20251026"


def test_an_empty_step_sequence_returns_the_whole_step() -> None:
    q = query.parse(identifier(ScheduledProcedureStepSequence=[], OtherPatientIDsSequence=[]))
    out = encoded(query.response(q, items.item(row(passno="K1234567"), {})))
    (sps,) = out.ScheduledProcedureStepSequence
    assert {e.keyword for e in sps} == items.STEP_KEYS
    assert sps.ScheduledStationAETitle in (None, "")  # no station mapped for the location
    (other,) = out.OtherPatientIDsSequence
    assert other.PatientID == "K1234567"
    assert other.IssuerOfPatientID == "PASSPORT"


def test_sequence_matching_inside_the_step() -> None:
    it = items.item(row(), {})
    for keys, expected in [
        ({"Modality": "CR"}, True),
        ({"Modality": "DX"}, False),
        ({"ScheduledProcedureStepStartDate": "20251026",
          "ScheduledProcedureStepStartTime": "15-16"}, True),
        ({"ScheduledProcedureStepStartTime": "0800-1200"}, False),
        ({"ScheduledStationAETitle": "CR01"}, False),  # no station: empty never matches
        ({"ScheduledStationAETitle": ""}, True),
    ]:  # fmt: skip
        q = query.parse(identifier(ScheduledProcedureStepSequence=[step(**keys)]))
        assert query.matches(q, it) is expected, keys


def test_bad_identifiers_are_refused() -> None:
    for ident in (
        identifier(AccessionNumber="A" * 17),
        identifier(PatientName="*" * 1000),
        identifier(ScheduledProcedureStepSequence=[step(ScheduledProcedureStepStartDate="x")]),
        identifier(PatientBirthDate="19800101-19700101"),
    ):
        with pytest.raises(InvalidQuery):
            query.parse(ident)
    many = Dataset()
    for element in range(1, 300):
        many.add_new(0x00091000 + element, "LO", "")
    with pytest.raises(InvalidQuery):
        query.parse(many)


def test_selective_keys_go_into_sql() -> None:
    q = query.parse(
        identifier(
            AccessionNumber="ACC%1",
            PatientID="A1234563",
            PatientName="CHAN*^TAI",
            ScheduledProcedureStepSequence=[
                step(Modality="CR", ScheduledProcedureStepStartDate="20251026-20251027")
            ],
        )
    )
    st = reads.statement(q)
    assert st.args[:2] == [
        datetime.fromisoformat("2025-10-25T16:00:00+00:00"),  # Hong Kong midnights
        datetime.fromisoformat("2025-10-27T16:00:00+00:00"),
    ]
    assert st.args[2:] == ["CR", "ACC%1", "A1234563", "%CHAN%", "%TAI%"]
    assert "upper(btrim(o.modality)) = $3" in st.sql
    assert "o.accession_no = $4" in st.sql
    wild = reads.statement(query.parse(identifier(AccessionNumber="AC_*", PatientID="A*")))
    assert wild.args == ["AC\\_%"]  # a wildcard patient id is matched in Python only
    assert reads.statement(query.parse(identifier(PatientName="*"))).args == []


def test_worklist_settings() -> None:
    s = Settings.from_env({})
    assert (s.worklist_host, s.worklist_port, s.worklist_ae) == ("127.0.0.1", 11112, "QCARE")
    assert s.worklist_calling_aes == ()
    assert s.worklist_stations == {}
    s = Settings.from_env(
        {
            "QCARE_WORKLIST_CALLING_AES": "CR01, DX02",
            "QCARE_WORKLIST_STATIONS": "ROOM 1=CR01,ROOM 2=DX02",
        }
    )
    assert s.worklist_calling_aes == ("CR01", "DX02")
    assert s.worklist_stations == {"ROOM 1": "CR01", "ROOM 2": "DX02"}
    shown = s.masked()
    assert shown["QCARE_WORKLIST_CALLING_AES"] == "CR01,DX02"
    assert shown["QCARE_WORKLIST_STATIONS"] == "ROOM 1=CR01,ROOM 2=DX02"
    for bad in (
        {"QCARE_WORKLIST_AE": "A" * 17},
        {"QCARE_WORKLIST_AE": "A\\B"},
        {"QCARE_WORKLIST_CALLING_AES": "CR01,TOO_LONG_AE_TITLE_X"},
        {"QCARE_WORKLIST_STATIONS": "ROOM 1"},
    ):
        with pytest.raises(Exception, match="QCARE_WORKLIST"):
            Settings.from_env(bad)


def test_accessions_a_worklist_cannot_carry() -> None:
    assert items.servable("A" * 16)
    assert not items.servable("A" * 17)
    assert not items.servable("ACC\\1")
    assert not items.servable("ACC\n1")
    assert reads.statement(query.parse(identifier(AccessionNumber=""))).conditions == []


def test_the_audit_trail_gets_the_query_masked() -> None:
    q = query.parse(
        identifier(
            PatientName="CHAN^TAI*",
            PatientID="A1234563",
            PatientBirthDate="19800102",
            AccessionNumber="ACC-1",
            PatientSex="",
            PatientWeight="70",
            ScheduledProcedureStepSequence=[step(Modality="CR", ScheduledStationAETitle="")],
        )
    )
    assert q.masked() == (
        "AccessionNumber=ACC-1 PatientName=*** PatientID=A12****(3) PatientBirthDate=*** "
        "PatientSex PatientWeight ScheduledProcedureStepSequence Modality=CR "
        "ScheduledStationAETitle"
    )


@pytest.mark.parametrize(
    "dates", ["20250101-99991231", "99991231", "00010101", "00010101-20250101", "-99991231"]
)
def test_a_date_range_reaching_the_calendar_s_ends_is_an_open_bound_in_sql(dates: str) -> None:
    """DA 99991231 / 00010101 are valid dates a modality may send as "no limit": their HK
    midnights were out of datetime's (or, in UTC, asyncpg's) range, and the query was
    answered C001 (the database 'failed') instead of being read."""
    sps = Dataset()
    sps.ScheduledProcedureStepStartDate = dates
    ds = Dataset()
    ds.ScheduledProcedureStepSequence = [sps]
    st = reads.statement(query.parse(ds))
    for arg in st.args:
        if isinstance(arg, datetime):
            arg.astimezone(UTC)  # what asyncpg does to a timestamptz
