"""The acks of one channel: every ack, hand-back and park of its deliveries goes here.

One `multiple` ack of delivery N acks every delivery up to N still unacked on the
channel. So it is safe only if every earlier delivery is already settled (acked,
parked or handed back); this object tracks what is unsettled and sends the multiple
ack only then, and otherwise acks one by one. Parking (delay or dead-letter queue) is
publish-confirm-then-ack: a crash in between duplicates, never loses.
"""

from __future__ import annotations

from typing import Any

from aio_pika.abc import AbstractExchange, AbstractIncomingMessage

from .broker import republish
from .topology import DEAD_KEY, delay_queue


def _tag(message: AbstractIncomingMessage) -> int:
    return message.delivery_tag or 0


class Settlement:
    def __init__(self, dlx: AbstractExchange, default_exchange: AbstractExchange) -> None:
        self.dlx = dlx
        self.default_exchange = default_exchange
        self._unsettled: set[int] = set()

    def received(self, message: AbstractIncomingMessage) -> None:
        """Every delivery of the channel, as it arrives."""
        self._unsettled.add(_tag(message))

    @property
    def unsettled(self) -> int:
        return len(self._unsettled)

    async def ack(self, messages: list[AbstractIncomingMessage]) -> None:
        """Ack these: with one multiple ack when nothing unsettled lies before the last."""
        if not messages:
            return
        tags = {_tag(m) for m in messages}
        last = max(messages, key=_tag)
        earlier = {t for t in self._unsettled if t < _tag(last)} - tags
        if len(messages) > 1 and not earlier:
            await last.ack(multiple=True)
        else:
            for message in messages:
                await message.ack()
        self._unsettled -= tags

    async def hand_back(self, messages: list[AbstractIncomingMessage]) -> None:
        """Back to the queue, for this or another worker (a return counts toward the
        quorum queue's delivery limit)."""
        for message in messages:
            await message.nack(requeue=True)
            self._unsettled.discard(_tag(message))

    async def delay(
        self, message: AbstractIncomingMessage, seconds: int, headers: dict[str, Any]
    ) -> None:
        await republish(self.default_exchange, delay_queue(seconds), message, headers)
        await self.ack([message])

    async def dead_letter(self, message: AbstractIncomingMessage, headers: dict[str, Any]) -> None:
        await republish(self.dlx, DEAD_KEY, message, headers)
        await self.ack([message])
