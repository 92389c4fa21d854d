"""A confirmed publish written straight to the connection as bytes (issue 18).

aiormq's `basic_publish` builds four pamqp objects per message, validates and marshals them
field by field, takes the channel lock, arms a timeout and passes the frames through the
connection's write queue (ten slots, shared) to a writer task: about a quarter of the
gateway's CPU per request. The gateway publishes every message the same way (one
exchange, one routing key, mandatory, persistent, JSON, a small table of string and
integer headers), so here the Basic.Publish frame is marshalled once per channel, the
content header is packed with `struct`, and the frames go to the connection's writer in
one `write()` (the coalescing writer joins a loop iteration's writes into one send).

What stays aiormq's: the delivery tag sequence, the confirmation future (created by the
channel, so a closing channel rejects it), the Basic.Return lookup by message_id, and the
reading of acks, nacks and returns. The bytes are the ones pamqp writes: a unit test
compares them for every kind of value the gateway sends.

The channel given must publish only through this class: a delivery tag is taken and its
frames written in one step, with no await between, and another publisher on the channel
(aiormq's own, which awaits between the two) could interleave.
"""

from __future__ import annotations

import asyncio
import struct
from functools import partial
from typing import Any

import aiormq
from aiormq.channel import Returning
from aiormq.exceptions import ChannelInvalidStateError
from pamqp import commands, encode, frame

FRAME_END = b"\xce"
HEADER, BODY = 2, 3  # frame types (the method frame is marshalled by pamqp, once)
BASIC_CLASS = 60
# content-type, headers, delivery-mode, message-id (AMQP 0-9-1 Basic property flags)
FLAGS = struct.pack(">H", 1 << 15 | 1 << 13 | 1 << 12 | 1 << 7)
PERSISTENT = b"\x02"
_FRAME_HEAD = struct.Struct(">BHI")  # type, channel, payload size
_HEADER_HEAD = struct.Struct(">HHQ")  # class, weight, body size
_U32 = struct.Struct(">I")


def short_string(value: str) -> bytes:
    data = value.encode()  # UnicodeEncodeError (a ValueError) for a lone surrogate, as pamqp
    if len(data) > 255:
        raise ValueError("short string longer than 255 bytes")
    return bytes((len(data),)) + data


def field_table(table: dict[str, Any]) -> bytes:
    """pamqp's field table encoding (keys sorted), quicker for strings and integers."""
    parts = []
    for key, value in sorted(table.items()):
        name = key.encode()
        if len(name) > 128:  # pamqp cuts such a name (with a warning): its rules, whole
            return encode.field_table(table)
        parts.append(bytes((len(name),)) + name)
        if type(value) is str:
            data = value.encode()
            parts.append(b"S" + _U32.pack(len(data)) + data)
        else:  # int (by size), bool, None, lists...: pamqp's own rules
            parts.append(encode.encode_table_value(value))
    payload = b"".join(parts)
    return _U32.pack(len(payload)) + payload


def properties(content_type: str, message_id: str, headers: dict[str, Any]) -> bytes:
    """Basic properties: content type, headers, persistent delivery, message id."""
    return (
        FLAGS
        + short_string(content_type)
        + field_table(headers)
        + PERSISTENT
        + short_string(message_id)
    )


class ConfirmedPublisher:
    """Publishes on one aiormq channel (publisher confirms on) to one exchange and routing
    key, mandatory; `send` writes the frames and returns the confirmation future."""

    def __init__(
        self,
        channel: aiormq.Channel,
        writer: asyncio.StreamWriter,
        exchange: str,
        routing_key: str,
    ) -> None:
        if not channel.publisher_confirms or not channel.on_return_raises:
            # without on_return_raises aiormq resolves a returned message's future: a 200
            raise ValueError("the channel must confirm publishes and raise on returns")
        self._channel = channel
        self._writer = writer
        # RabbitMQ's Connection.Blocked (a memory or disk alarm): aiormq 7.2 keeps it in a
        # private event, which its own writer checks only once, when it starts, and its
        # publish never; this writer asks before every message (broker.Publisher)
        unblocked = getattr(channel.connection, "_Connection__connection_unblocked", None)
        if not isinstance(unblocked, asyncio.Event):
            raise RuntimeError("aiormq no longer tracks Connection.Blocked where expected")
        self._unblocked = unblocked
        number = channel.number
        self._method = frame.marshal(
            commands.Basic.Publish(exchange=exchange, routing_key=routing_key, mandatory=True),
            number,
        )
        self._number = number
        # frame_max 0 means no limit (aiormq's size is then negative): one body frame
        self._max_body = channel.max_content_size if channel.max_content_size > 0 else None

    @property
    def blocked(self) -> bool:
        """RabbitMQ said it reads nothing more from this connection for now (an alarm):
        frames written meanwhile wait in buffers, their confirmations with them."""
        return not self._unblocked.is_set()

    def send(
        self, body: bytes, message_id: str, headers: dict[str, Any], content_type: str
    ) -> asyncio.Future[Any]:
        """Write one message; the future resolves with the broker's Basic.Ack and fails
        on a nack, a return (unroutable) or the channel's close. ValueError, TypeError or
        struct.error: the message cannot be framed, and nothing was sent."""
        channel = self._channel
        if channel.is_closed:
            raise ChannelInvalidStateError(f"{channel!r} closed")
        if not message_id:  # aiormq would make one up; returns are found by it
            raise ValueError("a message needs a message_id")
        header = _HEADER_HEAD.pack(BASIC_CLASS, 0, len(body)) + properties(
            content_type, message_id, headers
        )
        size = self._max_body
        if size is not None and len(header) > size:  # the broker would close the connection
            raise ValueError("the message's properties do not fit in one frame")
        number = self._number
        parts = [self._method, _FRAME_HEAD.pack(HEADER, number, len(header)), header, FRAME_END]
        if size is None or len(body) < size:  # aiormq's split: frames of frame_max - 8 bytes
            if body:  # (none for an empty body)
                parts += (_FRAME_HEAD.pack(BODY, number, len(body)), body, FRAME_END)
        else:
            for start in range(0, len(body), size):
                chunk = body[start : start + size]
                parts += (_FRAME_HEAD.pack(BODY, number, len(chunk)), chunk, FRAME_END)
        data = b"".join(parts)
        # from here to the write, nothing awaits: the tag is the broker's count of this message
        channel.delivery_tag += 1
        tag = channel.delivery_tag
        confirmation = channel.create_future()
        channel.confirmations[tag] = confirmation
        returns = channel.message_id_delivery_tag
        returns[message_id] = tag
        confirmation.add_done_callback(partial(_forget, returns, message_id, tag))
        self._writer.write(data)
        return confirmation

    def pending(self, message_id: str) -> asyncio.Future[Any] | None:
        """The unconfirmed publish of this message_id on the channel, if there is one. A
        return names its message by message_id only (aiormq keeps one tag per id), so a
        second publish of the same id must wait for the first one's outcome: else the
        first one's return would fail the second and its ack answer the first."""
        channel = self._channel
        tag = channel.message_id_delivery_tag.get(message_id)
        confirmation = channel.confirmations.get(tag) if tag is not None else None
        if confirmation is None or isinstance(confirmation, Returning) or confirmation.done():
            return None  # (Returning: returned already, its ack on the way)
        return confirmation


def _forget(returns: dict[str, int], message_id: str, tag: int, _: object) -> None:
    if returns.get(message_id) == tag:
        del returns[message_id]
