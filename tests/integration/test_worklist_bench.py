"""The worklist bench cannot rot: its smoke version runs in the suite. Its speed targets
live in the bench and the README, not here."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.procs import ROOT


def test_worklist_bench_smoke() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.worklist", "--smoke", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)
    counts = {r["query"]: r["items"] for r in out["results"]}
    assert counts["day+modality, all items (C-FIND)"] == out["orders_on_the_day"] == 200
    assert counts["day+modality+accession (C-FIND)"] == 1
    assert all(r["p50_ms"] > 0 for r in out["results"])
