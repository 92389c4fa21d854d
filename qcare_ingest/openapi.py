"""The OpenAPI 3.1 document, generated from the pydantic models (SPEC §1, §2)."""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel

from . import __version__, limits
from .api_models import (
    InvalidRequest,
    Liveness,
    MessageView,
    OrderView,
    Problem,
    Queued,
    Readiness,
)
from .dto import QCareDto
from .fhir_openapi import fhir_paths
from .fields import BY_NAME, FIELDS, SERVICE_FIELDS

REF = "#/components/schemas/{model}"
NO_CONTROL = r"[^\u0000-\u001f\u007f-\u009f]"  # a character an identifier may hold
JSON_TYPES = ("application/json", "text/json", "text/html")
XML_TYPES = ("application/xml", "text/xml")
FORM = "application/x-www-form-urlencoded"
STUDY_DATE_PATTERN = (
    r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,7})?)?(Z|[+-]\d{2}:\d{2})?)?$"
    r"|^/Date\(-?\d+([+-]\d{4})?\)/$"
)


def _schemas(*models: type[BaseModel]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template=REF, mode="serialization")
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    return out


def _request_schema(schemas: dict[str, Any]) -> dict[str, Any]:
    """What a client may send: the DTO, lenient where the old binder was."""
    dto = copy.deepcopy(schemas["QCareDto"])
    dto.pop("additionalProperties", None)  # unknown properties are ignored, as before
    dto["required"] = ["msg_id"]
    dto["properties"]["msg_id"] = {
        "type": "string",
        "minLength": 1,
        "description": BY_NAME["msg_id"].description,
    }
    nonblank = {"type": "string", "pattern": r"\S"}
    dto["anyOf"] = [
        {"properties": {key: nonblank}, "required": [key]}
        for key in ("hkid", "passno", "accessionNo")
    ]
    dto["properties"]["studyDate"] = {
        "anyOf": [{"type": "string", "pattern": STUDY_DATE_PATTERN}, {"type": "null"}],
        "description": BY_NAME["studyDate"].description
        + "; a date alone, or /Date(ms+hhmm)/; kept exactly as sent",
        "examples": ["2025-10-26T15:51:31.8166249+08:00"],
    }
    dto["description"] = (
        "Json.NET binding: names are case-insensitive; leading $id/$ref/$values metadata is "
        "honoured; numbers and booleans bind to strings as their literal text; integer "
        "strings bind to ints. A usable update also names hkid, passno or accessionNo."
    )
    line = copy.deepcopy(schemas["ServicesInfo"])
    line.pop("additionalProperties", None)
    _limit(dto["properties"], limits.DTO_LIMITS)
    _limit(line["properties"], limits.SERVICE_LIMITS)
    dto["properties"]["services"]["maxItems"] = limits.MAX_SERVICE_LINES
    dto["properties"]["msg_id"]["pattern"] = (
        rf"^{NO_CONTROL}*[^\s\u0000-\u001f\u007f-\u009f]{NO_CONTROL}*$"
    )
    return {"QCareDtoRequest": dto, "ServicesInfoRequest": line}


def _limit(props: dict[str, Any], table: dict[str, limits.TextLimit]) -> None:
    """maxLength counts characters (code points) as limits.py does; the byte limit is an
    extension keyword, since JSON Schema has none."""
    for name, limit in table.items():
        prop = props.setdefault(name, {"type": "string"})
        prop["maxLength"] = limit.chars
        prop["x-maxUtf8Bytes"] = limit.utf8_bytes
        if limit.identifier:
            prop["pattern"] = f"^{NO_CONTROL}*$"


def _xml_schema(request: dict[str, Any]) -> dict[str, Any]:
    dto = copy.deepcopy(request["QCareDtoRequest"])
    dto["xml"] = {"name": "QCareDto"}
    canon_to_xml = {f.name: f.wire for f in FIELDS}
    for name, prop in dto["properties"].items():
        if canon_to_xml.get(name, name) != name:
            prop["xml"] = {"name": canon_to_xml[name]}
    dto["properties"]["services"] = {
        "type": "array",
        "xml": {"wrapped": True},
        "items": {"$ref": REF.format(model="ServicesInfoXml")},
        "description": BY_NAME["services"].description,
    }
    dto["description"] = "XmlSerializer: C# element names, case-sensitive, any order; no DTD."
    line = copy.deepcopy(request["ServicesInfoRequest"])
    line["xml"] = {"name": "ServicesInfo"}
    line_xml = {f.name: f.wire for f in SERVICE_FIELDS}
    for name, prop in line["properties"].items():
        if line_xml.get(name, name) != name:
            prop["xml"] = {"name": line_xml[name]}
    return {"QCareDtoXml": dto, "ServicesInfoXml": line}


def _form_schema() -> dict[str, Any]:
    props: dict[str, Any] = {
        f.name: {"type": "string", "description": f.description}
        for f in FIELDS
        if f.name != "services"
    }
    _limit(props, limits.DTO_LIMITS)
    return {
        "QCareDtoForm": {
            "type": "object",
            "properties": props,
            "required": ["msg_id"],
            "description": "Web API form binding: property names, ASCII case ignored, jQuery "
            "keys (name[] = name); the first value of a key wins; empty means null; studyDate "
            "as .NET's DateTime.Parse reads it; at most 100,000 keys. Service lines are never "
            "bound from a form (the old server's `services` is a field): they are ignored, "
            "with a warning.",
        }
    }


def _content(ref: str, *types: str) -> dict[str, Any]:
    return {t: {"schema": {"$ref": REF.format(model=ref)}} for t in types}


def _problem(description: str, *extra_types: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": _content("Problem", "application/json", *extra_types),
    }


def _json(description: str, model: str) -> dict[str, Any]:
    return {"description": description, "content": _content(model, "application/json")}


RETRY_AFTER = {"Retry-After": {"schema": {"type": "string"}, "description": "seconds"}}
TEXT = {"text/plain": {"schema": {"type": "string"}}}
AUTH = {"401": _problem("Missing or wrong API key"), "403": _problem("Network not allowed")}
UNAVAILABLE = {
    "description": "The broker or database is unavailable; retry later",
    "headers": RETRY_AFTER,
    "content": _content("Problem", "application/json"),
}


def _path_param(name: str) -> list[dict[str, Any]]:
    return [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}]


def _intake() -> dict[str, Any]:
    invalid = {
        **_content("InvalidRequest", "application/json"),
        "application/xml": {"schema": {"type": "string"}},
    }
    return {
        "operationId": "updateXRayOrder",
        "summary": "Post any update on patient/doctor/X-ray information",
        "requestBody": {
            "required": True,
            "content": {
                **_content("QCareDtoRequest", *JSON_TYPES),
                **_content("QCareDtoXml", *XML_TYPES),
                **_content("QCareDtoForm", FORM),
            },
        },
        "responses": {
            "200": _json("Queued: RabbitMQ confirmed the persistent message", "Queued"),
            "400": {
                "description": "Binding errors, a value over its limit (maxLength, "
                "x-maxUtf8Bytes, maxItems; whole numbers past Int32; more than "
                f"{limits.MAX_JSON_PARTS} JSON objects, arrays and values or "
                f"{limits.MAX_XML_MARKUP} XML tags and attributes), or nothing usable",
                "content": invalid,
            },
            **AUTH,
            "408": _problem("The body did not arrive within QCARE_BODY_TIMEOUT seconds"),
            "413": {"description": "Body over 4 MiB", "content": TEXT},
            "415": _problem("Missing or unsupported Content-Type", "application/xml"),
            "503": UNAVAILABLE,
        },
    }


def _read(operation: str, param: str, what: str, model: str, missing: str) -> dict[str, Any]:
    return {
        "operationId": operation,
        "parameters": _path_param(param),
        "responses": {
            "200": _json(what, model),
            "404": _problem(missing),
            **AUTH,
            "503": UNAVAILABLE,
        },
    }


def _probe(operation: str, responses: dict[str, Any]) -> dict[str, Any]:
    return {"get": {"operationId": operation, "security": [{}], "responses": responses}}


def document(auth: bool = True) -> dict[str, Any]:
    """`auth`: whether the gateway has API keys (QCARE_API_KEYS). With keys every /api/
    operation needs one of them and nothing else; without, the document says so: anonymous."""
    models = (QCareDto, Queued, Problem, InvalidRequest, MessageView, OrderView, Readiness)
    schemas = _schemas(*models, Liveness)
    request = _request_schema(schemas)
    schemas.update(request)
    for schema in request.values():
        for prop in schema["properties"].values():
            _retarget(prop)
    schemas.update(_xml_schema(request))
    schemas.update(_form_schema())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "qcare-ingest",
            "version": __version__,
            "description": "QCare X-ray order intake, compatible with the old ASP.NET endpoint."
            + ("" if auth else " AUTHENTICATION IS OFF on this gateway (no QCARE_API_KEYS)."),
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
            },
        },
        "security": [{"bearer": []}, {"apiKey": []}] if auth else [{}],
        "paths": {
            "/api/v1/qcare/updateXRayOrder": {"post": _intake()},
            "/api/v1/qcare/messages/{msg_id}": {
                "get": _read(
                    "getMessage",
                    "msg_id",
                    "What became of the message",
                    "MessageView",
                    "Unknown: still queued, or never received",
                )
            },
            "/api/v1/qcare/orders/{accessionNo}": {
                "get": _read(
                    "getOrder",
                    "accessionNo",
                    "The order as it stands now",
                    "OrderView",
                    "Unknown accession number",
                )
            },
            "/healthz": _probe("healthz", {"200": _json("alive", "Liveness")}),
            "/readyz": _probe(
                "readyz",
                {"200": _json("ready", "Readiness"), "503": _json("not ready", "Readiness")},
            ),
            "/metrics": _probe("metrics", {"200": {"description": "Prometheus", "content": TEXT}}),
            **fhir_paths(),
        },
    }


def _retarget(prop: dict[str, Any]) -> None:
    """Point request schemas at the request variant of ServicesInfo."""
    for value in prop.values():
        if isinstance(value, dict):
            if value.get("$ref") == REF.format(model="ServicesInfo"):
                value["$ref"] = REF.format(model="ServicesInfoRequest")
            _retarget(value)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    if item.get("$ref") == REF.format(model="ServicesInfo"):
                        item["$ref"] = REF.format(model="ServicesInfoRequest")
                    _retarget(item)
