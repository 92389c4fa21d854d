"""What becomes of a delivery, decided in one place: a pure function (SPEC §4).

    decide(error, attempt, policy) -> Ack | Retry | Delay | DeadLetter | Wait

    kind            example                           while tries remain   then
    (no error)                                        Ack
    data            undecodable, conflict, SQLSTATE   DeadLetter(reason)   (never retried)
                    22 / 23 / P0
    infrastructure  database or broker unreachable    Wait(backoff)        (never parked; the
                                                                           tries are not used)
    busy            deadlock, serialization failure,  Retry(backoff)       Delay(step) for each
                    lock timeout, statement cancelled                      delay step, then
                                                                           DeadLetter(retries_exhausted)
    bug             anything else                     Retry(backoff)       DeadLetter(bug)

A try is one run of the message's transaction in this process; `Attempt.tries` counts them,
the failed one included. `Attempt.round` is how many delay-queue rounds the message has
already been through (its `x-qcare-attempt` header). The numbers are the policy's
(`retry.RetryPolicy`, built from Settings only).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, overload

import aiormq.exceptions
import asyncpg

from .errors import (
    DataRefusedError,
    InfrastructureError,
    PermanentError,
    PublishError,
    QcareError,
    TransientError,
)

if TYPE_CHECKING:
    from .retry import RetryPolicy


class Kind(StrEnum):
    DATA = "data"
    BUSY = "busy"
    INFRASTRUCTURE = "infrastructure"
    BUG = "bug"


# SQLSTATEs: serialization failure, deadlock, lock not available, statement cancelled (timeout)
_BUSY_STATES = frozenset({"40001", "40P01", "55P03", "57014"})
# classes: data exception, integrity constraint violation, raised by a trigger or function
_DATA_CLASSES = ("22", "23", "P0")
# classes: connection exception, insufficient resources, operator intervention (shutdown)
_AWAY_CLASSES = ("08", "53", "57")
_AWAY_TYPES = (
    OSError,  # ConnectionError, TimeoutError, aiormq's AMQPConnectionError, unreachable hosts
    asyncpg.InterfaceError,  # "connection is closed" and the like
    aiormq.exceptions.ChannelInvalidStateError,  # the channel went away under us
    aiormq.exceptions.ChannelClosed,
    InfrastructureError,
    PublishError,
)


def classify(error: BaseException) -> Kind:
    if isinstance(error, PermanentError):
        return Kind.DATA
    if isinstance(error, TransientError):
        return Kind.BUSY
    if isinstance(error, asyncpg.PostgresError):
        state = str(getattr(error, "sqlstate", "") or "")
        if state in _BUSY_STATES:
            return Kind.BUSY
        if state.startswith(_DATA_CLASSES):
            return Kind.DATA
        if state.startswith(_AWAY_CLASSES):
            return Kind.INFRASTRUCTURE
        return Kind.BUG  # e.g. 42703 undefined column: our SQL is wrong
    if isinstance(error, _AWAY_TYPES):
        return Kind.INFRASTRUCTURE
    return Kind.BUG


def reason_of(error: BaseException) -> str:
    """The dead-letter reason of a data error (`undecodable`, `conflict`, `data_refused`)."""
    if isinstance(error, PermanentError):
        return error.reason
    return DataRefusedError.reason  # the database refused it (SQLSTATE 22, 23, P0)


def describe(error: BaseException) -> str:
    """A one-line description safe for logs, headers and `GET /messages`: our own messages
    (written not to carry personal data), else the class and SQLSTATE, never a value."""
    if isinstance(error, QcareError):
        return str(error)
    if isinstance(error, asyncpg.PostgresError):
        return f"{type(error).__name__} (SQLSTATE {getattr(error, 'sqlstate', '?')})"
    return type(error).__name__


@dataclass(frozen=True)
class Attempt:
    tries: int = 1  # tries in this process so far, the failed one included
    round: int = 0  # delay-queue rounds behind the message
    waits: int = 0  # waits for the infrastructure so far


@dataclass(frozen=True)
class Ack:
    """Done: acknowledge the delivery."""


@dataclass(frozen=True)
class Retry:
    """Try again in this process after `after_s` plus up to `jitter_s` seconds."""

    after_s: float
    jitter_s: float


@dataclass(frozen=True)
class Delay:
    """Send it round delay queue `step` (`seconds` long), then it comes back."""

    step: int
    seconds: int


@dataclass(frozen=True)
class DeadLetter:
    """Park it in the dead-letter queue with `reason`."""

    reason: str


@dataclass(frozen=True)
class Wait:
    """The database or broker is away: wait `after_s` seconds and try again."""

    after_s: float


Decision = Ack | Retry | Delay | DeadLetter | Wait
FinalDecision = Delay | DeadLetter | Wait  # what a failed try ends in when no retry is left


def backoff(first: float, most: float, n: int) -> float:
    """first, 2 x first, 4 x first, ... capped at most (n = 0, 1, 2, ...)."""
    return float(min(most, first * 2 ** min(max(n, 0), 30)))


@overload
def decide(error: None, attempt: Attempt, policy: RetryPolicy) -> Ack: ...
@overload
def decide(
    error: BaseException, attempt: Attempt, policy: RetryPolicy
) -> Retry | FinalDecision: ...
def decide(error: BaseException | None, attempt: Attempt, policy: RetryPolicy) -> Decision:
    """What to do after a try that ended with `error` (None: it succeeded)."""
    if error is None:
        return Ack()
    kind = classify(error)
    if kind is Kind.DATA:
        return DeadLetter(reason_of(error))
    if kind is Kind.INFRASTRUCTURE:
        return Wait(backoff(policy.wait_initial, policy.wait_maximum, attempt.waits))
    if attempt.tries < policy.attempts:
        return Retry(backoff(policy.initial, policy.maximum, attempt.tries - 1), policy.jitter)
    if kind is Kind.BUG:
        return DeadLetter("bug")
    if attempt.round < len(policy.delays):
        return Delay(attempt.round, policy.delays[attempt.round])
    return DeadLetter("retries_exhausted")
