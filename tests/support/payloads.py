"""Request bodies for tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# A copy of ../shared/wire/vectors (with its manifest), so a clone is self-contained.
VECTORS = Path(__file__).resolve().parents[1] / "vectors"

UPDATE = "/api/v1/qcare/updateXRayOrder"


def vector(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


def help_page_sample(msg_id: str | None = None, accession: str | None = None) -> bytes:
    """The help page's JSON sample, byte for byte, with msg_id/accessionNo optionally swapped."""
    body = vector("json_01_help_page_sample.json")
    if msg_id is not None:
        body = body.replace(b'"msg_id":"sample string 1"', f'"msg_id":"{msg_id}"'.encode())
    if accession is not None:
        body = body.replace(b'"sample string 16"', f'"{accession}"'.encode())
    return body


def order(msg_id: str, accession: str, **fields: Any) -> bytes:
    dto: dict[str, Any] = {
        "msg_id": msg_id,
        "accessionNo": accession,
        "hkid": "A123456(3)",
        "name": "CHAN TAI MAN",
        "studyDate": "2025-10-26T15:51:31.8166249+08:00",
        "services": [{"studyDesc": "CHEST PA", "bodypart": "CHEST", "noOfImages": 2}],
    }
    dto.update(fields)
    return json.dumps(dto).encode()
