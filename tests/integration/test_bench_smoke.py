"""The benchmark cannot rot: its smoke version (every phase, tiny) runs in the suite.
Speed targets live in the benchmark itself, not here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.procs import ROOT


def test_bench_smoke_runs_every_phase(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--results", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads((tmp_path / "smoke.json").read_text())
    sections = ("ceilings", "gateway", "drain", "end_to_end", "bare_pipeline", "soak", "verdicts")
    for section in sections:
        assert section in out
    assert out["gateway"]["saturation_rps"] > 0
    assert out["gateway"]["bare_frames_saturation_rps"] > 0
    assert out["drain"][0]["per_s"] > 0
    assert out["end_to_end"]["saturation_per_s"] > 0
    assert out["end_to_end"]["half"]["applied"] > 0
    assert out["ceilings"]["naive_worker_per_s"] > 0
    assert out["bare_pipeline"]["saturation_per_s"] > 0
    for cpu in (out["end_to_end"]["half"]["cpu"], out["bare_pipeline"]["cpu"]):
        assert cpu["cpu_s"]["total"] > 0
    assert (tmp_path / "smoke.png").stat().st_size > 1000
    assert "| gateway saturation" in result.stdout
    assert "| gateway saturation against a bare handler on our frame writer" in result.stdout
