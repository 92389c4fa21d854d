"""Every vector of the manifest at the binding level: our binder against what the reference
server (the old endpoint itself) answered for it, as recorded in tests/vectors/manifest.json
by `python -m tests.support.regen_manifest`.

Both sides are reduced to `tests.support.reference.Outcome`; a vector may differ only as a
tests/support/exceptions.py entry documents (a Mono artefact, or one of our limits).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from qcare_ingest.binding import bind, select_format
from qcare_ingest.dates import parse_dotnet
from tests.support import exceptions
from tests.support.payloads import VECTORS
from tests.support.reference import Divergence, Outcome, from_echo, ours

MANIFEST: list[dict[str, Any]] = json.loads((VECTORS / "manifest.json").read_text())


def recorded(case: dict[str, Any]) -> Outcome:
    """What the reference answered for this vector, when the manifest was regenerated."""
    answer = case["reference"]
    return from_echo(answer["status"], answer)


@pytest.mark.parametrize("case", MANIFEST, ids=[c["id"] for c in MANIFEST])
def test_vector_binds_as_the_reference_did(case: dict[str, Any]) -> None:
    body = (VECTORS / case["file"]).read_bytes()
    theirs, mine = recorded(case), ours(body, case["content_type"])
    if theirs == mine:
        return
    entry = exceptions.match(body, case["content_type"], theirs, mine)
    if entry is None:
        div = Divergence(body, case["content_type"], case["id"], theirs, mine)
        pytest.fail(f"{case['file']} binds unlike the reference:\n{div.describe()}")


@pytest.mark.parametrize("case", MANIFEST, ids=[c["id"] for c in MANIFEST])
def test_manifest_shapes_agree(case: dict[str, Any]) -> None:
    """`expect` (the older shape test_wire_http reads) says what `reference` says."""
    theirs, expect = recorded(case), case["expect"]
    assert expect["status"] == theirs.status
    assert sorted(expect["error_keys"]) == sorted(theirs.error_keys)
    assert (expect["model"] is None) == (case["reference"].get("model") is None)


def test_error_messages_are_short() -> None:
    for case in MANIFEST:
        fmt_body = (VECTORS / case["file"]).read_bytes()
        if not fmt_body or case["reference"]["status"] == 415:
            continue
        result = bind(*select_format(case["content_type"]), fmt_body)
        for messages in result.errors.values():
            assert all(m and len(m) < 300 for m in messages), case["id"]


def test_seventh_fraction_digit_survives_binding() -> None:
    body = (VECTORS / "json_01_help_page_sample.json").read_bytes()
    result = bind(*select_format("application/json"), body)
    assert result.model is not None
    assert result.model.studyDate == "2025-10-26T15:51:31.8166249+08:00"
    parsed = parse_dotnet(result.model.studyDate)
    assert parsed is not None
    assert parsed.extra_ticks == 9
