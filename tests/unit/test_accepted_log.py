from __future__ import annotations

import asyncio
import logging

import pytest

from gateway.accepted_log import AcceptedLog


def _queued(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "action", None) == "queued"]


async def test_one_line_per_loop_iteration_listing_every_update(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.accepted_log")
    accepted = AcceptedLog()
    accepted.add("m-1", "ACC-1", "qcare", 1.234, 2.345)
    accepted.add("m-2", None, None, 0.5, 0.75)
    assert _queued(caplog) == []  # written when the iteration ends, not per request
    await asyncio.sleep(0)
    lines = _queued(caplog)
    assert len(lines) == 1
    assert lines[0].__dict__["count"] == 2
    assert lines[0].__dict__["updates"] == [
        {"msg_id": "m-1", "accession": "ACC-1", "client": "qcare", "publish_ms": 1.23,
         "duration_ms": 2.35},
        {"msg_id": "m-2", "accession": None, "client": None, "publish_ms": 0.5,
         "duration_ms": 0.75},
    ]  # fmt: skip
    accepted.add("m-3", "ACC-3", None, 1, 1)
    await asyncio.sleep(0)
    assert [r.__dict__["count"] for r in _queued(caplog)] == [2, 1]


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
    await asyncio.sleep(0)  # the scheduled flush finds nothing left
    assert len(_queued(caplog)) == 1
