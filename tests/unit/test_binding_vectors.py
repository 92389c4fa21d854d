"""Every vector of the old server's manifest, at the binding level (WIRE.md)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from qcare_ingest.binding import UnsupportedMediaTypeError, bind, select_format
from qcare_ingest.dates import parse_dotnet
from tests.support.confirmed import expectation
from tests.support.payloads import VECTORS

MANIFEST: list[dict[str, Any]] = json.loads((VECTORS / "manifest.json").read_text())


def _comparable(field: str, value: Any) -> Any:
    if field == "studyDate" and value is not None:
        parsed = parse_dotnet(value)
        assert parsed is not None
        return parsed.value.isoformat()
    return value


@pytest.mark.parametrize("case", MANIFEST, ids=[c["id"] for c in MANIFEST])
def test_vector_binds_as_the_old_server_did(case: dict[str, Any]) -> None:
    body = (VECTORS / case["file"]).read_bytes()
    expect = expectation(case)
    if expect["status"] == 415:
        with pytest.raises(UnsupportedMediaTypeError):
            select_format(case["content_type"])
        return
    if not body:
        fmt, charset = select_format("application/json")  # empty body: type never consulted
    else:
        fmt, charset = select_format(case["content_type"])
    result = bind(fmt, charset, body)
    assert sorted(result.errors) == sorted(expect["error_keys"]), result.errors
    for messages in result.errors.values():
        assert all(m and len(m) < 300 for m in messages)
    if expect["model"] is None:
        assert result.model is None
        return
    assert result.model is not None
    dumped = result.model.model_dump()
    for field, value in expect["model"]["subset"].items():
        assert _comparable(field, dumped[field]) == value, field


def test_seventh_fraction_digit_survives_binding() -> None:
    body = (VECTORS / "json_01_help_page_sample.json").read_bytes()
    result = bind(*select_format("application/json"), body)
    assert result.model is not None
    assert result.model.studyDate == "2025-10-26T15:51:31.8166249+08:00"
    parsed = parse_dotnet(result.model.studyDate)
    assert parsed is not None
    assert parsed.extra_ticks == 9
