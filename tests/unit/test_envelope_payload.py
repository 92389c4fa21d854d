"""The AMQP body since the journal (issue 15): canonical JSON, then the request's bytes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from qcare_ingest.dto import QCareDto
from qcare_ingest.envelope import H_RAW_BYTES, Envelope, split_payload
from qcare_ingest.errors import DecodeError

RAW = b"<QCareDto><msg_id>m-1</msg_id><accessionNo>A1</accessionNo></QCareDto>"


def _env(raw: bytes | None) -> Envelope:
    dto = QCareDto(msg_id="m-1", accessionNo="A1")
    return Envelope("m-1", datetime(2026, 1, 2, tzinfo=UTC), dto.encode(), dto, "text/xml",
                    raw=raw, client="clinic-7")  # fmt: skip


def test_round_trip_keeps_the_request_bytes_and_the_digest() -> None:
    env = _env(RAW)
    back = Envelope.decode(env.payload(), "m-1", env.headers())
    assert (back.raw, back.body, back.client, back.content_type) == (
        RAW, env.body, "clinic-7", "text/xml"
    )  # fmt: skip
    assert back.digest == _env(None).digest  # duplicates compare the canonical JSON only


def test_a_message_without_the_header_is_canonical_json_alone() -> None:
    env = _env(None)
    assert H_RAW_BYTES not in env.headers()
    assert env.payload() == env.body
    assert Envelope.decode(env.payload(), "m-1", env.headers()).raw is None


@pytest.mark.parametrize("size", [-1, 10_000, "12", True, 1.5])
def test_a_bad_split_header_is_a_decode_error(size: Any) -> None:
    env = _env(RAW)
    headers = {**env.headers(), H_RAW_BYTES: size}
    with pytest.raises(DecodeError, match=H_RAW_BYTES):
        split_payload(env.payload(), headers)
