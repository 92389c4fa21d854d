"""Sorting failures and retrying the transient ones (SPEC §4), as data.

infrastructure down  -> wait with backoff until it is back; never dead-letter
transient            -> tenacity in-process (bounded, jittered), then delay queues
permanent            -> dead-letter queue at once
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import asyncpg
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from .errors import DataRefusedError, InfrastructureError, PermanentError, TransientError

T = TypeVar("T")

_TRANSIENT_SQLSTATES = {"40001", "40P01", "55P03", "57014"}  # serialization, deadlock, lock, cancel
_PERMANENT_CLASSES = ("22", "23", "P0")  # data exception, integrity violation, raised


def classify(exc: BaseException) -> BaseException:
    """Map a raw exception to PermanentError, TransientError or InfrastructureError."""
    if isinstance(exc, PermanentError | TransientError | InfrastructureError):
        return exc
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", "") or ""
        if state in _TRANSIENT_SQLSTATES:
            return TransientError(f"{type(exc).__name__} ({state})")
        if state.startswith(_PERMANENT_CLASSES):
            refused = DataRefusedError(f"database refused the data: {type(exc).__name__} ({state})")
            return refused
        if state.startswith(("08", "53", "57")) or isinstance(
            exc, asyncpg.CannotConnectNowError | asyncpg.TooManyConnectionsError
        ):
            return InfrastructureError(f"{type(exc).__name__} ({state})")
        return TransientError(f"{type(exc).__name__} ({state})")
    if isinstance(exc, OSError | ConnectionError | TimeoutError | asyncpg.InterfaceError):
        return InfrastructureError(type(exc).__name__)
    return TransientError(f"unexpected {type(exc).__name__}")


@dataclass(frozen=True)
class RetryPolicy:
    """In-process retries of transient errors: bounded attempts, jittered exponential wait."""

    attempts: int = 4
    initial: float = 0.05
    maximum: float = 2.0
    jitter: float = 0.1
    on_retry: Callable[[], None] = field(default=lambda: None, compare=False)

    def retrying(self) -> AsyncRetrying:
        return AsyncRetrying(
            before_sleep=lambda _state: self.on_retry(),
            stop=stop_after_attempt(self.attempts),
            # exponential plus random jitter, spelled out: tenacity 9.2 deprecated
            # wait_exponential_jitter's `initial`, and 8.x has no replacement for it
            wait=wait_exponential(multiplier=self.initial, max=self.maximum)
            + wait_random(0, self.jitter),
            retry=retry_if_exception_type(TransientError),
            reraise=True,
        )

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        async def classified() -> T:
            try:
                return await fn()
            except Exception as exc:
                mapped = classify(exc)
                if mapped is exc:
                    raise
                raise mapped from exc

        async for attempt in self.retrying():
            with attempt:
                return await classified()
        raise AssertionError("unreachable")


@dataclass(frozen=True)
class Backoff:
    """Waiting for infrastructure: unbounded in count, capped in interval."""

    initial: float = 0.2
    maximum: float = 5.0

    def delay(self, failures: int) -> float:
        return float(min(self.maximum, self.initial * (2 ** min(failures, 16))))
