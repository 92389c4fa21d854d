"""Every DTO field, described once (issue 16).

A field's wire name (the C# property: XML element, form key), its canonical name (the
JSON sample's, which the queue, the journal and GET /orders use), where the worker keeps
it (a patient's or an order's register, a service line's column), its column and SQL
type, its text limit, whether it is personal data, its OpenAPI description, and where it
goes in a DICOM Modality Worklist item and in FHIR R4. The DTO, the binders, the plan,
the store's SQL, the read views, OpenAPI, masking, the worklist and FHIR read it from
here; nothing else spells a field out again.

Columns the worker derives from registers (a normalised HKID, the study instant) are
DERIVED below, each with the register it comes from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .textlimit import TextLimit

Register = Literal["message", "patient", "order", "service"]

# DICOM's SH (short string) holds at most 16 characters: an AccessionNumber longer than that
# cannot be carried by a worklist item (plan.py warns; the worklist leaves the order off).
DICOM_SH_MAX = 16


@dataclass(frozen=True)
class Dicom:
    """Where a field goes in a worklist item: a keyword of the item's top level, or one
    inside the Scheduled Procedure Step Sequence (`in_step`)."""

    keyword: str
    vr: str
    in_step: bool = False


@dataclass(frozen=True)
class FieldSpec:
    name: str  # canonical: JSON sample name, queue body, GET /orders
    wire: str  # C# property name: XML element, form key (Json.NET matches either case)
    register: Register  # message: identifies the update; patient/order: a register; service
    column: str | None  # the column holding the raw value as sent
    sql_type: str  # of that column
    description: str  # OpenAPI, the README's field table
    limit: TextLimit | None = None  # text fields: storable length (limits.py)
    personal: bool = False  # masked in logs, the console and `dlq show` unless revealed
    identifier: bool = False  # personal, masked keeping a hint (A12****(3))
    integer: bool = False  # Int32 on the old endpoint
    dicom: Dicom | None = None
    fhir: str | None = None  # FHIR R4 element it feeds (documentation and the mapping)


_ID = TextLimit(64, 255)
_SHORT = TextLimit(200, 800)
_LONG = TextLimit(1000, 4000)

FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("msg_id", "msg_id", "message", None, "text",
              "the update's id: a message is applied at most once per msg_id",
              TextLimit(200, 255, identifier=True)),
    FieldSpec("name", "name", "patient", "name", "text",
              "patient's name, family name first as Hong Kong writes it (CHAN TAI MAN)",
              _SHORT, personal=True,
              dicom=Dicom("PatientName", "PN"), fhir="Patient.name"),
    FieldSpec("hkid", "hkid", "patient", "hkid_raw", "text",
              "Hong Kong identity card number as sent; normalised A123456(3) -> A1234563",
              TextLimit(32, 128), personal=True, identifier=True,
              dicom=Dicom("PatientID", "LO"), fhir="Patient.identifier[hkid]"),
    FieldSpec("passno", "passno", "patient", "passno", "text",
              "passport number: identifies the patient when there is no HKID",
              TextLimit(32, 128), personal=True, identifier=True,
              dicom=Dicom("OtherPatientIDsSequence", "SQ"), fhir="Patient.identifier[passport]"),
    FieldSpec("gender", "gender", "patient", "gender_raw", "text",
              "M/F/U, Male/Female or 男/女 as sent; normalised to M, F or U",
              TextLimit(32, 128), personal=True,
              dicom=Dicom("PatientSex", "CS"), fhir="Patient.gender"),
    FieldSpec("dob", "dob", "patient", "dob_raw", "text",
              "date of birth as sent (parsed to a date when it can be)",
              TextLimit(64, 256), personal=True,
              dicom=Dicom("PatientBirthDate", "DA"), fhir="Patient.birthDate"),
    FieldSpec("studyDate", "studyDate", "order", "study_date_raw", "text",
              ".NET date as sent (0-7 fraction digits, Z, offset or none; none is Hong Kong "
              "time)",
              TextLimit(64, 256),
              dicom=Dicom("ScheduledProcedureStepStartDate", "DA", in_step=True),
              fhir="ServiceRequest.occurrenceDateTime"),
    FieldSpec("studyTime", "studyTime", "order", "study_time", "text",
              "HH:mm[:ss], with a date-only studyDate",
              TextLimit(32, 128),
              dicom=Dicom("ScheduledProcedureStepStartTime", "TM", in_step=True),
              fhir="ServiceRequest.occurrenceDateTime"),
    FieldSpec("location", "location", "order", "location", "text",
              "where the X-ray is taken (clinic or room)",
              _SHORT,
              dicom=Dicom("ScheduledProcedureStepLocation", "SH", in_step=True),
              fhir="ServiceRequest.locationCode"),
    # a chit (visit slip) number points at one patient's visit: masked like personal data,
    # as `dlq show` and the console always did (issue 14)
    FieldSpec("chitno", "chitno", "order", "chitno", "text",
              "QCare's chit (visit slip) number",
              _ID, personal=True, fhir="ServiceRequest.identifier[chit]"),
    FieldSpec("plan_type", "plan_type", "order", "plan_type", "text",
              "the patient's plan (payer) type",
              _ID, fhir="ServiceRequest.insurance"),
    # a doctor's name in their professional role, not a patient's data: shown by `dlq show`
    # and the console, as it always was (issue 14's allow-list); never the patient's
    FieldSpec("ref_doctor", "ref_doctor", "order", "ref_doctor", "text",
              "referring doctor's name",
              _SHORT,
              dicom=Dicom("ReferringPhysicianName", "PN"), fhir="ServiceRequest.requester"),
    FieldSpec("ref_clinic_fullname", "ref_clinic_fullname", "order", "ref_clinic_fullname",
              "text", "referring clinic's full name",
              _LONG, fhir="ServiceRequest.requester"),
    FieldSpec("csCode", "csCode", "order", "cs_code", "text",
              "QCare's code of the examination",
              _ID,
              dicom=Dicom("RequestedProcedureID", "SH"), fhir="ServiceRequest.code"),
    FieldSpec("modality", "modality", "order", "modality", "text",
              "DICOM modality of the examination (CR, DX, ...)",
              _ID,
              dicom=Dicom("Modality", "CS", in_step=True), fhir="ServiceRequest.category"),
    FieldSpec("address", "Address", "patient", "address", "text",
              "patient's address",
              _LONG, personal=True, fhir="Patient.address"),
    FieldSpec("accessionNo", "accessionNo", "message", None, "text",
              "the order's accession number: identifies the order",
              TextLimit(64, 255, identifier=True),
              dicom=Dicom("AccessionNumber", "SH"), fhir="ServiceRequest.identifier[ACSN]"),
    FieldSpec("refClinicFullname", "refClinicFullname", "order", "ref_clinic_fullname2",
              "text", "referring clinic's full name (the camelCase twin of ref_clinic_fullname)",
              _LONG),
    FieldSpec("examClinicFullName", "examClinicFullName", "order", "exam_clinic_fullname",
              "text", "the examining clinic's full name",
              _LONG,
              dicom=Dicom("ScheduledStationName", "SH", in_step=True),
              fhir="ServiceRequest.performer"),
    FieldSpec("services", "services", "order", None, "jsonb",
              "the order's service lines, replaced whole by an update that sends them",
              fhir="ServiceRequest.orderDetail"),
)  # fmt: skip

SERVICE_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("studyDesc", "studyDesc", "service", "study_desc", "text",
              "what is to be X-rayed, as the clinic wrote it",
              TextLimit(500, 2000),
              dicom=Dicom("ScheduledProcedureStepDescription", "LO", in_step=True),
              fhir="ServiceRequest.code.text"),
    FieldSpec("bodypart", "bodypart", "service", "bodypart", "text",
              "body part examined",
              TextLimit(100, 400), fhir="ServiceRequest.bodySite"),
    FieldSpec("noOfImages", "NoOfImages", "service", "no_of_images", "integer",
              "number of images (int?: null when not given)", integer=True,
              fhir="ServiceRequest.quantityQuantity"),
    FieldSpec("warningTime", "WarningTime", "service", "warning_time", "integer",
              "minutes after which the clinic is warned (int, 0 if absent)", integer=True),
)  # fmt: skip


@dataclass(frozen=True)
class Derived:
    """A column the worker computes from a register when the register changes."""

    column: str
    sql_type: str
    register: str  # canonical field name it is derived from
    read: str  # its name under `normalized` in GET /orders
    description: str


PATIENT_DERIVED: tuple[Derived, ...] = (
    Derived("hkid", "text", "hkid", "hkid", "HKID normalised: letters and digits, upper case"),
    Derived("hkid_valid", "boolean", "hkid", "hkidValid", "whether its check digit is right"),
    Derived("gender", "text", "gender", "gender", "M, F or U"),
    Derived("dob", "date", "dob", "dob", "date of birth, ISO 8601 date"),
)
ORDER_DERIVED: tuple[Derived, ...] = (
    Derived("study_at", "timestamptz", "studyDate", "studyAt",
            "the study instant, ISO 8601 UTC (studyDate and studyTime, Hong Kong time "
            "when no offset)"),
)  # fmt: skip

BY_NAME: dict[str, FieldSpec] = {f.name: f for f in FIELDS}
SERVICE_BY_NAME: dict[str, FieldSpec] = {f.name: f for f in SERVICE_FIELDS}


def registers(register: Register) -> tuple[FieldSpec, ...]:
    """The fields an entity keeps, in declaration order."""
    return tuple(f for f in FIELDS if f.register == register)
