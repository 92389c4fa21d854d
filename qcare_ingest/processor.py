"""Deliveries of one channel, from bytes to settlement (SPEC §3, §4).

A batch of consecutive deliveries is applied in one transaction, its tries run by the
retry policy (`retry.RetryPolicy.call`); if it fails as a whole, its messages are done
one by one, so only a bad message is parked. What becomes of each message is decided
by `decision.decide()` alone and carried out here:

    Ack         applied / stale / duplicate: acked after the commit (Settlement)
    Delay       republished to the delay queue (confirmed), then acked
    DeadLetter  republished to the dead-letter queue (confirmed), then acked, then
                recorded in the inbox (best effort); a bug's traceback is logged
    Wait        (only while stopping: the database is away) handed back to the queue
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import asyncpg
from aio_pika.abc import AbstractIncomingMessage

from . import metrics
from .deadletter import H_ERROR, dead_letter_headers
from .decision import (
    Attempt,
    DeadLetter,
    Delay,
    FinalDecision,
    Kind,
    Retry,
    Wait,
    classify,
    decide,
    describe,
)
from .envelope import H_ATTEMPT, Envelope, now_utc
from .errors import ConflictError, DecodeError, GaveUp
from .retry import RetryPolicy
from .settlement import Settlement
from .store import Outcome, Result, apply_batch, record_failure

log = logging.getLogger(__name__)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Counters:
    def __init__(self) -> None:
        self.applied = 0
        self.stale = 0
        self.duplicate = 0
        self.delayed = 0
        self.dead_lettered = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


Decoded = tuple[AbstractIncomingMessage, dict[str, Any], Envelope]


class Processor:
    def __init__(
        self,
        pool: asyncpg.Pool,
        settlement: Settlement,
        policy: RetryPolicy,
        *,
        stopping: Callable[[], bool] = lambda: False,
        counters: Counters | None = None,
        lane: int = 0,
    ) -> None:
        self.pool = pool
        self.lane = lane
        self.settlement = settlement
        self.policy = policy
        self.stopping = stopping
        self.counters = counters or Counters()
        self.worker = worker_id()

    def _decode(
        self, message: AbstractIncomingMessage
    ) -> tuple[dict[str, Any], Envelope | DecodeError]:
        headers: dict[str, Any] = dict(message.headers or {})
        try:
            return headers, Envelope.decode(message.body, message.message_id, headers)
        except DecodeError as exc:
            return headers, exc

    async def handle(self, message: AbstractIncomingMessage) -> None:
        """One message on its own (also the fallback when its batch failed as a whole)."""
        started = time.perf_counter()
        headers, env = self._decode(message)
        if isinstance(env, DecodeError):
            await self._carry_out(message, headers, None, env, decide(env, Attempt(), self.policy))
            return
        try:
            (result,) = await self._apply([env], delay_round=env.attempt)
        except GaveUp as exc:
            gave_up = exc
        else:
            await self._settle([(message, headers, env)], [result], started)
            return
        await self._carry_out(message, headers, env, gave_up.error, gave_up.decision)

    async def handle_batch(self, messages: list[AbstractIncomingMessage]) -> None:
        """Many messages in one transaction; if it fails as a whole, one by one.

        `messages` are consecutive deliveries of the Settlement's channel."""
        if len(messages) == 1:
            await self.handle(messages[0])
            return
        started = time.perf_counter()
        decoded: list[Decoded] = []
        for message in messages:
            headers, env = self._decode(message)
            if isinstance(env, DecodeError):
                decision = decide(env, Attempt(), self.policy)
                await self._carry_out(message, headers, None, env, decision)
            else:
                decoded.append((message, headers, env))
        if not decoded:
            return
        try:
            results = await self._apply([env for _, _, env in decoded])
        except GaveUp as exc:
            gave_up = exc  # handled below, so that later errors do not chain to it
        else:
            await self._settle(decoded, results, started)
            return
        if isinstance(gave_up.decision, Wait):  # stopping while the database is away
            await self.settlement.hand_back([m for m, _, _ in decoded])
            return
        log.warning(
            "batch failed, applying its messages one by one",
            extra={
                "action": "batch_split",
                "size": len(decoded),
                "kind": classify(gave_up.error).value,
                "error": describe(gave_up.error),
            },
        )
        for message, _, _ in decoded:
            await self.handle(message)

    async def _apply(self, envs: list[Envelope], delay_round: int = 0) -> list[Result]:
        async def once() -> list[Result]:
            async with self.pool.acquire() as conn:
                return await apply_batch(conn, envs)

        def on_wait(error: Exception, after_s: float) -> None:
            metrics.DB_WAITS.inc()
            log.warning(
                "database unavailable, waiting",
                extra={
                    "action": "db_wait",
                    "messages": len(envs),
                    "error": describe(error),
                    "retry_in_s": round(after_s, 2),
                },
            )

        return await self.policy.call(
            once,
            delay_round=delay_round,
            stopping=self.stopping,
            on_retry=lambda _error: metrics.RETRIES.inc(),
            on_wait=on_wait,
        )

    async def _settle(self, decoded: list[Decoded], results: list[Result], started: float) -> None:
        """After the commit: park conflicts, ack the rest (one multiple ack)."""
        done: list[tuple[AbstractIncomingMessage, Envelope, Outcome]] = []
        for (message, headers, env), result in zip(decoded, results, strict=True):
            if isinstance(result, ConflictError):
                decision = decide(result, Attempt(round=env.attempt), self.policy)
                await self._carry_out(message, headers, env, result, decision)
            else:
                done.append((message, env, result))
        if not done:
            return
        await self.settlement.ack([m for m, _, _ in done])
        elapsed = time.perf_counter() - started
        now = now_utc()
        counts: dict[str, int] = {}
        for _, env, result in done:
            counts[result.status] = counts.get(result.status, 0) + 1
            metrics.PROCESSING.observe(elapsed)
            if result.status != "duplicate":
                metrics.LAG.observe(max(0.0, (now - env.received_at).total_seconds()))
            if result.stale_for or result.warnings:
                log.debug(
                    "message details",
                    extra={"action": "details", "msg_id": env.msg_id,
                           "stale_for": result.stale_for, "warnings": len(result.warnings)},
                )  # fmt: skip
        for status, n in counts.items():
            setattr(self.counters, status, getattr(self.counters, status) + n)
            metrics.MESSAGES.labels(status).inc(n)
        log.info(
            "batch processed",
            extra={
                "action": "processed",
                "worker": self.worker,
                "lane": self.lane,
                "messages": len(done),
                "outcomes": counts,
                "results": [[env.msg_id, result.status] for _, env, result in done],
                "duration_ms": round(elapsed * 1000, 2),
            },
        )

    async def _carry_out(
        self,
        message: AbstractIncomingMessage,
        headers: dict[str, Any],
        env: Envelope | None,
        error: Exception,
        decision: Retry | FinalDecision,
    ) -> None:
        match decision:
            case DeadLetter(reason=reason):
                await self._dead_letter(message, headers, env, error, reason)
            case Delay() if env is not None:
                await self._delay(message, headers, env, error, decision)
            case _:  # Wait: stopping while the database is away (Retry is not left to us)
                await self.settlement.hand_back([message])

    async def _delay(
        self,
        message: AbstractIncomingMessage,
        headers: dict[str, Any],
        env: Envelope,
        error: Exception,
        decision: Delay,
    ) -> None:
        headers[H_ATTEMPT] = decision.step + 1
        await self.settlement.delay(message, decision.seconds, headers)
        self.counters.delayed += 1
        metrics.MESSAGES.labels("delayed").inc()
        log.warning(
            "transient failure, delayed",
            extra={
                "action": "delayed",
                "msg_id": env.msg_id,
                "delay_s": decision.seconds,
                "attempt": decision.step + 1,
                "error": describe(error),
            },
        )

    async def _dead_letter(
        self,
        message: AbstractIncomingMessage,
        headers: dict[str, Any],
        env: Envelope | None,
        error: Exception,
        reason: str,
    ) -> None:
        dl_headers = dead_letter_headers(
            headers,
            reason=reason,
            error=error,
            attempts=env.attempt + 1 if env else 1,
            worker=self.worker,
            now=now_utc(),
        )
        dl_headers[H_ERROR] = describe(error)[:500]  # the class, never a value it quoted
        # Confirmed in the dead-letter queue first; only then is the original acked.
        await self.settlement.dead_letter(message, dl_headers)
        self.counters.dead_lettered += 1
        metrics.MESSAGES.labels("dead_lettered").inc()
        metrics.DEAD_LETTERED.labels(reason).inc()
        kind = classify(error)
        log.error(
            "message dead-lettered",
            extra={
                "action": "dead_lettered",
                "msg_id": env.msg_id if env else None,
                "reason": reason,
                "error_class": type(error).__name__,
            },
            # a bug's traceback, to find it by (the body is never logged)
            exc_info=error if kind is Kind.BUG else None,
        )
        if env is not None:
            if reason == "conflict":
                status = "conflict"
            elif kind is Kind.DATA:
                status = "rejected"  # the message cannot succeed as it is
            else:
                status = "dead_lettered"  # a bug, or tries used up: parked for ops, not refused
            await self._record_failure(env, status, f"{reason}: {describe(error)}")

    async def _record_failure(self, env: Envelope, status: str, error: str) -> None:
        try:
            async with asyncio.timeout(5):
                async with self.pool.acquire() as conn:
                    await record_failure(conn, env, status, error)
        except Exception as exc:  # best effort: the dead-letter queue already has it
            log.warning(
                "could not record the failure in the inbox",
                extra={
                    "action": "record_failure_failed",
                    "msg_id": env.msg_id,
                    "error": describe(exc),
                },
            )
