"""The FHIR routes in the OpenAPI document: `fhir_paths()` is merged into openapi.document's
paths. The resources themselves are described by FHIR R4 (CapabilityStatement at
/fhir/metadata), not repeated here: a response is an object naming its resourceType."""

from __future__ import annotations

from typing import Any

from .fhir_resources import MEDIA_TYPE
from .fhir_search import MAX_COUNT, MAX_OFFSET, PAGING_PARAMS, PATIENT_PARAMS, REQUEST_PARAMS

SPEC = "https://hl7.org/fhir/R4/"


def _resource(*kinds: str) -> dict[str, Any]:
    return {
        MEDIA_TYPE: {
            "schema": {
                "type": "object",
                "required": ["resourceType"],
                "properties": {"resourceType": {"enum": list(kinds)}},
            }
        }
    }


def _answer(description: str, *kinds: str, **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": _resource(*kinds), **extra}


_OUTCOME = "OperationOutcome"
_ERRORS = {
    "401": _answer("Missing or wrong API key", _OUTCOME),
    "403": _answer("The key lacks the 'read' scope, or the network is not allowed", _OUTCOME),
    "503": _answer(
        "The database is unavailable; retry later",
        _OUTCOME,
        headers={"Retry-After": {"schema": {"type": "string"}, "description": "seconds"}},
    ),
}


def _query(params: dict[str, str]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": documentation,
            "schema": {"type": "string"},
        }
        for name, documentation in params.items()
    ]
    limits = {"_count": MAX_COUNT, "_offset": MAX_OFFSET}
    for name, documentation in PAGING_PARAMS.items():
        found.append(
            {
                "name": name,
                "in": "query",
                "required": False,
                "description": documentation,
                "schema": {"type": "integer", "minimum": 0, "maximum": limits[name]},
            }
        )
    return found


def _read(operation: str, kind: str) -> dict[str, Any]:
    return {
        "get": {
            "operationId": operation,
            "summary": f"Read one {kind} ({SPEC}{kind.lower()}.html)",
            "parameters": [
                {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "responses": {
                "200": _answer(f"The {kind}", kind),
                "404": _answer(f"No {kind} with that id", _OUTCOME),
                **_ERRORS,
            },
        }
    }


def _search(operation: str, kind: str, params: dict[str, str], note: str) -> dict[str, Any]:
    return {
        "get": {
            "operationId": operation,
            "summary": f"Search {kind}: a searchset Bundle with total and paging links. {note}",
            "parameters": _query(params),
            "responses": {
                "200": _answer("A searchset Bundle", "Bundle"),
                "400": _answer("A parameter that is not supported or not valid", _OUTCOME),
                **_ERRORS,
            },
        }
    }


def fhir_paths() -> dict[str, Any]:
    """The /fhir/ operations, for openapi.document's `paths`."""
    return {
        "/fhir/metadata": {
            "get": {
                "operationId": "fhirMetadata",
                "summary": "The CapabilityStatement (FHIR 4.0.1, JSON)",
                "responses": {
                    "200": _answer("The CapabilityStatement", "CapabilityStatement"),
                    **_ERRORS,
                },
            }
        },
        "/fhir/ServiceRequest": _search(
            "fhirSearchServiceRequest",
            "ServiceRequest",
            REQUEST_PARAMS,
            "Every order is status active.",
        ),
        "/fhir/ServiceRequest/{id}": _read("fhirReadServiceRequest", "ServiceRequest"),
        "/fhir/Patient": _search(
            "fhirSearchPatient", "Patient", PATIENT_PARAMS, "identifier or _id is required."
        ),
        "/fhir/Patient/{id}": _read("fhirReadPatient", "Patient"),
    }
