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
# Expectations of the old manifest that the reference server contradicts, until the manifest
# is regenerated from it: an absent NoOfImages is null (int?), an empty <hkid/> is "".
_CONFIRMED_BY_REFERENCE: dict[str, dict[str, Any]] = {
    "x03": {
        "services": [{"studyDesc": "a", "bodypart": None, "noOfImages": None, "warningTime": 0}]
    },
    "x04": {
        "services": [{"studyDesc": "a", "bodypart": None, "noOfImages": None, "warningTime": 3}]
    },
    "x05": {"hkid": ""},
}

# Where the reference server (../shared/oracle, the real Web API 5.2.7 + Json.NET 6.0.4)
# gives other ModelState keys than this (older) manifest: the keys it gave. A model
# bound beside errors is never used (the gateway answers 400), so it is not compared.
REFERENCE_ERROR_KEYS: dict[str, list[str]] = {
    "j08": ["services[1].studyDesc"],
    "j10": ["services[1].studyDesc"],
    "j12": ["services[0].noOfImages", "services[0].warningTime"],
    "j20": ["extra", "extra" + "[0]" * 255],  # the reader's MaxDepth of 256, as Json.NET
    "j27": ["services[1].$ref"],
    "j28": ["services.studyDesc"],
}


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
    if case["id"] in REFERENCE_ERROR_KEYS:
        assert sorted(result.errors) == sorted(REFERENCE_ERROR_KEYS[case["id"]]), result.errors
        return
    assert sorted(result.errors) == sorted(expect["error_keys"]), result.errors
    for messages in result.errors.values():
        assert all(m and len(m) < 300 for m in messages)
    if expect["model"] is None:
        assert result.model is None
        return
    assert result.model is not None
    dumped = result.model.model_dump()
    subset = {**expect["model"]["subset"], **_CONFIRMED_BY_REFERENCE.get(case["id"], {})}
    for field, value in subset.items():
        assert _comparable(field, dumped[field]) == value, field


def test_seventh_fraction_digit_survives_binding() -> None:
    body = (VECTORS / "json_01_help_page_sample.json").read_bytes()
    result = bind(*select_format("application/json"), body)
    assert result.model is not None
    assert result.model.studyDate == "2025-10-26T15:51:31.8166249+08:00"
    parsed = parse_dotnet(result.model.studyDate)
    assert parsed is not None
    assert parsed.extra_ticks == 9
