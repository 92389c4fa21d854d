"""Issue 12, findings 7 and 9, against a real worker process with faults injected for real.

The worker starts with PYTHONPATH=tests/support/inject, whose sitecustomize.py makes
store.apply_batch raise RuntimeError (a bug) for one msg_id prefix, or the n-th
basic.consume fail; see that file. Nothing else of the product is touched.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta

import aio_pika
import asyncpg

from qcare_ingest.envelope import now_utc
from qcare_ingest.topology import declare, delay_queue
from tests.conftest import Procs, RunEnv
from tests.support.http import publish_as_gateway
from tests.support.procs import ROOT, wait_for
from tests.support.queues import dead_letters

INJECT = str(ROOT / "tests" / "support" / "inject")
# what the worker leaves unclosed is reported on its stderr (Python hides it by default)
LEAKS = {"PYTHONWARNINGS": "always::ResourceWarning"}


async def ids_in(amqp: aio_pika.abc.AbstractConnection, queue_name: str) -> set[str]:
    """message_id of every message in a queue, left in place."""
    channel = await amqp.channel()
    found: set[str] = set()
    try:
        queue = await channel.declare_queue(queue_name, passive=True)
        while (message := await queue.get(no_ack=False, fail=False)) is not None:
            found.add(message.message_id or "")
    finally:
        await channel.close()  # unacked: all of them go back
    return found


async def test_a_bug_is_dead_lettered_within_seconds_with_its_traceback(
    procs: Procs,
    test_env: RunEnv,
    db: asyncpg.Pool,
    amqp: aio_pika.abc.AbstractConnection,
) -> None:
    run = uuid.uuid4().hex[:8]
    bad = f"bug-{run}-bad"
    good = [f"bug-{run}-ok-{i}" for i in range(9)]
    name = f"BUGTEST PATIENT {run.upper()}"
    hkid = "K987654(2)"
    settings = test_env.settings()
    await (await declare(amqp, settings.delivery_limit, settings.retry_delays)).channel.close()
    received = now_utc()
    # queued before the worker starts, so that they arrive together and share a batch
    for i, msg_id in enumerate([*good[:4], bad, *good[4:]]):
        dto = {"msg_id": msg_id, "accessionNo": f"ACC-{msg_id}", "hkid": hkid, "name": name}
        await publish_as_gateway(amqp, dto, received + timedelta(microseconds=i))
    worker = procs.worker(
        concurrency=16,
        PYTHONPATH=INJECT,
        QCARE_TEST_BUG_PREFIX=bad,
        QCARE_SHUTDOWN_GRACE="5",
        **LEAKS,
    )
    started = time.monotonic()

    async def parked() -> dict[str, object] | None:
        return (await dead_letters(amqp)).get(bad)

    headers = await wait_for(parked, 10, interval=0.2, what="the bug's message dead-lettered")
    print(f"\nbug dead-lettered {time.monotonic() - started:.1f}s after the worker started")
    assert headers["x-qcare-dead-reason"] == "bug"
    assert headers["x-qcare-error-class"] == "RuntimeError"
    assert headers["x-qcare-error"] == "RuntimeError"  # the class, not what it said

    async def others_applied() -> bool:
        n = await db.fetchval(
            "SELECT count(*) FROM inbox WHERE msg_id = ANY($1::text[]) AND status = 'applied'",
            good,
        )
        return bool(n == len(good))

    await wait_for(others_applied, 10, what="the rest of its batch applied")

    async def recorded() -> asyncpg.Record | None:
        row: asyncpg.Record | None = await db.fetchrow(
            "SELECT status, error FROM inbox WHERE msg_id = $1", bad
        )
        return row

    row = await wait_for(recorded, 10, what="the failure recorded in the inbox")
    assert row["status"] == "dead_lettered"
    assert row["error"] == "bug: RuntimeError"

    # it shared a batch with the others, which was then redone message by message
    splits = [e for e in worker.events() if e.get("action") == "batch_split"]
    assert splits
    assert splits[0]["size"] > 1
    assert splits[0]["kind"] == "bug"
    # no delay ladder: never republished to a delay queue
    assert not [e for e in worker.events() if e.get("action") == "delayed"]
    for seconds in settings.retry_delays:
        assert bad not in await ids_in(amqp, delay_queue(seconds))

    # its traceback is in the worker's log, the body's personal data is not
    lines = [line for line in worker.text().splitlines() if bad in line and '"bug"' in line]
    assert len(lines) == 1, lines
    assert "apply_batch_with_injected_bug" in lines[0], "no traceback with the dead-letter"
    log = worker.text()
    for personal in (name, hkid, "K987654", "K9876542"):
        assert personal not in log
    assert worker.terminate(15) == 0
    assert "ResourceWarning" not in worker.text()


async def test_a_lane_whose_set_up_fails_leaves_nothing_behind(procs: Procs) -> None:
    # 4 lanes (prefetch 32, batches of 16); the 3rd lane's basic.consume fails once, after
    # two lanes were set up
    worker = procs.worker(
        concurrency=128,
        PYTHONPATH=INJECT,
        QCARE_WORKER_BATCH="16",
        QCARE_TEST_FAIL_CONSUME="3",
        QCARE_SHUTDOWN_GRACE="20",
        **LEAKS,
    )
    await worker.consuming()
    reconnects = [e for e in worker.events() if e.get("action") == "broker_reconnect"]
    assert [e["error"] for e in reconnects] == ["ConnectionResetError"]  # the injected failure
    consuming = [e for e in worker.events() if e.get("action") == "consuming"]
    assert [e["lanes"] for e in consuming] == [4]

    started = time.monotonic()
    code = await asyncio.to_thread(worker.terminate, 40)
    elapsed = time.monotonic() - started
    assert code == 0
    assert elapsed < 5, f"SIGTERM took {elapsed:.1f}s (grace 20 s): something was left running"
    events = worker.events()
    actions = [e.get("action") for e in events]
    assert "worker_stopped" in actions
    assert "handed_back" not in actions  # nothing had to be cancelled after the grace
    assert "tasks_left" not in actions, [e for e in events if e.get("action") == "tasks_left"]
    (draining,) = [e for e in events if e.get("action") == "draining"]
    assert draining["lanes"] == 4  # only this session's lanes, none from the failed one
    assert "ResourceWarning" not in worker.text()
    assert "Task was destroyed but it is pending" not in worker.text()
