"""What one update wants to change, entity by entity (SPEC §3), as pure data.

Each entity is a set of registers named after DTO fields. A register holds the
raw value and the version that wrote it; an update takes a register only when
its value is present and its version is newer. Applying registers
last-writer-wins per field gives the state of applying all updates one by one
in `received_at` order, whatever order they arrive in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .dates import parse_dob, parse_dotnet, parse_study_time, to_instant
from .dto import QCareDto
from .fields import DICOM_SH_MAX, registers
from .normalize import hkid_valid, mask_id, normalise_gender, normalise_hkid, patient_key

# a patient's and an order's registers, in the DTO's order (fields.py); an order also
# keeps the key of the patient it belongs to, as a register of its own
PATIENT_REGISTERS = tuple(f.name for f in registers("patient"))
ORDER_REGISTERS = (*(f.name for f in registers("order")), "patient")
_ORDER_VALUES = tuple(n for n in ORDER_REGISTERS if n not in ("services", "patient"))
LONG_ACCESSION = (
    f"accessionNo is longer than {DICOM_SH_MAX} characters: a DICOM worklist cannot carry "
    "it; the order is left off the worklist"
)


@dataclass
class Plan:
    patient_key: str | None
    accession_no: str | None
    patient: dict[str, Any] = field(default_factory=dict)
    order: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _present(value: str | None) -> str | None:
    return value if value is not None and value.strip() else None


def take(registers: dict[str, Any], versions: dict[str, str], version: str) -> dict[str, Any]:
    """The registers this update wins: present and newer than what the entity holds."""
    return {
        name: value
        for name, value in registers.items()
        if value is not None and versions.get(name, "") < version
    }


def make_plan(dto: QCareDto) -> Plan:
    key = patient_key(dto.hkid, dto.passno)
    accession = _present(dto.accessionNo)
    plan = Plan(patient_key=key, accession_no=accession.strip() if accession else None)
    warnings = plan.warnings
    if _present(dto.hkid) and not normalise_hkid(dto.hkid or ""):
        warnings.append("hkid holds no letter or digit: ignored (passno identifies, if sent)")
    if key is not None:
        plan.patient = {name: getattr(dto, name) for name in PATIENT_REGISTERS}
        if _present(dto.hkid) and not hkid_valid(normalise_hkid(dto.hkid or "")):
            warnings.append(
                f"hkid {mask_id(dto.hkid)} has a wrong check digit or shape; stored as sent"
            )
        if dto.gender is not None and normalise_gender(dto.gender) is None:
            warnings.append("gender not recognised (M/F/U, Male/Female, 男/女); stored as U")
        if _present(dto.dob) and parse_dob(dto.dob) is None:
            warnings.append("dob could not be parsed as a date; kept as sent")
    if plan.accession_no is not None:
        services = None
        if dto.services is not None:
            services = [s.model_dump() for s in dto.services if s is not None]
            if len(services) != len(dto.services):
                warnings.append("null service lines were dropped")
        if len(plan.accession_no) > DICOM_SH_MAX:
            warnings.append(LONG_ACCESSION)
        plan.order = {name: getattr(dto, name) for name in _ORDER_VALUES}
        plan.order["services"] = services
        plan.order["patient"] = key
        parsed = parse_dotnet(dto.studyDate) if dto.studyDate else None
        study_time = parse_study_time(dto.studyTime)
        if (
            parsed is not None
            and parsed.date_only
            and _present(dto.studyTime)
            and study_time is None
        ):
            warnings.append("studyTime could not be parsed (HH:mm[:ss]); studyDate used alone")
        if parsed is not None and to_instant(parsed, study_time) is None:
            warnings.append(
                "studyDate lies outside the instants UTC can hold (.NET's MinValue or "
                "MaxValue with an offset, or UTC's first or last microsecond); kept as "
                "sent, without an instant"
            )
    elif dto.services is not None or _present(dto.studyDate):
        warnings.append("order fields were ignored: the message has no accessionNo")
    return plan
