"""Issue 4: any delivery order, duplicates and redeliveries, three concurrent appliers taking
random batches -> the state of applying the history one by one in received_at order."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qcare_ingest.dto import QCareDto
from qcare_ingest.envelope import Envelope
from qcare_ingest.retry import RetryPolicy
from qcare_ingest.store import apply_batch
from tests.conftest import RunEnv
from tests.support.oracle import ORDER_FIELDS, PATIENT_FIELDS, sequential_state
from tests.support.queues import cli

HKIDS = [
    ["A123456(3)", "a1234563", "A 123456 (3)"],
    ["E364912(5)", "e364912(5)"],
    ["AB123456(9)", "AB1234569"],
]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def maybe(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), values)


@st.composite
def update(draw: st.DrawFn) -> dict[str, Any]:
    person = draw(st.integers(0, len(HKIDS)))  # len(HKIDS): a passport-only patient
    dto: dict[str, Any] = {
        "hkid": None if person == len(HKIDS) else draw(st.sampled_from(HKIDS[person])),
        "passno": "K1234567" if person == len(HKIDS) else draw(maybe(st.just("P99"))),
        "name": draw(maybe(st.sampled_from(["CHAN TAI MAN", "陳大文", "LEE SIU MING"]))),
        "gender": draw(maybe(st.sampled_from(["M", "F", "Male", "女"]))),
        "dob": draw(maybe(st.sampled_from(["1980-02-29", "19800229", "n/a"]))),
        "address": draw(maybe(st.sampled_from(["1 Main St", "2 Side Rd"]))),
        "accessionNo": draw(maybe(st.sampled_from(["ACC1", "ACC2", "ACC3"]))),
        "studyDate": draw(
            maybe(
                st.sampled_from(
                    ["2025-10-26T15:51:31.8166249+08:00", "2025-10-27", "2025-10-28T09:00:00"]
                )
            )
        ),
        "studyTime": draw(maybe(st.sampled_from(["09:30", "1545"]))),
        "location": draw(maybe(st.sampled_from(["Room 1", "Room 2"]))),
        "chitno": draw(maybe(st.sampled_from(["C1", "C2"]))),
        "modality": draw(maybe(st.sampled_from(["CR", "DX"]))),
        "refClinicFullname": draw(maybe(st.sampled_from(["Central Clinic", "Kowloon Clinic"]))),
        "services": draw(
            maybe(
                st.lists(
                    st.fixed_dictionaries(
                        {
                            "studyDesc": st.sampled_from(["CHEST PA", "KUB"]),
                            "bodypart": maybe(st.just("CHEST")),
                            "noOfImages": st.integers(0, 3),
                            "warningTime": st.integers(0, 60),
                        }
                    ),
                    max_size=3,
                )
            )
        ),
    }
    return dto


histories = st.lists(update(), min_size=1, max_size=12)


async def current_state(
    conn: asyncpg.Connection, run: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    patients = {
        r["patient_key"].replace(run, ""): {
            "hkid": r["hkid_raw"],
            "passno": r["passno"],
            "name": r["name"],
            "gender": r["gender_raw"],
            "dob": r["dob_raw"],
            "address": r["address"],
        }
        for r in await conn.fetch("SELECT * FROM patients WHERE patient_key LIKE '%' || $1", run)
    }
    orders = {}
    for r in await conn.fetch("SELECT * FROM orders WHERE accession_no LIKE $1 || '%'", run):
        lines = await conn.fetch(
            "SELECT * FROM order_services WHERE accession_no = $1 ORDER BY line_no",
            r["accession_no"],
        )
        orders[r["accession_no"].replace(run, "")] = {
            "studyDate": r["study_date_raw"],
            "studyTime": r["study_time"],
            "location": r["location"],
            "chitno": r["chitno"],
            "modality": r["modality"],
            "refClinicFullname": r["ref_clinic_fullname2"],
            "services": [
                {
                    "studyDesc": s["study_desc"],
                    "bodypart": s["bodypart"],
                    "noOfImages": s["no_of_images"],
                    "warningTime": s["warning_time"],
                }
                for s in lines
            ]
            if "services" in r["field_versions"]
            else None,
            "patient": r["patient_key"].replace(run, "") if r["patient_key"] else None,
        }
    return patients, orders


def isolate(dto: dict[str, Any], run: str) -> dict[str, Any]:
    """Give each example its own patients and orders in the shared test database."""
    out = dict(dto)
    if out["hkid"] is not None:
        out["hkid"] = out["hkid"] + run  # normalises to HKID:<id><run>: same patient per id
    if out["passno"] is not None:
        out["passno"] = out["passno"] + run
    if out["accessionNo"] is not None:
        out["accessionNo"] = run + out["accessionNo"]
    return out


def strip(dto: dict[str, Any], run: str) -> dict[str, Any]:
    out = dict(dto)
    for field in ("hkid", "passno"):
        if out[field] is not None:
            out[field] = out[field][: -len(run)]
    if out["accessionNo"] is not None:
        out["accessionNo"] = out["accessionNo"][len(run) :]
    return out


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(history=histories, seed=st.integers(0, 2**32 - 1), dup_rate=st.floats(0, 0.5))
async def test_any_delivery_order_ends_in_received_at_order_state(
    db: asyncpg.Pool, history: list[dict[str, Any]], seed: int, dup_rate: float
) -> None:
    run = uuid.uuid4().hex[:8].upper()
    rnd = random.Random(seed)
    envelopes = []
    for i, raw in enumerate(history):
        dto = QCareDto.model_validate({**isolate(raw, run), "msg_id": f"{run}-{i}"})
        envelopes.append(
            Envelope(dto.msg_id or "", T0 + timedelta(microseconds=i), dto.encode(), dto)
        )
    deliveries = envelopes + [e for e in envelopes if rnd.random() < dup_rate]
    rnd.shuffle(deliveries)
    queue: asyncio.Queue[Envelope] = asyncio.Queue()
    for env in deliveries:
        queue.put_nowait(env)
    policy = RetryPolicy(attempts=10, initial=0.001, maximum=0.05)

    async def applier() -> None:
        async with db.acquire() as conn:
            while not queue.empty():  # batches of 1 to 6 deliveries, as a worker takes them
                batch = [queue.get_nowait() for _ in range(min(rnd.randint(1, 6), queue.qsize()))]
                await policy.call(lambda b=batch: apply_batch(conn, b))  # type: ignore[misc]

    await asyncio.gather(applier(), applier(), applier())

    expected_patients, expected_orders = sequential_state(
        [{**strip(isolate(raw, run), run), "msg_id": str(i)} for i, raw in enumerate(history)]
    )
    async with db.acquire() as conn:
        patients, orders = await current_state(conn, run)
    patients = {
        k: {
            **v,
            "hkid": v["hkid"][: -len(run)] if v["hkid"] else None,
            "passno": v["passno"][: -len(run)] if v["passno"] else None,
        }
        for k, v in patients.items()
    }
    assert patients == {k: {f: v[f] for f in PATIENT_FIELDS} for k, v in expected_patients.items()}
    assert orders == {
        k: {**{f: v[f] for f in ORDER_FIELDS}, "services": v["services"], "patient": v["patient"]}
        for k, v in expected_orders.items()
    }


def test_rebuild_after_the_ordering_runs_is_identical(test_env: RunEnv) -> None:
    """Issue 15: the journal of every run above, re-applied in received_at order into a fresh
    schema by `qcare-ingest rebuild`, gives the same tables the concurrent, shuffled,
    duplicated deliveries left."""
    done = cli(test_env.env(), "rebuild", timeout=600)
    assert (done.returncode, done.stdout.splitlines()[-1]) == (0, "identical"), (
        done.stdout + done.stderr
    )
