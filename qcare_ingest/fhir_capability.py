"""GET /fhir/metadata: the CapabilityStatement, from the search parameters fhir_search reads."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from . import __version__
from .fhir_resources import FHIR_VERSION
from .fhir_search import PAGING_PARAMS, PATIENT_PARAMS, REQUEST_PARAMS

SECURITY = (
    "Every /fhir/ request needs an API key with the 'read' scope (X-Api-Key, or "
    "Authorization: Bearer): 401 without a valid key, 403 without the scope or from a "
    "network not allowed. Every read of a Patient or ServiceRequest is written to the audit "
    "trail (qcare-ingest audit)."
)
_STARTED = datetime.now(UTC).replace(microsecond=0).isoformat()


def _params(params: dict[str, str]) -> list[dict[str, Any]]:
    found = []
    for name, documentation in params.items():
        kind = documentation.split(":", 1)[0]
        found.append({"name": name, "type": kind, "documentation": documentation})
    for name, documentation in PAGING_PARAMS.items():
        found.append({"name": name, "type": "number", "documentation": documentation})
    return found


def _resource(kind: str, profile: str, params: dict[str, str]) -> dict[str, Any]:
    return {
        "type": kind,
        "profile": profile,
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "versioning": "no-version",
        "readHistory": False,
        "updateCreate": False,
        "searchParam": _params(params),
    }


def capability_statement(base_url: str, auth: bool) -> dict[str, Any]:
    """`base_url`: this server's FHIR base (…/fhir); `auth`: whether keys are configured."""
    security = SECURITY if auth else "AUTHENTICATION IS OFF on this gateway (no QCARE_API_KEYS)."
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": _STARTED,
        "publisher": "qcare-ingest",
        "kind": "instance",
        "software": {"name": "qcare-ingest", "version": __version__},
        "implementation": {
            "description": "QCare X-ray orders and their patients, read-only",
            "url": base_url,
        },
        "fhirVersion": FHIR_VERSION,
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "documentation": "Read-only views. Every ServiceRequest is status 'active', "
                "intent 'order'. Searches return a searchset Bundle with total and "
                "self/next/previous links (_count, _offset).",
                "security": {"cors": False, "description": security},
                "resource": [
                    _resource(
                        "ServiceRequest",
                        "http://hl7.org/fhir/StructureDefinition/ServiceRequest",
                        REQUEST_PARAMS,
                    ),
                    _resource(
                        "Patient", "http://hl7.org/fhir/StructureDefinition/Patient", PATIENT_PARAMS
                    ),
                ],
            }
        ],
    }
