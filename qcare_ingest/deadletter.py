"""Headers a dead-lettered message carries, so ops can see why without the database."""

from __future__ import annotations

from datetime import datetime
from typing import Any

H_REASON = "x-qcare-dead-reason"
H_ERROR_CLASS = "x-qcare-error-class"
H_ERROR = "x-qcare-error"
H_ATTEMPTS = "x-qcare-attempts"
H_FIRST_FAILURE = "x-qcare-first-failure"
H_LAST_FAILURE = "x-qcare-last-failure"
H_WORKER = "x-qcare-worker"
H_REPLAYED = "x-qcare-replayed"


def dead_letter_headers(
    original: dict[str, Any],
    *,
    reason: str,
    error: BaseException,
    attempts: int,
    worker: str,
    now: datetime,
) -> dict[str, Any]:
    headers = {k: v for k, v in original.items() if not k.startswith("x-death")}
    stamp = now.isoformat(timespec="milliseconds")
    headers.update(
        {
            H_REASON: reason,
            H_ERROR_CLASS: type(error).__name__,
            H_ERROR: str(error)[:500],
            H_ATTEMPTS: attempts,
            H_FIRST_FAILURE: original.get(H_FIRST_FAILURE, stamp),
            H_LAST_FAILURE: stamp,
            H_WORKER: worker,
        }
    )
    return headers
