from __future__ import annotations

import asyncio
import logging

import pytest

from gateway.accepted_log import MAX_PENDING, AcceptedLog
from tests.support.procs import wait_for


def _queued(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "action", None) == "queued"]


async def _lines(caplog: pytest.LogCaptureFixture, n: int) -> list[logging.LogRecord]:
    async def written() -> bool:
        return len(_queued(caplog)) >= n

    await wait_for(written, 5, interval=0.01, what=f"{n} queued lines")
    return _queued(caplog)


async def test_one_line_lists_every_update_of_the_moment(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.accepted_log")
    accepted = AcceptedLog()
    accepted.add("m-1", "ACC-1", "qcare", 1.234, 2.345)
    accepted.add("m-2", None, None, 0.5, 0.75)
    assert _queued(caplog) == []  # not a record per request
    lines = await _lines(caplog, 1)
    assert len(lines) == 1
    assert lines[0].__dict__["count"] == 2
    assert lines[0].__dict__["updates"] == [
        {"msg_id": "m-1", "accession": "ACC-1", "client": "qcare", "publish_ms": 1.23,
         "duration_ms": 2.35},
        {"msg_id": "m-2", "accession": None, "client": None, "publish_ms": 0.5,
         "duration_ms": 0.75},
    ]  # fmt: skip
    accepted.add("m-3", "ACC-3", None, 1, 1)
    assert [r.__dict__["count"] for r in await _lines(caplog, 2)] == [2, 1]


async def test_a_full_batch_is_written_at_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.accepted_log")
    accepted = AcceptedLog()
    for i in range(MAX_PENDING + 1):
        accepted.add(f"m-{i}", None, None, 1, 1)
    assert [r.__dict__["count"] for r in _queued(caplog)] == [MAX_PENDING]
    assert [r.__dict__["count"] for r in await _lines(caplog, 2)] == [MAX_PENDING, 1]


async def test_nothing_is_collected_below_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.accepted_log")
    accepted = AcceptedLog()
    accepted.add("m-1", "ACC-1", None, 1, 1)
    accepted.flush()
    await asyncio.sleep(0)
    assert _queued(caplog) == []


async def test_flush_writes_what_is_pending_at_shutdown(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.accepted_log")
    accepted = AcceptedLog()
    accepted.add("m-1", "ACC-1", None, 1, 1)
    accepted.flush()
    assert [r.__dict__["count"] for r in _queued(caplog)] == [1]
    accepted.add("m-2", "ACC-2", None, 1, 1)  # the timer starts again
    assert [r.__dict__["count"] for r in await _lines(caplog, 2)] == [1, 1]
