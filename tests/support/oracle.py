"""SPEC §3 stated directly: the state after applying updates one by one in received_at order."""

from __future__ import annotations

from typing import Any

from qcare_ingest.normalize import patient_key

PATIENT_FIELDS = ("hkid", "passno", "name", "gender", "dob", "address")
ORDER_FIELDS = ("studyDate", "studyTime", "location", "chitno", "modality", "refClinicFullname")


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def sequential_state(history: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """history in received_at order -> (patients by key, orders by accessionNo)."""
    patients: dict[str, dict[str, Any]] = {}
    orders: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    for dto in history:
        if dto["msg_id"] in seen:
            continue
        seen.add(dto["msg_id"])
        key = patient_key(dto.get("hkid"), dto.get("passno"))
        if key is not None:
            patient = patients.setdefault(key, dict.fromkeys(PATIENT_FIELDS))
            patient.update({f: dto[f] for f in PATIENT_FIELDS if dto.get(f) is not None})
        accession = dto.get("accessionNo")
        if not _blank(accession):
            order = orders.setdefault(
                accession, {**dict.fromkeys(ORDER_FIELDS), "services": None, "patient": None}
            )
            order.update({f: dto[f] for f in ORDER_FIELDS if dto.get(f) is not None})
            if dto.get("services") is not None:
                order["services"] = [s for s in dto["services"] if s is not None]
            if key is not None:
                order["patient"] = key
    return patients, orders
