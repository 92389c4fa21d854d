"""FHIR R4 resources from stored rows: pure functions, rows in, JSON-ready dicts out.

Which element each field feeds is fields.py's `fhir` (FIELD_ELEMENTS below turns that into
code: every element named there has a writer here, which tests/unit/test_fhir_resources.py
checks). FHIR forbids empty strings, arrays and objects: an absent or blank value leaves its
element out. Every order row is served as an `active` `order`: nothing in QCare's feed says
an examination was done or cancelled.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from .dates import HONG_KONG, parse_dotnet, parse_study_time, stored_instant
from .fields import FIELDS, SERVICE_FIELDS, FieldSpec
from .identifiers import (
    ACCESSION_SYSTEM,
    ACCESSION_TYPE_CODE,
    CHIT_SYSTEM,
    IDENTIFIER_TYPE_SYSTEM,
    fhir_patient_id,
    fhir_request_id,
    patient_identifiers,
    split_name,
)

FHIR_VERSION = "4.0.1"
MEDIA_TYPE = "application/fhir+json"
DICOM_SYSTEM = "http://dicom.nema.org/resources/ontology/DCM"  # modality codes (CID 29)
EXAM_CODE_SYSTEM = "urn:qcare:code:exam"  # QCare's csCode
PASSPORT_TYPE_CODE = "PPN"  # v2-0203 passport number
GENDERS = {"M": "male", "F": "female", "U": "unknown"}
SERVICE_REQUEST_STATUS = "active"  # every order row (module docstring)
SERVICE_REQUEST_STATUSES = (  # R4 request-status: search accepts them, only one matches
    "draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown",
)  # fmt: skip

Row = Mapping[str, Any]
Json = dict[str, Any]

# DICOM CID 29 (acquisition modality) and OT: coded in the DCM system; other values are text
DICOM_MODALITIES = frozenset((
    "AR", "BDUS", "BMD", "CR", "CT", "DG", "DX", "ECG", "EPS", "ES", "GM", "HD", "IO", "IVOCT",
    "IVUS", "KER", "LEN", "MG", "MR", "NM", "OAM", "OCT", "OP", "OPM", "OPT", "OPTBSV", "OPTENF",
    "OPV", "OSS", "OT", "PT", "PX", "RF", "RG", "SM", "SRF", "TG", "US", "VA", "XA", "XC",
))  # fmt: skip


_ODD_SPACE = re.compile(r"[^\S \r\n\t]")  # whitespace a FHIR string may not hold


def text(value: object) -> str | None:
    """A FHIR string: None for absent or blank (FHIR forbids ""), else the value as sent,
    whitespace other than space, tab, CR and LF written as a space."""
    if value is None:
        return None
    s = _ODD_SPACE.sub(" ", str(value))
    return s if s.strip() else None


def _code(value: str) -> str | None:
    """A FHIR code: no leading/trailing or doubled whitespace."""
    collapsed = " ".join(value.split())
    return collapsed or None


def _prune(obj: Json) -> Json:
    """Drops None values and empty lists/dicts (FHIR forbids empty elements)."""
    return {k: v for k, v in obj.items() if v is not None and v != [] and v != {}}


def hk_datetime(value: datetime) -> str:
    """An instant as a FHIR dateTime/instant in Hong Kong time (+08:00)."""
    return value.astimezone(HONG_KONG).isoformat()


def _occurrence(order: Row) -> str | None:
    """occurrenceDateTime: the study instant in Hong Kong time, a date alone when only a
    date was sent (no studyTime either)."""
    at = stored_instant(order.get("study_at"))
    if at is None:
        return None
    raw = order.get("study_date_raw")
    parsed = parse_dotnet(raw) if raw else None
    if (
        parsed is not None
        and parsed.date_only
        and parse_study_time(order.get("study_time")) is None
    ):
        return at.astimezone(HONG_KONG).date().isoformat()
    return hk_datetime(at)


def _meta(row: Row) -> Json | None:
    updated: datetime | None = row.get("updated_at")
    return {"lastUpdated": hk_datetime(updated)} if updated is not None else None


# --- ServiceRequest ---------------------------------------------------------------------


def _accession(value: str) -> Json:
    return {
        "use": "official",
        "type": {
            "coding": [{"system": IDENTIFIER_TYPE_SYSTEM, "code": ACCESSION_TYPE_CODE}],
            "text": "Accession number",
        },
        "system": ACCESSION_SYSTEM,
        "value": _ODD_SPACE.sub(" ", value),
    }


def _requester(order: Row) -> Json | None:
    doctor = text(order.get("ref_doctor"))
    clinic = text(order.get("ref_clinic_fullname")) or text(order.get("ref_clinic_fullname2"))
    if doctor and clinic:
        return {"display": f"{doctor} ({clinic})"}
    if doctor or clinic:
        return {"display": doctor or clinic}
    return None


def _category(modality: str) -> Json:
    code = modality.strip().upper()
    if code in DICOM_MODALITIES:
        return {"coding": [{"system": DICOM_SYSTEM, "code": code}], "text": modality}
    return {"text": modality}


def _line_note(n: int, line: Row) -> Json | None:
    parts = [f"line {n}"]
    if desc := text(line.get("study_desc")):
        parts.append(desc)
    if site := text(line.get("bodypart")):
        parts.append(f"body part {site}")
    if line.get("no_of_images") is not None:
        parts.append(f"{line['no_of_images']} image(s)")
    if line.get("warning_time"):
        parts.append(f"warn after {line['warning_time']} min")
    return {"text": "; ".join(parts)} if len(parts) > 1 else None


def _services(resource: Json, services: Sequence[Row]) -> None:
    """orderDetail (one per line: its studyDesc), code.text (the descriptions), bodySite,
    quantityQuantity (images in all), note (each line in full, warningTime included)."""
    descs = [d for line in services if (d := text(line.get("study_desc")))]
    details = [{"text": d} for d in descs]
    sites: list[str] = []
    for line in services:
        site = text(line.get("bodypart"))
        if site and site not in sites:
            sites.append(site)
    images = [n for line in services if (n := line.get("no_of_images")) is not None]
    notes = [note for i, line in enumerate(services, 1) if (note := _line_note(i, line))]
    if descs:
        resource.setdefault("code", {})["text"] = "; ".join(descs)
    resource["orderDetail"] = details or None
    resource["bodySite"] = [{"text": s} for s in sites] or None
    if images and sum(images) > 0:
        resource["quantityQuantity"] = {"value": sum(images), "unit": "image"}
    resource["note"] = notes or None


OrderWriter = Callable[[Json, str], None]


def _write_chit(resource: Json, value: str) -> None:
    resource.setdefault("identifier", []).append({"system": CHIT_SYSTEM, "value": value})


def _write_code(resource: Json, value: str) -> None:
    code = _code(value)
    if code is not None:
        resource["code"] = {"coding": [{"system": EXAM_CODE_SYSTEM, "code": code}]}


def _write_category(resource: Json, value: str) -> None:
    resource["category"] = [_category(value)]


def _write_location(resource: Json, value: str) -> None:
    resource["locationCode"] = [{"text": value}]


def _write_insurance(resource: Json, value: str) -> None:
    resource["insurance"] = [{"display": value}]


def _write_performer(resource: Json, value: str) -> None:
    resource["performer"] = [{"display": value}]


# fields.py's element -> what writes one order column's value there. Elements whose value
# is not one column (the accession, the study instant, the requester's two fields, the
# service lines) are written by service_request itself: None here.
ORDER_WRITERS: dict[str, OrderWriter | None] = {
    "ServiceRequest.identifier[ACSN]": None,
    "ServiceRequest.identifier[chit]": _write_chit,
    "ServiceRequest.occurrenceDateTime": None,
    "ServiceRequest.locationCode": _write_location,
    "ServiceRequest.insurance": _write_insurance,
    "ServiceRequest.requester": None,
    "ServiceRequest.code": _write_code,
    "ServiceRequest.category": _write_category,
    "ServiceRequest.performer": _write_performer,
    "ServiceRequest.orderDetail": None,
    "ServiceRequest.code.text": None,
    "ServiceRequest.bodySite": None,
    "ServiceRequest.quantityQuantity": None,
}
PATIENT_ELEMENTS = (
    "Patient.name",
    "Patient.identifier[hkid]",
    "Patient.identifier[passport]",
    "Patient.gender",
    "Patient.birthDate",
    "Patient.address",
)


def _order_fields() -> tuple[tuple[FieldSpec, OrderWriter], ...]:
    found = []
    for spec in FIELDS:
        if spec.fhir is None or not spec.fhir.startswith("ServiceRequest."):
            continue
        writer = ORDER_WRITERS[spec.fhir]
        if writer is not None and spec.column is not None:
            found.append((spec, writer))
    return tuple(found)


ORDER_FIELDS = _order_fields()  # (field, writer) for the columns written one to one


def fhir_elements() -> dict[str, str]:
    """Canonical field name -> the FHIR element it feeds (README's mapping table)."""
    return {f.name: f.fhir for f in (*FIELDS, *SERVICE_FIELDS) if f.fhir is not None}


def service_request(order: Row, services: Sequence[Row] | None) -> Json:
    """An `orders` row (with `patient_key`) and its service lines (None: never sent)."""
    accession: str = order["accession_no"]
    resource: Json = {"resourceType": "ServiceRequest", "id": fhir_request_id(accession)}
    resource["meta"] = _meta(order)
    resource["identifier"] = [_accession(accession)]
    resource["status"] = SERVICE_REQUEST_STATUS
    resource["intent"] = "order"
    for spec, writer in ORDER_FIELDS:
        assert spec.column is not None
        value = text(order.get(spec.column))
        if value is not None:
            writer(resource, value)
    if services:
        _services(resource, services)
    key = order.get("patient_key")
    resource["subject"] = (
        {"reference": f"Patient/{fhir_patient_id(key)}", "type": "Patient"}
        if key
        else {"display": "patient not known"}  # subject is 1..1; no patient was sent
    )
    resource["occurrenceDateTime"] = _occurrence(order)
    created: datetime | None = order.get("created_at")
    resource["authoredOn"] = hk_datetime(created) if created is not None else None
    resource["requester"] = _requester(order)
    return _order_elements(_prune(resource))


_ORDER = (
    "resourceType", "id", "meta", "identifier", "status", "intent", "category", "code",
    "orderDetail", "quantityQuantity", "subject", "occurrenceDateTime", "authoredOn",
    "requester", "performer", "locationCode", "insurance", "bodySite", "note",
)  # fmt: skip


def _order_elements(resource: Json) -> Json:
    """The resource's elements in the order the R4 specification lists them."""
    return {k: resource[k] for k in _ORDER if k in resource}


# --- Patient ----------------------------------------------------------------------------


def _patient_identifier(kind: str, system: str, value: str) -> Json:
    ident: Json = {"use": "official", "system": system, "value": _ODD_SPACE.sub(" ", value)}
    if kind == "passport":
        ident["type"] = {
            "coding": [{"system": IDENTIFIER_TYPE_SYSTEM, "code": PASSPORT_TYPE_CODE}],
            "text": "Passport number",
        }
    return ident


def human_name(name: str | None) -> Json | None:
    """HumanName: text as sent; family and given split as Hong Kong writes names (the given
    names stay one string: "TAI MAN" is one given name)."""
    shown = text(name)
    if shown is None:
        return None
    family, given = split_name(shown)
    return _prune(
        {
            "use": "official",
            "text": shown,
            "family": family or None,
            "given": [given] if given else None,
        }
    )


def patient(row: Row) -> Json:
    """A `patients` row."""
    dob: date | None = row.get("dob")
    resource: Json = {
        "resourceType": "Patient",
        "id": fhir_patient_id(row["patient_key"]),
        "meta": _meta(row),
        "identifier": [
            _patient_identifier(i.kind, i.system, i.value)
            for i in patient_identifiers(row.get("hkid"), row.get("passno"))
        ],
        "name": [n] if (n := human_name(row.get("name"))) else None,
        "gender": GENDERS.get(row.get("gender") or ""),
        "birthDate": dob.isoformat() if dob is not None else None,
        "address": [{"text": a}] if (a := text(row.get("address"))) else None,
    }
    return _prune(resource)


# --- Bundle, OperationOutcome -----------------------------------------------------------


def searchset(
    base: str,
    entries: Sequence[Json],
    total: int,
    links: Mapping[str, str],
) -> Json:
    """A searchset Bundle: `links` relation -> URL (self, next, previous)."""
    return _prune(
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": total,
            "link": [{"relation": rel, "url": url} for rel, url in links.items()],
            "entry": [
                {
                    "fullUrl": f"{base}/{e['resourceType']}/{e['id']}",
                    "resource": e,
                    "search": {"mode": "match"},
                }
                for e in entries
            ],
        }
    )


# code: OperationOutcome issue type (not-found, invalid, not-supported, security, ...)
def operation_outcome(code: str, diagnostics: str, severity: str = "error") -> Json:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
    }
