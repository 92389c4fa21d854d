"""The DTO as the old endpoint defined it (help page), in the JSON sample's names.

This is the canonical message body on the queue: the gateway binds a request
into it, the worker decodes it back. `studyDate` stays the string the client
sent (the 7th fraction digit survives); `dates.parse_dotnet` validated it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from . import fields
from .dates import parse_dotnet
from .errors import DecodeError
from .normalize import patient_key

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

# C# property name -> canonical (JSON sample) name, in declaration order (fields.py).
DTO_FIELDS: dict[str, str] = {f.wire: f.name for f in fields.FIELDS}
SERVICE_FIELDS: dict[str, str] = {f.wire: f.name for f in fields.SERVICE_FIELDS}
SERVICE_INT_FIELDS = frozenset(f.name for f in fields.SERVICE_FIELDS if f.integer)


_DESCRIBED = {**fields.BY_NAME, **fields.SERVICE_BY_NAME}


def _describe(schema: dict[str, Any], model: type[Any]) -> None:
    """JSON Schema (OpenAPI) descriptions of a model's DTO fields, from fields.py."""
    for name, prop in schema.get("properties", {}).items():
        spec = _DESCRIBED.get(name)
        if spec is not None and isinstance(prop, dict):
            prop.setdefault("description", spec.description)


class ServicesInfo(BaseModel):
    """One service line of an order."""

    # fields.SERVICE_FIELDS, in their order (tests/unit/test_fields.py holds the two together)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, json_schema_extra=_describe)

    studyDesc: str | None = None
    bodypart: str | None = None
    noOfImages: int | None = Field(default=None, ge=INT32_MIN, le=INT32_MAX)  # int? NoOfImages
    warningTime: int = Field(default=0, ge=INT32_MIN, le=INT32_MAX)


class QCareDto(BaseModel):
    """A QCare update of a patient, a referring doctor or an X-ray order."""

    # fields.FIELDS, in their order (tests/unit/test_fields.py holds the two together)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, json_schema_extra=_describe)

    msg_id: str | None = None
    name: str | None = None
    hkid: str | None = None
    passno: str | None = None
    gender: str | None = None
    dob: str | None = None
    studyDate: str | None = None
    studyTime: str | None = None
    location: str | None = None
    chitno: str | None = None
    plan_type: str | None = None
    ref_doctor: str | None = None
    ref_clinic_fullname: str | None = None
    csCode: str | None = None
    modality: str | None = None
    address: str | None = None
    accessionNo: str | None = None
    refClinicFullname: str | None = None
    examClinicFullName: str | None = None
    services: list[ServicesInfo | None] | None = None

    @field_validator("studyDate")
    @classmethod
    def _dotnet_date(cls, value: str | None) -> str | None:
        if value is not None and parse_dotnet(value) is None:
            raise ValueError(f"'{value[:40]}' is not a .NET date")
        return value

    def has_target(self) -> bool:
        """Something to apply the update to: a patient identity or an order."""
        return patient_key(self.hkid, self.passno) is not None or _present(self.accessionNo)

    def encode(self) -> bytes:
        """Canonical JSON: sample field names, declaration order, nulls included."""
        return self.model_dump_json().encode()

    @classmethod
    def decode(cls, body: bytes) -> QCareDto:
        try:
            data: Any = json.loads(body)
            return cls.model_validate(data)
        except (ValueError, ValidationError, RecursionError) as exc:
            raise DecodeError(f"body is not a canonical QCareDto: {type(exc).__name__}") from None


def _present(value: str | None) -> bool:
    return value is not None and value.strip() != ""


def body_digest(body: bytes) -> bytes:
    """What makes two messages with one msg_id 'the same content'."""
    return hashlib.sha256(body).digest()
