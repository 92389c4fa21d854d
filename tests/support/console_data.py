"""Realistic, fictitious QCare orders for the console's browser tests and screenshots: Hong
Kong names, HKIDs with a valid check digit (made up, not anyone's), clinics, X-ray studies.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from qcare_ingest.normalize import hkid_check_digit


def hkid(prefix: str, digits: str) -> str:
    """`hkid("K", "350192")` -> `K350192(4)`, written as clinics write it."""
    return f"{prefix}{digits}({hkid_check_digit(prefix, digits)})"


@dataclass(frozen=True)
class Patient:
    name: str
    hkid: str | None
    passno: str | None
    gender: str
    dob: str
    address: str


PATIENTS = (
    Patient("CHAN Siu Ming", hkid("K", "350192"), None, "M", "1958-04-17",
            "Flat 12B, Block 3, Wah Fu Estate, Pok Fu Lam"),
    Patient("WONG Mei Ling", hkid("Y", "628410"), None, "F", "1983-11-02",
            "Room 1805, Tower 2, Metro City, Tseung Kwan O"),
    Patient("LEUNG Ka Wai", hkid("XA", "071395"), None, "M", "1971-07-29",
            "G/F, 38 Tai Po Road, Sham Shui Po"),
    Patient("HO Wing Sze", None, "H80452117", "F", "1996-02-08",
            "Flat 7A, Harbour View Garden, Tsim Sha Tsui"),
)  # fmt: skip

STUDIES = (
    ("CHEST PA", "CHEST", 1),
    ("KNEE AP/LAT (R)", "KNEE", 2),
    ("LUMBAR SPINE AP/LAT", "L-SPINE", 2),
    ("WRIST PA/LAT (L)", "WRIST", 2),
)
CLINICS = (
    ("Dr. LAU Chi Keung", "Lau Chi Keung Medical Centre, Mong Kok"),
    ("Dr. CHEUNG Hoi Yan", "Harbour Family Clinic, Wan Chai"),
    ("Dr. NG Tsz Kin", "Sha Tin Community Health Practice"),
)
EXAM_CLINIC = "QCare Imaging Centre, Central"


def run_tag() -> str:
    """Keeps this run's msg_ids and accession numbers apart from every other run's."""
    return uuid.uuid4().hex[:6].upper()


def order(n: int, tag: str, **changes: Any) -> dict[str, Any]:
    """The n-th order of a run: a patient, a referring doctor and one or two X-ray studies."""
    patient = PATIENTS[n % len(PATIENTS)]
    doctor, clinic = CLINICS[n % len(CLINICS)]
    study = STUDIES[n % len(STUDIES)]
    services = [
        {"studyDesc": study[0], "bodypart": study[1], "noOfImages": study[2], "warningTime": 30}
    ]
    if n % 2:
        services.append(
            {"studyDesc": "CHEST PA", "bodypart": "CHEST", "noOfImages": 1, "warningTime": 30}
        )
    dto: dict[str, Any] = {
        "msg_id": f"QC-{tag}-{n:04d}",
        "accessionNo": f"XR{tag}{n:04d}",
        "name": patient.name,
        "hkid": patient.hkid,
        "passno": patient.passno,
        "gender": patient.gender,
        "dob": patient.dob,
        "address": patient.address,
        "studyDate": f"2026-12-02T{9 + n % 8:02d}:{(7 * n) % 60:02d}:31.8166249+08:00",
        "studyTime": f"{9 + n % 8:02d}:{(7 * n) % 60:02d}",
        "location": "X-RAY ROOM 2",
        "chitno": f"CH{tag}{n:03d}",
        "plan_type": "GP",
        "ref_doctor": doctor,
        "ref_clinic_fullname": clinic,
        "csCode": "XR01",
        "modality": "CR",
        "refClinicFullname": clinic,
        "examClinicFullName": EXAM_CLINIC,
        "services": services,
    }
    dto.update(changes)
    return {k: v for k, v in dto.items() if v is not None}


def as_json(dto: dict[str, Any]) -> bytes:
    return json.dumps(dto, ensure_ascii=False).encode()


def as_form(dto: dict[str, Any]) -> bytes:
    """MVC form encoding (services are never bound from a form, so they are left out)."""
    return urlencode({k: v for k, v in dto.items() if k != "services"}).encode()


def as_xml(dto: dict[str, Any]) -> bytes:
    """XmlSerializer's shape: root QCareDto, C# element names for Address and the services."""
    from xml.sax.saxutils import escape

    names = {"address": "Address"}
    parts = []
    for key, value in dto.items():
        if key == "services":
            items = "".join(
                "<ServicesInfo>"
                f"<studyDesc>{escape(s['studyDesc'])}</studyDesc>"
                f"<bodypart>{escape(s['bodypart'])}</bodypart>"
                f"<NoOfImages>{s['noOfImages']}</NoOfImages>"
                f"<WarningTime>{s['warningTime']}</WarningTime>"
                "</ServicesInfo>"
                for s in value
            )
            parts.append(f"<services>{items}</services>")
        else:
            tag = names.get(key, key)
            parts.append(f"<{tag}>{escape(str(value))}</{tag}>")
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<QCareDto>' + "".join(parts) + "</QCareDto>"
    ).encode()
