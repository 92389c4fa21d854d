"""The gateway's publish frames are the bytes aiormq and pamqp write for the same message
(pure framing; the broker's side is in tests/integration/test_amqp_publish.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiormq
import pytest
from aiormq.abc import ChannelFrame
from aiormq.channel import Returning
from aiormq.exceptions import ChannelInvalidStateError
from hypothesis import given
from hypothesis import strategies as st
from pamqp import commands
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from qcare_ingest.amqp_publish import ConfirmedPublisher, properties

FRAME_MAX = 131_072
MAX_BODY = FRAME_MAX - 8  # aiormq's max_content_size


class StubConnection:
    """aiormq.Connection's record of RabbitMQ's Connection.Blocked / Unblocked."""

    def __init__(self) -> None:
        self._Connection__connection_unblocked = asyncio.Event()
        self._Connection__connection_unblocked.set()


class StubChannel:
    """The attributes of aiormq.Channel that the publisher reads and writes."""

    def __init__(self, number: int = 1, max_content_size: int = MAX_BODY) -> None:
        self.connection = StubConnection()
        self.number = number
        self.max_content_size = max_content_size
        self.publisher_confirms = True
        self.on_return_raises = True
        self.is_closed = False
        self.delivery_tag = 0
        self.confirmations: dict[int, asyncio.Future[Any]] = {}
        self.message_id_delivery_tag: dict[str, int] = {}

    def create_future(self) -> asyncio.Future[Any]:
        return asyncio.get_running_loop().create_future()


class StubWriter:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)


def aiormq_bytes(
    body: bytes,
    message_id: str,
    headers: dict[str, Any],
    channel: int = 1,
    max_body: int = MAX_BODY,
) -> bytes:
    """What aiormq.Channel.basic_publish puts on the write queue for the same publish
    (its _split_body: one frame below max_body, else max_body slices; fp.read(negative),
    frame_max 0, reads it all)."""
    props = commands.Basic.Properties(
        content_type="application/json", delivery_mode=2, message_id=message_id, headers=headers
    )
    frames: list[Any] = [
        commands.Basic.Publish(exchange="qcare.ingest", routing_key="update", mandatory=True),
        ContentHeader(properties=props, body_size=len(body)),
    ]
    if body and (len(body) < max_body or max_body <= 0):
        frames.append(ContentBody(body))
    elif body:
        frames += [ContentBody(body[i : i + max_body]) for i in range(0, len(body), max_body)]
    return ChannelFrame.marshall(channel_number=channel, frames=frames).payload


def publisher(channel: StubChannel, writer: StubWriter) -> ConfirmedPublisher:
    return ConfirmedPublisher(channel, writer, "qcare.ingest", "update")  # type: ignore[arg-type]


GATEWAY_HEADERS = {
    "x-qcare-received-at": "2026-12-03T10:00:00.123456+00:00",
    "x-qcare-content-type": "application/json; charset=utf-8",
    "x-qcare-client": "clinic-\u4e2d",
    "x-qcare-warnings": '["name cut to 100 characters"]',
    "x-qcare-raw-bytes": 1234,
}


@pytest.mark.parametrize(
    "size", [0, 1, 900, MAX_BODY - 1, MAX_BODY, MAX_BODY + 1, 3 * MAX_BODY + 5]
)
async def test_frames_match_aiormq_for_every_body_size(size: int) -> None:
    channel, writer = StubChannel(number=7), StubWriter()
    body = bytes(i % 251 for i in range(size))
    publisher(channel, writer).send(body, "m-1", GATEWAY_HEADERS, "application/json")
    assert writer.written == [aiormq_bytes(body, "m-1", GATEWAY_HEADERS, channel=7)]


@pytest.mark.parametrize(
    ("max_body", "size"),
    [(4088, 4087), (4088, 4088), (4088, 10_000), (-8, 1000), (-8, 300_000)],
)
async def test_frames_match_aiormq_for_a_negotiated_frame_max(max_body: int, size: int) -> None:
    """frame_max 4096 (the smallest a broker may set) and 0 (no limit: aiormq's size is
    then negative, and it sends one frame)."""
    channel, writer = StubChannel(max_content_size=max_body), StubWriter()
    body = bytes(i % 251 for i in range(size))
    publisher(channel, writer).send(body, "m-1", GATEWAY_HEADERS, "application/json")
    assert writer.written == [aiormq_bytes(body, "m-1", GATEWAY_HEADERS, max_body=max_body)]


def test_properties_larger_than_a_frame_are_refused_before_anything_is_sent() -> None:
    channel, writer = StubChannel(max_content_size=4088), StubWriter()
    warnings = {"x-qcare-warnings": "w" * 5000}  # the broker would close the connection
    with pytest.raises(ValueError, match="do not fit in one frame"):
        publisher(channel, writer).send(b"{}", "m-1", warnings, "application/json")
    assert (channel.delivery_tag, writer.written) == (0, [])


def test_an_empty_message_id_is_refused() -> None:
    """aiormq would make one up, and a return could not be matched to its request."""
    channel, writer = StubChannel(), StubWriter()
    with pytest.raises(ValueError, match="message_id"):
        publisher(channel, writer).send(b"{}", "", {}, "application/json")


def test_a_channel_that_does_not_raise_on_returns_is_refused() -> None:
    """aiormq would then resolve a returned message's confirmation: a 200 for nothing."""
    channel = StubChannel()
    channel.on_return_raises = False
    with pytest.raises(ValueError, match="returns"):
        publisher(channel, StubWriter())


async def test_pending_names_the_unconfirmed_publish_of_a_message_id() -> None:
    channel, writer = StubChannel(), StubWriter()
    pub = publisher(channel, writer)
    assert pub.pending("a") is None
    first = pub.send(b"{}", "a", {}, "application/json")
    assert pub.pending("a") is first
    assert pub.pending("b") is None
    channel.confirmations[1] = Returning()  # what aiormq holds once the broker returned it
    assert pub.pending("a") is None
    channel.confirmations[1] = first
    first.set_result(None)
    assert pub.pending("a") is None


values = st.one_of(
    st.text(max_size=40),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.none(),
    st.lists(st.integers(min_value=0, max_value=9), max_size=3),
)


@given(
    headers=st.dictionaries(st.text(min_size=1, max_size=70), values, max_size=6),
    message_id=st.text(min_size=1, max_size=60),
)
def test_properties_match_pamqp(headers: dict[str, Any], message_id: str) -> None:
    try:
        ours: bytes | Exception = properties("application/json", message_id, headers)
    except (ValueError, TypeError) as exc:
        ours = exc
    props = commands.Basic.Properties(
        content_type="application/json", delivery_mode=2, message_id=message_id, headers=headers
    )
    try:
        theirs: bytes | Exception = props.marshal()
    except (ValueError, TypeError) as exc:
        theirs = exc
    if isinstance(theirs, Exception):
        assert isinstance(ours, Exception), (headers, message_id)
    else:
        assert ours == theirs


async def test_each_publish_takes_the_next_tag_and_is_found_by_its_message_id() -> None:
    channel, writer = StubChannel(), StubWriter()
    pub = publisher(channel, writer)
    first = pub.send(b"{}", "a", {}, "application/json")
    second = pub.send(b"{}", "b", {}, "application/json")
    assert channel.confirmations == {1: first, 2: second}
    assert channel.message_id_delivery_tag == {"a": 1, "b": 2}
    first.set_result(None)
    await asyncio.sleep(0)  # done callbacks run on the next iteration
    assert channel.message_id_delivery_tag == {"b": 2}


async def test_a_message_that_cannot_be_framed_takes_no_tag_and_writes_nothing() -> None:
    channel, writer = StubChannel(), StubWriter()
    pub = publisher(channel, writer)
    with pytest.raises(UnicodeEncodeError):
        pub.send(b"{}", "a", {"x-qcare-client": "\udc80"}, "application/json")
    with pytest.raises(TypeError, match="Unknown type"):
        pub.send(b"{}", "a", {"x": object()}, "application/json")
    assert (channel.delivery_tag, channel.confirmations, writer.written) == (0, {}, [])


async def test_a_closed_channel_refuses_before_writing() -> None:
    channel, writer = StubChannel(), StubWriter()
    channel.is_closed = True
    with pytest.raises(ChannelInvalidStateError):
        publisher(channel, writer).send(b"{}", "a", {}, "application/json")
    assert writer.written == []


async def test_blocked_follows_the_brokers_connection_blocked() -> None:
    channel, writer = StubChannel(), StubWriter()
    pub = publisher(channel, writer)
    assert not pub.blocked
    channel.connection._Connection__connection_unblocked.clear()  # Connection.Blocked read
    assert pub.blocked
    channel.connection._Connection__connection_unblocked.set()  # Connection.Unblocked
    assert not pub.blocked


async def test_aiormq_keeps_connection_blocked_where_the_publisher_reads_it() -> None:
    """The real aiormq (pinned 7.2.x), not the stub: an upgrade that moved the record
    fails here, not as a gateway that cannot connect."""
    conn = aiormq.Connection("amqp://guest:guest@127.0.0.1:1/")
    assert isinstance(conn._Connection__connection_unblocked, asyncio.Event)  # type: ignore[attr-defined]


def test_a_connection_without_the_blocked_record_is_refused() -> None:
    channel = StubChannel()
    del channel.connection._Connection__connection_unblocked  # an aiormq that moved it
    with pytest.raises(RuntimeError, match=r"Connection\.Blocked"):
        publisher(channel, StubWriter())
