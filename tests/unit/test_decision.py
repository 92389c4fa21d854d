"""decide(error, attempt, policy): every kind of error, at every attempt, under many policies.

Pure: no broker, no database. Also the loop that follows the decisions (RetryPolicy.call)
with zero backoff, and the per-channel rule for a multiple ack (Settlement) with fakes.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import aiormq.exceptions
import asyncpg
import pytest

from qcare_ingest.config import Settings
from qcare_ingest.decision import (
    Ack,
    Attempt,
    DeadLetter,
    Delay,
    Kind,
    Retry,
    Wait,
    classify,
    decide,
    describe,
)
from qcare_ingest.errors import (
    ConflictError,
    DataRefusedError,
    DecodeError,
    GaveUp,
    InfrastructureError,
    PublishError,
    TransientError,
)
from qcare_ingest.retry import RetryPolicy
from qcare_ingest.settlement import Settlement

PERSONAL = "CHAN TAI MAN A123456(3)"


def pg(cls: type[asyncpg.PostgresError]) -> asyncpg.PostgresError:
    return cls(f"value {PERSONAL} refused")


# (error, kind, dead-letter reason when it is data)
ERRORS: list[tuple[BaseException, Kind, str | None]] = [
    (DecodeError(), Kind.DATA, "undecodable"),
    (ConflictError(), Kind.DATA, "conflict"),
    (DataRefusedError(), Kind.DATA, "data_refused"),
    (pg(asyncpg.InvalidTextRepresentationError), Kind.DATA, "data_refused"),  # 22P02
    (pg(asyncpg.NumericValueOutOfRangeError), Kind.DATA, "data_refused"),  # 22003
    (pg(asyncpg.StringDataRightTruncationError), Kind.DATA, "data_refused"),  # 22001
    (pg(asyncpg.UniqueViolationError), Kind.DATA, "data_refused"),  # 23505
    (pg(asyncpg.ForeignKeyViolationError), Kind.DATA, "data_refused"),  # 23503
    (pg(asyncpg.NotNullViolationError), Kind.DATA, "data_refused"),  # 23502
    (pg(asyncpg.RaiseError), Kind.DATA, "data_refused"),  # P0001
    (pg(asyncpg.SerializationError), Kind.BUSY, None),  # 40001
    (pg(asyncpg.DeadlockDetectedError), Kind.BUSY, None),  # 40P01
    (pg(asyncpg.LockNotAvailableError), Kind.BUSY, None),  # 55P03
    (pg(asyncpg.QueryCanceledError), Kind.BUSY, None),  # 57014 statement_timeout
    (TransientError(), Kind.BUSY, None),
    (pg(asyncpg.CannotConnectNowError), Kind.INFRASTRUCTURE, None),  # 57P03
    (pg(asyncpg.AdminShutdownError), Kind.INFRASTRUCTURE, None),  # 57P01
    (pg(asyncpg.TooManyConnectionsError), Kind.INFRASTRUCTURE, None),  # 53300
    (pg(asyncpg.ConnectionDoesNotExistError), Kind.INFRASTRUCTURE, None),  # 08003
    (pg(asyncpg.ConnectionFailureError), Kind.INFRASTRUCTURE, None),  # 08006
    (asyncpg.InterfaceError("connection is closed"), Kind.INFRASTRUCTURE, None),
    (ConnectionRefusedError(111, "refused"), Kind.INFRASTRUCTURE, None),
    (ConnectionResetError(), Kind.INFRASTRUCTURE, None),
    (OSError(113, "No route to host"), Kind.INFRASTRUCTURE, None),
    (TimeoutError(), Kind.INFRASTRUCTURE, None),
    (aiormq.exceptions.ConnectionClosed(320, "CONNECTION_FORCED"), Kind.INFRASTRUCTURE, None),
    (aiormq.exceptions.ChannelInvalidStateError("closed"), Kind.INFRASTRUCTURE, None),
    (aiormq.exceptions.ChannelClosed(), Kind.INFRASTRUCTURE, None),
    (InfrastructureError(), Kind.INFRASTRUCTURE, None),
    (PublishError(), Kind.INFRASTRUCTURE, None),
    (RuntimeError(PERSONAL), Kind.BUG, None),
    (KeyError(PERSONAL), Kind.BUG, None),
    (TypeError("unsupported operand"), Kind.BUG, None),
    (ValueError(PERSONAL), Kind.BUG, None),
    (AttributeError("'NoneType' object has no attribute 'x'"), Kind.BUG, None),
    (ZeroDivisionError(), Kind.BUG, None),
    (OverflowError("date value out of range"), Kind.BUG, None),
    (AssertionError(), Kind.BUG, None),
    (pg(asyncpg.UndefinedColumnError), Kind.BUG, None),  # 42703: our SQL is wrong
    (pg(asyncpg.ProgramLimitExceededError), Kind.BUG, None),  # 54000
]

POLICIES = [
    RetryPolicy(),
    RetryPolicy(attempts=1, delays=()),
    RetryPolicy(attempts=1, delays=(5,)),
    RetryPolicy(attempts=2, initial=0.5, maximum=0.75, jitter=0.0, delays=(1, 1)),
    RetryPolicy(attempts=6, initial=0.01, maximum=10.0, jitter=1.0, delays=(10, 60, 600, 3600)),
    RetryPolicy(wait_initial=1.0, wait_maximum=1.0),
    RetryPolicy(wait_initial=0.1, wait_maximum=60.0),
]


def grid(policy: RetryPolicy) -> list[Attempt]:
    """Every attempt worth asking about: tries and rounds past the policy's ends too."""
    return [
        Attempt(tries, rnd, waits)
        for tries in range(1, policy.attempts + 3)
        for rnd in range(len(policy.delays) + 3)
        for waits in (0, 1, 2, 5, 30, 1000)
    ]


@pytest.mark.parametrize(("error", "kind", "reason"), ERRORS, ids=lambda v: repr(v)[:40])
def test_each_error_has_its_kind(error: BaseException, kind: Kind, reason: str | None) -> None:
    assert classify(error) is kind


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize(("error", "kind", "reason"), ERRORS, ids=lambda v: repr(v)[:40])
def test_every_error_at_every_attempt(
    error: BaseException, kind: Kind, reason: str | None, policy: RetryPolicy
) -> None:
    for attempt in grid(policy):
        decision = decide(error, attempt, policy)
        tries_left = attempt.tries < policy.attempts
        if kind is Kind.DATA:  # never retried, whatever the attempt
            assert decision == DeadLetter(str(reason))
        elif kind is Kind.INFRASTRUCTURE:  # never parked, tries and rounds do not matter
            assert isinstance(decision, Wait)
            assert policy.wait_initial <= decision.after_s <= policy.wait_maximum
        elif tries_left:  # busy or bug: in-process tries first
            assert isinstance(decision, Retry)
            assert policy.initial <= decision.after_s or decision.after_s == policy.maximum
            assert decision.after_s <= policy.maximum
            assert decision.jitter_s == policy.jitter
        elif kind is Kind.BUG:  # no delay ladder, whatever round it is in
            assert decision == DeadLetter("bug")
        elif attempt.round < len(policy.delays):
            assert decision == Delay(attempt.round, policy.delays[attempt.round])
        else:
            assert decision == DeadLetter("retries_exhausted")


@pytest.mark.parametrize("policy", POLICIES)
def test_success_is_acked_at_any_attempt(policy: RetryPolicy) -> None:
    assert {decide(None, attempt, policy) for attempt in grid(policy)} == {Ack()}


def life(error: BaseException, policy: RetryPolicy) -> list[Any]:
    """The decisions a message gets that fails with `error` every time, as the worker
    asks: tries in process until no Retry, then the next delay-queue round."""
    decisions: list[Any] = []
    for rnd in itertools.count():
        for tries in itertools.count(1):
            decision = decide(error, Attempt(tries, rnd), policy)
            decisions.append(decision)
            if not isinstance(decision, Retry):
                break
        if not isinstance(decision, Delay):
            return decisions
    raise AssertionError("unreachable")


@pytest.mark.parametrize("policy", POLICIES)
def test_the_life_of_a_message_that_always_fails(policy: RetryPolicy) -> None:
    retries = [
        Retry(min(policy.maximum, policy.initial * 2**i), policy.jitter)
        for i in range(policy.attempts - 1)
    ]
    busy = pg(asyncpg.DeadlockDetectedError)
    assert life(busy, policy) == [
        *itertools.chain.from_iterable(
            [*retries, Delay(step, seconds)] for step, seconds in enumerate(policy.delays)
        ),
        *retries,
        DeadLetter("retries_exhausted"),
    ]
    assert life(RuntimeError(), policy) == [*retries, DeadLetter("bug")]
    assert life(DecodeError(), policy) == [DeadLetter("undecodable")]


@pytest.mark.parametrize("policy", POLICIES)
def test_infrastructure_waits_double_up_to_the_cap(policy: RetryPolicy) -> None:
    waits = [decide(OSError(), Attempt(waits=n), policy) for n in range(40)]
    seconds = [w.after_s for w in waits if isinstance(w, Wait)]
    assert len(seconds) == 40
    assert seconds[0] == min(policy.wait_initial, policy.wait_maximum)
    for before, after in itertools.pairwise(seconds):
        assert after == min(policy.wait_maximum, before * 2)
    assert seconds[-1] == policy.wait_maximum


def test_the_default_policy_as_the_readme_tells_it() -> None:
    p = RetryPolicy.from_settings(Settings.from_env({}))
    deadlock = pg(asyncpg.DeadlockDetectedError)
    rows = [
        (None, Attempt(1), Ack()),
        (deadlock, Attempt(1), Retry(0.05, 0.1)),
        (deadlock, Attempt(2), Retry(0.1, 0.1)),
        (deadlock, Attempt(3), Retry(0.2, 0.1)),
        (deadlock, Attempt(4, 0), Delay(0, 10)),
        (deadlock, Attempt(4, 1), Delay(1, 60)),
        (deadlock, Attempt(4, 2), Delay(2, 600)),
        (deadlock, Attempt(4, 3), DeadLetter("retries_exhausted")),
        (RuntimeError(), Attempt(3), Retry(0.2, 0.1)),
        (RuntimeError(), Attempt(4, 0), DeadLetter("bug")),
        (pg(asyncpg.RaiseError), Attempt(1), DeadLetter("data_refused")),
        (ConflictError(), Attempt(1), DeadLetter("conflict")),
        (DecodeError(), Attempt(1), DeadLetter("undecodable")),
        (ConnectionRefusedError(), Attempt(1, 0, 0), Wait(0.2)),
        (ConnectionRefusedError(), Attempt(9, 9, 3), Wait(1.6)),
        (ConnectionRefusedError(), Attempt(1, 0, 5), Wait(5.0)),
    ]
    for error, attempt, expected in rows:
        assert decide(error, attempt, p) == expected, (error, attempt)


def test_the_policy_comes_from_settings_only() -> None:
    assert RetryPolicy() == RetryPolicy.from_settings(Settings.from_env({}))
    env = {
        "QCARE_RETRY_TRIES": "7",
        "QCARE_RETRY_BACKOFF": "0.5",
        "QCARE_RETRY_BACKOFF_MAX": "3",
        "QCARE_RETRY_JITTER": "0",
        "QCARE_RETRY_DELAYS": "1,2",
        "QCARE_DB_WAIT": "0.3",
        "QCARE_DB_WAIT_MAX": "9",
    }
    assert RetryPolicy.from_settings(Settings.from_env(env)) == RetryPolicy(
        attempts=7,
        initial=0.5,
        maximum=3.0,
        jitter=0.0,
        delays=(1, 2),
        wait_initial=0.3,
        wait_maximum=9.0,
    )


@pytest.mark.parametrize(("error", "kind", "reason"), ERRORS, ids=lambda v: repr(v)[:40])
def test_descriptions_never_quote_a_value(
    error: BaseException, kind: Kind, reason: str | None
) -> None:
    text = describe(error)
    assert type(error).__name__ in text or text == str(error)
    assert "CHAN" not in text
    assert "A123456" not in text


# -- the loop that follows the decisions ---------------------------------------------------

FAST = RetryPolicy(attempts=3, initial=0.0, maximum=0.0, jitter=0.0, wait_initial=0.001)


class Failing:
    """Raises the given errors in turn, then returns "done"; counts the calls."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


async def test_a_bug_is_tried_in_process_then_dead_lettered() -> None:
    fn = Failing(*[RuntimeError("boom")] * 10)
    retried: list[Exception] = []
    with pytest.raises(GaveUp) as gave_up:
        await FAST.call(fn, delay_round=0, on_retry=retried.append)
    assert gave_up.value.decision == DeadLetter("bug")
    assert isinstance(gave_up.value.error, RuntimeError)
    assert gave_up.value.__cause__ is gave_up.value.error  # the traceback goes with it
    assert fn.calls == 3
    assert len(retried) == 2


@pytest.mark.parametrize(
    ("delay_round", "decision"), [(0, Delay(0, 10)), (2, Delay(2, 600)), (3, None)]
)
async def test_a_busy_database_is_tried_then_delayed(delay_round: int, decision: Any) -> None:
    fn = Failing(*[pg(asyncpg.SerializationError)] * 10)
    with pytest.raises(GaveUp) as gave_up:
        await FAST.call(fn, delay_round=delay_round)
    assert gave_up.value.decision == (decision or DeadLetter("retries_exhausted"))
    assert fn.calls == 3


async def test_data_is_not_tried_again() -> None:
    fn = Failing(pg(asyncpg.RaiseError))
    with pytest.raises(GaveUp) as gave_up:
        await FAST.call(fn)
    assert gave_up.value.decision == DeadLetter("data_refused")
    assert fn.calls == 1


async def test_waiting_for_the_database_uses_no_tries() -> None:
    fn = Failing(*[ConnectionRefusedError()] * 5, pg(asyncpg.DeadlockDetectedError))
    waited: list[float] = []
    assert await FAST.call(fn, on_wait=lambda _e, s: waited.append(s)) == "done"
    assert fn.calls == 7
    assert waited == [0.001, 0.002, 0.004, 0.008, 0.016]


async def test_while_stopping_a_wait_gives_up_to_hand_the_message_back() -> None:
    fn = Failing(ConnectionRefusedError())
    with pytest.raises(GaveUp) as gave_up:
        await FAST.call(fn, stopping=lambda: True)
    assert gave_up.value.decision == Wait(0.001)
    assert fn.calls == 1


# -- one channel's acks --------------------------------------------------------------------


@dataclass
class FakeDelivery:
    delivery_tag: int
    acks: list[tuple[int, bool]]
    body: bytes = b"{}"
    message_id: str | None = None
    content_type: str | None = None
    headers: dict[str, Any] = field(default_factory=dict)

    async def ack(self, multiple: bool = False) -> None:
        self.acks.append((self.delivery_tag, multiple))

    async def nack(self, requeue: bool = True) -> None:
        self.acks.append((-self.delivery_tag, False))


class FakeExchange:
    def __init__(self) -> None:
        self.published: list[str] = []

    async def publish(self, message: Any, routing_key: str) -> None:
        self.published.append(routing_key)


def channel(n: int) -> tuple[Settlement, list[Any], list[tuple[int, bool]], FakeExchange]:
    acks: list[tuple[int, bool]] = []
    dlx = FakeExchange()
    settlement = Settlement(dlx, FakeExchange())  # type: ignore[arg-type]
    deliveries: list[Any] = [FakeDelivery(tag, acks) for tag in range(1, n + 1)]
    for delivery in deliveries:
        settlement.received(delivery)
    return settlement, deliveries, acks, dlx


async def test_one_multiple_ack_when_everything_before_is_settled() -> None:
    settlement, d, acks, _ = channel(8)
    await settlement.ack(d[0:3])
    await settlement.ack(d[3:5])
    assert acks == [(3, True), (5, True)]
    assert settlement.unsettled == 3


async def test_parked_deliveries_are_settled_before_the_multiple_ack() -> None:
    settlement, d, acks, dlx = channel(5)
    await settlement.dead_letter(d[2], {})
    await settlement.ack([d[0], d[1], d[3], d[4]])
    assert dlx.published == ["dead"]
    assert acks == [(3, False), (5, True)]
    assert settlement.unsettled == 0


async def test_no_multiple_ack_over_an_unsettled_delivery() -> None:
    settlement, d, acks, _ = channel(5)
    await settlement.ack([d[0], d[1], d[3], d[4]])  # d[2] is still being worked on
    assert acks == [(1, False), (2, False), (4, False), (5, False)]
    await settlement.hand_back([d[2]])
    assert acks[-1] == (-3, False)
    assert settlement.unsettled == 0


async def test_acks_of_one_channel_do_not_wait_for_another() -> None:
    first, d1, acks1, _ = channel(4)
    await first.ack(d1[:1])
    second, _, _, _ = channel(3)  # tags start at 1 on every channel; these stay unsettled
    await first.ack(d1[1:])
    assert acks1 == [(1, False), (4, True)]
    assert second.unsettled == 3


async def test_call_takes_a_lambda_that_returns_a_coroutine() -> None:
    """What callers pass (`lambda: apply_batch(conn, envs)`): awaited, not returned."""

    async def work() -> str:
        return "done"

    assert await FAST.call(lambda: work()) == "done"
