"""Regenerate tests/vectors/manifest.json from the reference server (issue 13).

The manifest's expectations came from a reconstruction (../shared/wire/WIRE.md); the
reference server is the old endpoint itself, so what it answers is the fact. Each case
keeps its id, file, content type and note, and gets:

* `reference`: what the reference answered — HTTP status, ModelState (keys with the `dto`
  prefix, as Web API wrote them, and their messages), the bound model in C# names with
  `studyDate` as {o, kind, ticks, utcTicks}, and the Content-Type as Web API parsed it;
* `expect`: the same in the manifest's older shape (status only for 415, error keys after
  `dto.`, the members that are set in canonical names, or null for a null model), which
  tests/integration/test_wire_http.py reads.

    python -m tests.support.regen_manifest            # rewrite the manifest
    python -m tests.support.regen_manifest --check    # exit 1 when it is out of date

The reference is $QCARE_REFERENCE_URL, else http://127.0.0.1:18090 when it answers, else
one started here with ../shared/oracle/run.sh (and stopped afterwards). Re-run it whenever
a vector is added or the oracle changes; tests/unit/test_binding_vectors.py compares our
binder with what is recorded here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from qcare_ingest.dto import DTO_FIELDS, SERVICE_FIELDS
from tests.support import reference as ref_support
from tests.support.payloads import VECTORS

MANIFEST = VECTORS / "manifest.json"
REPO = Path(__file__).resolve().parents[2]


def _canonical(model: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for cs, canon in DTO_FIELDS.items():
        value = model[cs]
        if canon == "studyDate" and value is not None:
            value = value["o"]
        elif canon == "services" and value is not None:
            value = [
                None if item is None else {c: item[k] for k, c in SERVICE_FIELDS.items()}
                for item in value
            ]
        out[canon] = value
    return out


def record(status: int, echo: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(reference, expect) for one answer of the reference."""
    if status == 415:
        reference = {"status": 415, "message": echo.get("message")}
        return reference, {"status": 415, "error_keys": [], "model": None}
    reference = {
        "status": status,
        "errors": echo["errors"],
        "model": echo["model"],
        "contentType": echo.get("contentType"),
    }
    keys = sorted(k.removeprefix("dto").removeprefix(".") for k in echo["errors"])
    model = None
    if echo["model"] is not None:  # the members that are set (the rest are null or absent)
        canonical = _canonical(echo["model"])
        subset = {k: v for k, v in canonical.items() if v is not None or k == "services"}
        model = {"subset": subset}
    return reference, {"status": None, "error_keys": keys, "model": model}


def regenerate(client: ref_support.Reference, cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for case in cases:
        body = (VECTORS / case["file"]).read_bytes()
        reference, expect = record(*client.post(body, case["content_type"]))
        fresh = {k: v for k, v in case.items() if k not in ("expect", "reference")}
        out.append({**fresh, "expect": expect, "reference": reference})
    return out


def dumps(cases: list[dict[str, Any]]) -> str:
    return json.dumps(cases, indent=1, ensure_ascii=False) + "\n"


def _client() -> tuple[ref_support.Reference, ref_support.Started | None]:
    url = os.environ.get("QCARE_REFERENCE_URL")
    if url or ref_support.reachable(ref_support.DEFAULT_URL):
        return ref_support.Reference(url or ref_support.DEFAULT_URL), None
    oracle = ref_support.oracle_dir(REPO)
    if oracle is None:
        raise SystemExit(ref_support.ORACLE_HELP)
    started = ref_support.start_oracle(oracle, ref_support.free_port())
    return ref_support.Reference(started.url), started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args(argv)
    cases = json.loads(MANIFEST.read_text())
    client, started = _client()
    try:
        text = dumps(regenerate(client, cases))
    finally:
        client.close()
        if started is not None:
            started.stop()
    if args.check:
        stale = text != MANIFEST.read_text()
        print(f"{MANIFEST}: {'out of date' if stale else 'up to date'} ({client.url})")
        return 1 if stale else 0
    MANIFEST.write_text(text)
    print(f"{MANIFEST}: {len(cases)} cases from {client.url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
