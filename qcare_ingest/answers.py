"""From a binding result to the old endpoint's error bodies (SPEC §2, WIRE.md §6)."""

from __future__ import annotations

import re
from xml.sax.saxutils import escape

from . import limits
from .binding import BindResult

PARAM = "dto"
INVALID = "The request is invalid."


def problems(result: BindResult) -> dict[str, list[str]] | None:
    """ModelState for a request we must refuse with 400, or None when it is usable."""
    if result.errors:
        return {(f"{PARAM}.{k}" if k else PARAM): v for k, v in result.errors.items()}
    model = result.model
    if model is None:
        return {PARAM: ["The request body is empty or null: send a QCareDto object."]}
    if model.msg_id is None or not model.msg_id.strip():
        return {f"{PARAM}.msg_id": ["msg_id is required: every update needs its own id."]}
    over = limits.check(model)
    if over:
        return {f"{PARAM}.{k}": v for k, v in over.items()}
    if not model.has_target():
        return {PARAM: ["Nothing to apply the update to: send hkid, passno or accessionNo."]}
    return None


def error_json(model_state: dict[str, list[str]]) -> dict[str, object]:
    return {"Message": INVALID, "ModelState": model_state}


def _xml_name(key: str) -> str:
    # XmlConvert.EncodeLocalName: characters not allowed in a name become _xHHHH_
    return re.sub(r"[^A-Za-z0-9_.\-]", lambda m: f"_x{ord(m[0]):04X}_", key)


def error_xml(model_state: dict[str, list[str]]) -> str:
    parts = [f"<Error><Message>{INVALID}</Message><ModelState>"]
    for key, messages in model_state.items():
        name = _xml_name(key)
        parts.extend(f"<{name}>{escape(m)}</{name}>" for m in messages)
    parts.append("</ModelState></Error>")
    return "".join(parts)


def message_xml(message: str) -> str:
    return f"<Error><Message>{escape(message)}</Message></Error>"
