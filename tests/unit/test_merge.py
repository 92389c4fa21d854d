"""Per-field last-writer-wins equals applying updates in version order, any arrival order."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from qcare_ingest.plan import take

FIELDS = ["name", "address", "gender"]
update = st.fixed_dictionaries(
    {f: st.one_of(st.none(), st.sampled_from(["a", "b", "c"])) for f in FIELDS}
)


@given(st.lists(update, min_size=1, max_size=8), st.randoms())
def test_any_arrival_order_ends_in_version_order_state(
    updates: list[dict[str, Any]], rnd: Any
) -> None:
    versioned = [(f"{i:020d}|m{i}", u) for i, u in enumerate(updates)]
    expected: dict[str, Any] = {}
    for _, u in versioned:  # sequential, in version order
        expected.update({k: v for k, v in u.items() if v is not None})
    shuffled = list(versioned)
    rnd.shuffle(shuffled)
    state: dict[str, Any] = {}
    versions: dict[str, str] = {}
    for version, u in shuffled + shuffled[:2]:  # with redeliveries
        won = take(u, versions, version)
        state.update(won)
        versions.update(dict.fromkeys(won, version))
    assert state == expected
