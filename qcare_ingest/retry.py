"""The retry policy, as data from Settings, and the loop that follows it in this process.

`RetryPolicy.call(fn)` runs `fn` under tenacity and, after each failure, does what
`decision.decide()` says: Retry -> sleep the jittered backoff and try again; Wait -> sleep
the infrastructure backoff and try again (not counted as a try); anything else -> raise
GaveUp with the decision, for the caller to carry out (delay queue, dead-letter queue, or
hand back).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tenacity import AsyncRetrying, RetryCallState

from .config import Settings
from .decision import Attempt, FinalDecision, Retry, Wait, decide
from .errors import GaveUp

T = TypeVar("T")


def _default(name: str) -> Any:
    """The policy's defaults are Settings' defaults: one place for every number."""
    return Settings.model_fields[name].default


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = _default("retry_tries")  # tries in this process (busy database, bug)
    initial: float = _default("retry_backoff")  # seconds after the first try, then doubling
    maximum: float = _default("retry_backoff_max")
    jitter: float = _default("retry_jitter")  # up to this many seconds more, at random
    delays: tuple[int, ...] = _default("retry_delays")  # delay-queue steps (busy database)
    wait_initial: float = _default("db_wait")  # infrastructure away: first wait, doubling
    wait_maximum: float = _default("db_wait_max")

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            attempts=settings.retry_tries,
            initial=settings.retry_backoff,
            maximum=settings.retry_backoff_max,
            jitter=settings.retry_jitter,
            delays=settings.retry_delays,
            wait_initial=settings.db_wait,
            wait_maximum=settings.db_wait_max,
        )

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        delay_round: int = 0,
        stopping: Callable[[], bool] = lambda: False,
        on_retry: Callable[[Exception], None] = lambda _error: None,
        on_wait: Callable[[Exception, float], None] = lambda _error, _s: None,
    ) -> T:
        """fn's result, or GaveUp(error, decision). `delay_round`: the message's delay-queue
        rounds so far. While `stopping()`, a Wait gives up (the caller hands it back).

        tenacity runs the loop; `decide` alone says whether there is another try (its stop
        rule) and how long to sleep before it (its wait rule)."""
        tries, waits = 1, 0
        decision: Retry | FinalDecision | None = None

        def failed(state: RetryCallState) -> bool:
            nonlocal decision
            error = _error_of(state)
            if error is None:
                return False  # success: tenacity returns the result
            decision = decide(error, Attempt(tries, delay_round, waits), self)
            return True

        def final(state: RetryCallState) -> bool:
            return not (
                isinstance(decision, Retry) or (isinstance(decision, Wait) and not stopping())
            )

        def pause(state: RetryCallState) -> float:  # tenacity asks before it asks `final`
            if isinstance(decision, Retry):
                return decision.after_s + random.uniform(0, decision.jitter_s)
            return decision.after_s if isinstance(decision, Wait) else 0.0

        def before_sleep(state: RetryCallState) -> None:
            nonlocal tries, waits
            error = _error_of(state)
            assert error is not None
            if isinstance(decision, Retry):
                tries += 1
                on_retry(error)
            else:
                waits += 1
                on_wait(error, state.upcoming_sleep)

        def give_up(state: RetryCallState) -> T:
            error = _error_of(state)
            assert error is not None
            assert decision is not None
            assert not isinstance(decision, Retry)
            raise GaveUp(error, decision) from error  # Delay, DeadLetter, Wait while stopping

        retrying = AsyncRetrying(
            retry=failed,
            stop=final,
            wait=pause,
            before_sleep=before_sleep,
            retry_error_callback=give_up,
        )

        async def attempt() -> T:  # a coroutine function: tenacity awaits only those
            return await fn()

        result: T = await retrying(attempt)
        return result


def _error_of(state: RetryCallState) -> Exception | None:
    outcome = state.outcome
    if outcome is None or not outcome.failed:
        return None
    error = outcome.exception()
    return error if isinstance(error, Exception) else None
