"""Response bodies of the HTTP API, as pydantic models: the OpenAPI document is built
from these and from the DTO the gateway binds with, so code and document cannot drift."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .dto import QCareDto
from .fields import ORDER_DERIVED, PATIENT_DERIVED

_DERIVED = {d.read: d.description for d in (*PATIENT_DERIVED, *ORDER_DERIVED)}


def _describe_derived(schema: dict[str, Any], model: type[Any]) -> None:
    """Descriptions of `normalized`'s members, from fields.py's derived columns."""
    for name, prop in schema.get("properties", {}).items():
        if name in _DERIVED and isinstance(prop, dict):
            prop.setdefault("description", _DERIVED[name])


class Queued(BaseModel):
    msg_id: str
    status: Literal["queued"] = "queued"


class Problem(BaseModel):
    """An error with a message only (401, 403, 404, 413, 415, 503)."""

    Message: str


class InvalidRequest(BaseModel):
    """Web API's BadRequest(ModelState): keys are `dto.<field path>`."""

    Message: Literal["The request is invalid."]
    ModelState: dict[str, list[str]]


class MessageView(BaseModel):
    model_config = ConfigDict(extra="forbid")

    msg_id: str
    status: Literal["applied", "stale", "rejected", "dead_lettered"]
    received_at: str | None = Field(description="gateway receipt, ISO 8601 with offset")
    processed_at: str | None
    accessionNo: str | None
    warnings: list[str]
    stale_for: list[Literal["patient", "order"]]
    error: str | None
    conflicts: int = Field(ge=0, description="later messages that reused this msg_id")


class Normalized(BaseModel):
    """What the worker derived from the values as sent."""

    # fields.PATIENT_DERIVED and ORDER_DERIVED

    model_config = ConfigDict(extra="forbid", json_schema_extra=_describe_derived)

    hkid: str | None
    hkidValid: bool | None
    gender: Literal["M", "F", "U"] | None
    dob: str | None
    studyAt: str | None


class OrderView(QCareDto):
    """The merged order in the DTO's own shape, plus where it stands."""

    updated_at: str | None
    normalized: Normalized


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    broker: bool
    database: bool
    auth: Literal["on", "off"] = Field(
        description='"off": QCARE_API_KEYS is empty, no request is authenticated (loopback only)'
    )


class Liveness(BaseModel):
    status: Literal["ok"]
