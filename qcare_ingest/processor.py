"""One delivery, from bytes to ack: decode, apply with retries, or park it (SPEC §3, §4).

The decision ladder (dramatiq's retries middleware, arq's Retry):
    applied / stale / duplicate      -> ack (after the commit)
    PermanentError                   -> dead-letter queue (confirmed), then ack
    TransientError, retries used up  -> next delay queue (confirmed), then ack;
                                        after the last delay, the dead-letter queue
    InfrastructureError              -> wait with backoff and try again; never park
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
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage

from . import metrics
from .broker import republish
from .deadletter import dead_letter_headers
from .envelope import H_ATTEMPT, Envelope, now_utc
from .errors import (
    ConflictError,
    DecodeError,
    InfrastructureError,
    PermanentError,
    TransientError,
)
from .retry import Backoff, RetryPolicy
from .store import Result, apply_batch, record_failure
from .topology import DEAD_KEY, DELAYS_S, delay_queue

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


class Processor:
    def __init__(
        self,
        pool: asyncpg.Pool,
        dlx: AbstractExchange,
        default_exchange: AbstractExchange,
        *,
        policy: RetryPolicy | None = None,
        backoff: Backoff | None = None,
        stopping: Callable[[], bool] = lambda: False,
        counters: Counters | None = None,
        delays: tuple[int, ...] = DELAYS_S,
    ) -> None:
        self.delays = delays
        self.pool = pool
        self.dlx = dlx
        self.default_exchange = default_exchange
        self.policy = policy or RetryPolicy(on_retry=metrics.RETRIES.inc)
        self.backoff = backoff or Backoff()
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
            await self._dead_letter(message, headers, env, attempts=1)
            return
        try:
            (result,) = await self._apply([env])
        except PermanentError as exc:
            await self._dead_letter(message, headers, exc, attempts=env.attempt + 1, env=env)
            return
        except TransientError as exc:
            await self._delay_or_dead_letter(message, headers, env, exc)
            return
        except InfrastructureError:
            await message.nack(requeue=True)  # shutting down while the database is away
            return
        await self._settle([(message, headers, env, result)], started)

    async def handle_batch(self, messages: list[AbstractIncomingMessage]) -> None:
        """Many messages in one transaction; if it fails as a whole, one by one.

        `messages` must be consecutive deliveries of one channel with every earlier
        delivery already settled: the batch is then acked with one `multiple` ack.
        """
        if len(messages) == 1:
            await self.handle(messages[0])
            return
        started = time.perf_counter()
        decoded: list[tuple[AbstractIncomingMessage, dict[str, Any], Envelope]] = []
        for message in messages:
            headers, env = self._decode(message)
            if isinstance(env, DecodeError):
                await self._dead_letter(message, headers, env, attempts=1)
            else:
                decoded.append((message, headers, env))
        if not decoded:
            return
        try:
            results = await self._apply([env for _, _, env in decoded])
        except (PermanentError, TransientError) as exc:
            log.warning(
                "batch failed, applying its messages one by one",
                extra={"action": "batch_split", "size": len(decoded), "error": str(exc)},
            )
            for message, _, _ in decoded:
                await self.handle(message)
            return
        except InfrastructureError:
            for message, _, _ in decoded:
                await message.nack(requeue=True)
            return
        settled = [(m, h, e, r) for (m, h, e), r in zip(decoded, results, strict=True)]
        await self._settle(settled, started)

    async def _settle(
        self,
        settled: list[tuple[AbstractIncomingMessage, dict[str, Any], Envelope, Result]],
        started: float,
    ) -> None:
        """After the commit: dead-letter conflicts, ack the rest with one multiple ack."""
        done = []
        for message, headers, env, result in settled:
            if isinstance(result, ConflictError):
                await self._dead_letter(message, headers, result, attempts=env.attempt + 1, env=env)
            else:
                done.append((message, env, result))
        if not done:
            return
        last = max(done, key=lambda d: d[0].delivery_tag or 0)[0]
        await last.ack(multiple=len(done) > 1)
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
                "messages": len(done),
                "outcomes": counts,
                "results": [[env.msg_id, result.status] for _, env, result in done],
                "duration_ms": round(elapsed * 1000, 2),
            },
        )

    async def _apply(self, envs: list[Envelope]) -> list[Result]:
        failures = 0
        while True:
            try:
                return await self.policy.call(lambda: self._once(envs))
            except InfrastructureError as exc:
                if self.stopping():
                    raise
                delay = self.backoff.delay(failures)
                failures += 1
                metrics.DB_WAITS.inc()
                log.warning(
                    "database unavailable, waiting",
                    extra={
                        "action": "db_wait",
                        "messages": len(envs),
                        "error": str(exc),
                        "retry_in_s": round(delay, 2),
                    },
                )
                await asyncio.sleep(delay)

    async def _once(self, envs: list[Envelope]) -> list[Result]:
        async with self.pool.acquire() as conn:
            return await apply_batch(conn, envs)

    async def _delay_or_dead_letter(
        self,
        message: AbstractIncomingMessage,
        headers: dict[str, Any],
        env: Envelope,
        exc: TransientError,
    ) -> None:
        if env.attempt >= len(self.delays):
            await self._dead_letter(
                message, headers, exc, attempts=env.attempt + 1, env=env, reason="retries_exhausted"
            )
            return
        seconds = self.delays[env.attempt]
        headers[H_ATTEMPT] = env.attempt + 1
        await republish(self.default_exchange, delay_queue(seconds), message, headers)
        await message.ack()
        self.counters.delayed += 1
        metrics.MESSAGES.labels("delayed").inc()
        log.warning(
            "transient failure, delayed",
            extra={
                "action": "delayed",
                "msg_id": env.msg_id,
                "delay_s": seconds,
                "attempt": env.attempt + 1,
                "error": str(exc),
            },
        )

    async def _dead_letter(
        self,
        message: AbstractIncomingMessage,
        headers: dict[str, Any],
        exc: Exception,
        *,
        attempts: int,
        env: Envelope | None = None,
        reason: str | None = None,
    ) -> None:
        reason = reason or str(getattr(exc, "reason", "permanent"))
        dl_headers = dead_letter_headers(
            headers,
            reason=reason,
            error=exc,
            attempts=attempts,
            worker=self.worker,
            now=now_utc(),
        )
        # Confirmed in the dead-letter queue first; only then is the original acked.
        await republish(self.dlx, DEAD_KEY, message, dl_headers)
        await message.ack()
        self.counters.dead_lettered += 1
        metrics.MESSAGES.labels("dead_lettered").inc()
        metrics.DEAD_LETTERED.labels(reason).inc()
        log.error(
            "message dead-lettered",
            extra={
                "action": "dead_lettered",
                "msg_id": env.msg_id if env else None,
                "reason": reason,
                "error_class": type(exc).__name__,
            },
        )
        if env is not None:
            status = (
                "conflict"
                if reason == "conflict"
                else ("rejected" if isinstance(exc, PermanentError) else "dead_lettered")
            )
            try:
                async with asyncio.timeout(5):
                    async with self.pool.acquire() as conn:
                        await record_failure(conn, env, status, f"{reason}: {exc}")
            except Exception as record_exc:  # best effort: the DLQ already has it
                log.warning(
                    "could not record the failure in the inbox",
                    extra={
                        "action": "record_failure_failed",
                        "msg_id": env.msg_id,
                        "error": type(record_exc).__name__,
                    },
                )
