"""Cost checks for hostile inputs as ratios, not seconds: a body four times longer must cost
about four times as much (linear), not sixteen (quadratic). The machine's speed and load
cancel out of a ratio, so these checks fail on a regression and not on a busy CI machine."""

from __future__ import annotations

import time
from collections.abc import Callable

GROWTH = 4  # the big input is this many times the small one
LINEAR_LIMIT = 8.0  # linear gives about 4, quadratic about 16


def seconds(run: Callable[[bytes], object], body: bytes, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        run(body)
        best = min(best, time.perf_counter() - started)
    return best


def assert_linear(run: Callable[[bytes], object], make: Callable[[int], bytes], n: int) -> None:
    """run(make(n)) costs at most LINEAR_LIMIT x run(make(n // GROWTH)), plus 20 ms of slack
    for inputs too cheap to time."""
    small = seconds(run, make(n // GROWTH), repeat=3)
    big = seconds(run, make(n), repeat=2)
    assert big < LINEAR_LIMIT * small + 0.02, (
        f"{n} bytes cost {big:.3f} s, {big / max(small, 1e-9):.1f} x the {n // GROWTH} bytes' "
        f"{small:.3f} s: more than linear"
    )
