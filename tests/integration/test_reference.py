"""Our binder against the reference server, the old endpoint itself (issue 13, SPEC §2).

Thousands of generated bodies (tests/support/refgen.py: JSON, XML, forms, Content-Type
dispatch) go to both; every outcome must agree (tests/support/reference.py's `Outcome`)
unless the divergence is documented in tests/support/exceptions.py.

    pytest -q tests/integration/test_reference.py            # starts ../shared/oracle/run.sh
    QCARE_REFERENCE_URL=http://127.0.0.1:18090 pytest ...     # use a running one
    QCARE_REFERENCE_SEED=1234 pytest ...                      # replay a run (the seed is printed)
    QCARE_REFERENCE_N=20000 pytest ...                        # more bodies (default 3000)

The seed, the counts and the documented divergences allowed are printed at the end of the
run ("reference server" section), passing or not.
"""

from __future__ import annotations

import os
import time
from collections import Counter, defaultdict

import pytest
from hypothesis import given, settings

from tests.conftest import REFERENCE_SUMMARY
from tests.support import exceptions, refgen
from tests.support.reference import Divergence, Reference, ours

BODIES = int(os.environ.get("QCARE_REFERENCE_N", "3000"))
MIN_BODIES = 1000
# the first start on a fresh machine installs Mono and builds the reference (minutes)
pytestmark = pytest.mark.timeout(1200)


def _seed() -> int:
    given = os.environ.get("QCARE_REFERENCE_SEED")
    return int(given) if given else int.from_bytes(os.urandom(4), "big")


def test_binder_agrees_with_the_reference(
    reference: Reference, request: pytest.FixtureRequest
) -> None:
    seed, n = _seed(), max(BODIES, MIN_BODIES)
    summary = request.config.stash.setdefault(REFERENCE_SUMMARY, [])
    summary.append(f"reference {reference.url}: {n} bodies, QCARE_REFERENCE_SEED={seed}")
    started = time.monotonic()
    per_format: Counter[str] = Counter()
    allowed: Counter[str] = Counter()
    undocumented: list[Divergence] = []
    for case in refgen.cases(seed, n):
        per_format[case.focus.partition(".")[0]] += 1
        theirs, mine = (
            reference.outcome(case.body, case.content_type),
            ours(case.body, case.content_type),
        )
        if theirs == mine:
            continue
        entry = exceptions.match(case.body, case.content_type, theirs, mine)
        if entry is not None:
            allowed[entry.id] += 1
        else:
            undocumented.append(Divergence(case.body, case.content_type, case.focus, theirs, mine))
    elapsed = time.monotonic() - started
    summary.append(
        f"{n} bodies in {elapsed:.1f}s ({dict(per_format)}); documented divergences "
        f"{dict(allowed) or 'none'}; undocumented {len(undocumented)}"
    )
    assert set(per_format) == set(refgen.FORMATS), per_format
    if undocumented:
        pytest.fail(_report(seed, n, undocumented, allowed), pytrace=False)


def _report(seed: int, n: int, found: list[Divergence], allowed: Counter[str]) -> str:
    classes: dict[tuple[str, str], list[Divergence]] = defaultdict(list)
    for div in found:
        classes[(div.focus, div.signature)].append(div)
    lines = [
        f"{len(found)} undocumented divergences from the reference in {n} bodies, "
        f"{len(classes)} classes (replay: QCARE_REFERENCE_SEED={seed} QCARE_REFERENCE_N={n}; "
        f"documented and allowed: {dict(allowed) or 'none'}).",
        "Fix the binder, or document the divergence in tests/support/exceptions.py.",
    ]
    ordered = sorted(classes.items(), key=lambda kv: -len(kv[1]))
    lines += [f"  {len(divs):5} [{focus}] {signature}" for (focus, signature), divs in ordered]
    for (focus, signature), divs in ordered:
        lines.append(f"\n== [{focus}] {signature}: {len(divs)}")
        lines.extend(d.describe() for d in sorted(divs, key=lambda d: len(d.body)))
    return "\n".join(lines)


@pytest.mark.parametrize("entry", exceptions.REGISTRY, ids=lambda e: e.id)
def test_each_documented_divergence_is_still_there(
    reference: Reference, entry: exceptions.Documented
) -> None:
    """Every registry entry's example diverges, as its predicate says: an entry the binders
    no longer need (or whose predicate misses its own example) fails here."""
    theirs, mine = (
        reference.outcome(entry.example, entry.content_type),
        ours(entry.example, entry.content_type),
    )
    assert theirs != mine, f"{entry.id}: the example binds the same now; remove the entry"
    assert entry.matches(entry.example, entry.content_type, theirs, mine), (theirs, mine)
    assert exceptions.match(entry.example, entry.content_type, theirs, mine) is entry


def test_the_generators_replay_from_a_seed() -> None:
    """QCARE_REFERENCE_SEED replays a run: the same seed, the same bodies (no oracle needed)."""
    first = list(refgen.cases(1234, 300))
    assert first == list(refgen.cases(1234, 300))
    assert first != list(refgen.cases(1235, 300))
    assert {c.focus.partition(".")[0] for c in first} == set(refgen.FORMATS)


@settings(max_examples=60, deadline=None, database=None)
@given(refgen.strategy())
def test_the_generators_as_a_hypothesis_strategy(case: refgen.Case) -> None:
    assert isinstance(case.body, bytes)
    assert case.content_type is None or isinstance(case.content_type, str)
    assert case.focus.partition(".")[0] in refgen.FORMATS
