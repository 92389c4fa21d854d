"""A worklist item: an applied order (with its patient and service lines) as the values the
SCP returns, cut and cleaned to fit their VRs, and matched against a query; pure.

Which field feeds which attribute is fields.py's (`FieldSpec.dicom`); this module says
how a stored value becomes that attribute's value, and adds what only the worklist has:
IssuerOfPatientID, OtherPatientIDsSequence items, StudyInstanceUID,
RequestedProcedureDescription, ScheduledProcedureStepID and ScheduledStationAETitle.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cached_property, lru_cache
from typing import Any, Protocol

from ..dates import HONG_KONG, stored_instant
from ..fields import FIELDS, SERVICE_FIELDS
from ..identifiers import PatientIdentifier, patient_identifier, patient_identifiers, split_name
from .matching import MAX_LENGTH

# StudyInstanceUID = "2.25." + the decimal of uuid5(this namespace, accession number):
# the same accession always gets the same UID, on any server (PS3.5 B.2, UUID-derived UIDs).
STUDY_UID_NAMESPACE = uuid.UUID("6f1f2d64-8c3e-5b7a-9d0e-51ca7e16d1c0")
DESCRIPTION_SEPARATOR = "; "
CHARSET = "ISO_IR 192"  # UTF-8: names may be Chinese

STEP = "ScheduledProcedureStepSequence"
OTHER_IDS = "OtherPatientIDsSequence"
SEX = {"M": "M", "F": "F", "U": "O"}

# Attributes fields.py maps (keyword -> (vr, in_step)); the values come from `item()`.
MAPPED: dict[str, tuple[str, bool]] = {
    f.dicom.keyword: (f.dicom.vr, f.dicom.in_step)
    for f in (*FIELDS, *SERVICE_FIELDS)
    if f.dicom is not None and f.dicom.vr != "SQ"
}
# Attributes holding personal data (fields.py's flags), masked in the audit trail:
# "identifier" keeps a hint (A12****(3)), "personal" is `***`.
PERSONAL: dict[str, str] = {
    f.dicom.keyword: "identifier" if f.identifier else "personal"
    for f in (*FIELDS, *SERVICE_FIELDS)
    if f.dicom is not None and f.personal
}
# What only the worklist adds, with its VR and place.
OWN: dict[str, tuple[str, bool]] = {
    "IssuerOfPatientID": ("LO", False),
    "StudyInstanceUID": ("UI", False),
    "RequestedProcedureDescription": ("LO", False),
    "ScheduledProcedureStepID": ("SH", True),
    "ScheduledStationAETitle": ("AE", True),
}
SUPPORTED: dict[str, tuple[str, bool]] = {**MAPPED, **OWN}
TOP_KEYS = frozenset(k for k, (_, in_step) in SUPPORTED.items() if not in_step)
STEP_KEYS = frozenset(k for k, (_, in_step) in SUPPORTED.items() if in_step)
OTHER_ID_KEYS = frozenset({"PatientID", "IssuerOfPatientID", "TypeOfPatientID"})
VR: dict[str, str] = {k: vr for k, (vr, _) in SUPPORTED.items()} | {"TypeOfPatientID": "CS"}


def servable(accession: str) -> bool:
    """Whether an order can be a worklist item: its accession number fits SH (16
    characters, no `\\`, no control characters). Longer ones are left off the worklist
    (the worker warns about it in the message's status): a modality could not send them
    back, and a cut one would name another order."""
    return len(accession) <= MAX_LENGTH["SH"] and _CONTROL.search(accession) is None


@lru_cache(maxsize=65536)  # a modality asks for the same day's orders again and again
def study_instance_uid(accession: str) -> str:
    return "2.25." + str(uuid.uuid5(STUDY_UID_NAMESPACE, accession).int)


# --- values that fit their VR -----------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")  # not in LO/SH/PN/AE text; "\" separates values
_CS_BAD = re.compile(r"[^A-Z0-9 _]")


def text(value: str | None, vr: str) -> str:
    """A stored text as a value of `vr`: control characters and `\\` become spaces, the
    ends are trimmed, and the rest is cut to the VR's length (LO 64, SH 16, AE 16...)."""
    if not value:
        return ""
    cleaned = _CONTROL.sub(" ", value).strip()
    if vr == "CS":
        cleaned = _CS_BAD.sub("_", cleaned.upper())
    return cleaned[: MAX_LENGTH[vr]].rstrip()


def person_name(name: str | None) -> str:
    """`CHAN TAI MAN` -> `CHAN^TAI MAN` (identifiers.split_name): each component cleaned of
    control characters and the PN separators `^` `=`, the whole cut to PN's 64 characters."""
    family, given = split_name(_CONTROL.sub(" ", name or ""))
    family = _PN_SEP.sub(" ", family).strip()
    given = _PN_SEP.sub(" ", given).strip()
    whole = f"{family}^{given}" if given else family
    return whole[:64].rstrip(" ^")


_PN_SEP = re.compile(r"[\^=]")


def da(day: date | None) -> str:
    return f"{day.year:04d}{day.month:02d}{day.day:02d}" if day else ""


def tm(at: datetime | None) -> str:
    return f"{at.hour:02d}{at.minute:02d}{at.second:02d}" if at else ""


# --- an item ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """Every attribute an order would return: top-level, its one Scheduled Procedure Step,
    and the patient's other identifiers (OtherPatientIDsSequence)."""

    top: Mapping[str, str]
    step: Mapping[str, str]
    other_ids: tuple[Mapping[str, str], ...] = field(default_factory=tuple)


class Row(Protocol):
    """A row by column name (an asyncpg Record, a dict)."""

    def __getitem__(self, key: str, /) -> Any: ...


class _Source:
    """One row and what several attributes derive from it, each worked out once."""

    def __init__(self, row: Row, stations: Mapping[str, str]) -> None:
        self.row = row
        self.stations = stations

    @cached_property
    def main(self) -> PatientIdentifier | None:
        return patient_identifier(self.row["hkid"], self.row["passno"])

    @cached_property
    def local(self) -> datetime | None:
        study_at = stored_instant(self.row["study_at"])
        return study_at.astimezone(HONG_KONG) if study_at else None

    @cached_property
    def description(self) -> str:
        return text(self.row["descriptions"], "LO")


Values = dict[str, Callable[[_Source], str]]
_TOP: Values = {
    "PatientName": lambda s: person_name(s.row["name"]),
    "PatientID": lambda s: text(s.main.value, "LO") if s.main else "",
    "IssuerOfPatientID": lambda s: s.main.issuer if s.main else "",
    "PatientBirthDate": lambda s: da(s.row["dob"]),
    "PatientSex": lambda s: SEX.get(s.row["gender"] or "", ""),
    "AccessionNumber": lambda s: str(s.row["accession_no"]),
    "ReferringPhysicianName": lambda s: person_name(s.row["ref_doctor"]),
    "RequestedProcedureID": lambda s: text(s.row["cs_code"], "SH"),
    "RequestedProcedureDescription": lambda s: s.description,
    "StudyInstanceUID": lambda s: study_instance_uid(s.row["accession_no"]),
}
_STEP: Values = {
    "Modality": lambda s: text(s.row["modality"], "CS"),
    "ScheduledStationAETitle": lambda s: s.stations.get((s.row["location"] or "").strip(), ""),
    "ScheduledProcedureStepStartDate": lambda s: da(s.local),
    "ScheduledProcedureStepStartTime": lambda s: tm(s.local),
    "ScheduledProcedureStepDescription": lambda s: s.description,
    "ScheduledProcedureStepLocation": lambda s: text(s.row["location"], "SH"),
    "ScheduledStationName": lambda s: text(s.row["exam_clinic_fullname"], "SH"),
    "ScheduledProcedureStepID": lambda s: str(s.row["accession_no"]),
}


def item(row: Row, stations: Mapping[str, str], wanted: Collection[str] | None = None) -> Item:
    """The item of one row of reads.SELECT (an order, its patient's columns, `descriptions`:
    the service lines' studyDesc joined): every attribute, or only the `wanted` keywords
    (a query's keys; OtherPatientIDsSequence among them for the other identifiers)."""
    source = _Source(row, stations)
    top_keys = _TOP.keys() if wanted is None else [k for k in wanted if k in _TOP]
    step_keys = _STEP.keys() if wanted is None else [k for k in wanted if k in _STEP]
    top = {k: _TOP[k](source) for k in top_keys}
    step = {k: _STEP[k](source) for k in step_keys}
    others: tuple[Mapping[str, str], ...] = ()
    if wanted is None or OTHER_IDS in wanted:
        others = tuple(
            {"PatientID": text(i.value, "LO"), "IssuerOfPatientID": i.issuer,
             "TypeOfPatientID": "TEXT"}
            for i in patient_identifiers(row["hkid"], row["passno"])
            if i != source.main
        )  # fmt: skip
    return Item(top, step, others)
