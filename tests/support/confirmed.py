"""Vector expectations the reference server (../shared/oracle) corrected.

The manifest (tests/vectors/manifest.json) is the old server as WIRE.md described it and is
not edited; where the real Web API 5.2.7 bound a vector otherwise, the reference wins.
"""

from __future__ import annotations

from typing import Any

# Where the reference server (../shared/oracle, the real Web API 5.2.7) bound a vector otherwise
# than the old manifest says: a form post never bound `services` (a public field; form binding
# binds properties only), and Web API 2 has no 1,000-key limit on forms.
REFERENCE_CONFIRMED: dict[str, dict[str, Any]] = {
    "f01": {
        "status": None,
        "error_keys": [],
        "model": {
            "subset": {
                "services": None,
                "name": "CHAN TAI MAN",
                "address": "1 Main St",
                "studyDate": "2025-10-26T15:51:31.816624+08:00",
            }
        },
    },
    "f02": {
        "status": None,
        "error_keys": [],
        "model": {"subset": {"services": None, "name": "陳大文"}},
    },
    "f06": {"status": None, "error_keys": [], "model": {"subset": {"services": None}}},
    "f08": {"status": None, "error_keys": [], "model": {"subset": {"name": None}}},
}


def expectation(case: dict[str, Any]) -> dict[str, Any]:
    """The case's expectation: the manifest's, unless the reference server corrected it."""
    expect: dict[str, Any] = REFERENCE_CONFIRMED.get(case["id"], case["expect"])
    return expect
