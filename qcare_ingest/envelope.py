"""The message on the queue: canonical DTO body plus the gateway's headers (SPEC §2).

Since the journal (issue 15) the AMQP body is the canonical DTO JSON followed by the request's
own bytes, and `x-qcare-raw-bytes` says how many bytes at the end are the request's. The
canonical JSON is what the worker applies and what the duplicate digest covers; the request
bytes are what the journal keeps, so that the console can show what the clinic sent and
`qcare-ingest rebuild` can bind it again. A message without the header (queued before the
journal) is canonical JSON alone. Read a body through `split_payload`, never `json.loads`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from .dto import QCareDto, body_digest
from .errors import DecodeError
from .textsafe import safe_text

H_RECEIVED_AT = "x-qcare-received-at"  # gateway receipt, ISO 8601 µs, UTC: the version
H_CONTENT_TYPE = "x-qcare-content-type"  # the request's original Content-Type
H_CLIENT = "x-qcare-client"  # the API key name that posted it
H_ATTEMPT = "x-qcare-attempt"  # delay-queue round (0 on first delivery)
H_WARNINGS = "x-qcare-warnings"  # what the gateway changed to make the update storable
H_RAW_BYTES = "x-qcare-raw-bytes"  # how many bytes at the body's end are the request's own

MAX_WARNINGS = 32


def now_utc() -> datetime:
    return datetime.now(UTC)


def version_of(received_at: datetime, msg_id: str) -> str:
    """A total order on updates: receipt µs, then msg_id; compares as a string."""
    micros = int(received_at.timestamp()) * 1_000_000 + received_at.microsecond
    return f"{micros:020d}|{msg_id}"


@dataclass(frozen=True)
class Envelope:
    msg_id: str
    received_at: datetime
    body: bytes
    dto: QCareDto
    content_type: str | None = None
    attempt: int = 0
    warnings: tuple[str, ...] = ()  # the gateway's, stored with the message's own
    raw: bytes | None = None  # the request body as received (None: queued before the journal)
    client: str | None = None  # the API key's name that posted it

    # Derived once: the batch merge compares versions per field and digests per duplicate.
    @cached_property
    def version(self) -> str:
        return version_of(self.received_at, self.msg_id)

    @cached_property
    def digest(self) -> bytes:
        return body_digest(self.body)

    @cached_property
    def _legacy_digest(self) -> bytes | None:
        """The digest this post had before NoOfImages became `int?` (issue 13): an absent
        NoOfImages was bound as 0 then and is null now, so the same post re-sent across the
        upgrade would otherwise look like different content under one msg_id."""
        lines = self.dto.services or []
        if not any(line is not None and line.noOfImages is None for line in lines):
            return None
        data = self.dto.model_dump()
        for line in data["services"]:
            if line is not None and line["noOfImages"] is None:
                line["noOfImages"] = 0
        return body_digest(type(self.dto).model_validate(data).encode())

    def same_content(self, digest: bytes) -> bool:
        """Is a digest held for this msg_id the digest of this post (now or before the
        NoOfImages change)?"""
        legacy = self._legacy_digest
        return digest == self.digest or (legacy is not None and digest == legacy)

    def same_content_as(self, other: Envelope) -> bool:
        return self.same_content(other.digest) or other.same_content(self.digest)

    def headers(self) -> dict[str, Any]:
        headers: dict[str, Any] = {
            H_RECEIVED_AT: self.received_at.isoformat(timespec="microseconds")
        }
        if self.content_type is not None:
            # any header bytes (aiohttp keeps non-UTF-8 ones as lone surrogates): escaped
            headers[H_CONTENT_TYPE] = safe_text(self.content_type, 200)
        if self.warnings:
            headers[H_WARNINGS] = json.dumps(self.warnings[:MAX_WARNINGS])
        if self.client is not None:
            headers[H_CLIENT] = self.client
        if self.raw is not None:
            headers[H_RAW_BYTES] = len(self.raw)
        return headers

    def payload(self) -> bytes:
        """The AMQP body: canonical JSON, then the request's bytes (see the module's doc)."""
        return self.body if self.raw is None else self.body + self.raw

    @classmethod
    def decode(
        cls, payload: bytes, message_id: str | None, headers: dict[str, Any] | None
    ) -> Envelope:
        headers = headers or {}
        body, request_bytes = split_payload(payload, headers)
        dto = QCareDto.decode(body)
        msg_id = dto.msg_id
        if not msg_id or not msg_id.strip():
            raise DecodeError("message has no msg_id")
        if message_id is not None and message_id != msg_id:
            raise DecodeError("message_id property does not match the body's msg_id")
        raw = headers.get(H_RECEIVED_AT)
        if isinstance(raw, bytes):
            raw = raw.decode()
        try:
            received_at = datetime.fromisoformat(str(raw))
        except ValueError:
            raise DecodeError(f"missing or bad {H_RECEIVED_AT} header") from None
        if received_at.tzinfo is None:
            raise DecodeError(f"{H_RECEIVED_AT} header has no offset")
        attempt = headers.get(H_ATTEMPT, 0)
        ctype = headers.get(H_CONTENT_TYPE)
        client = headers.get(H_CLIENT)
        if isinstance(client, bytes):
            client = client.decode(errors="replace")
        return cls(
            msg_id=msg_id,
            received_at=received_at.astimezone(UTC),
            body=body,
            dto=dto,
            content_type=str(ctype) if ctype is not None else None,
            attempt=attempt if isinstance(attempt, int) else 0,
            warnings=_warnings(headers.get(H_WARNINGS)),
            raw=request_bytes,
            client=safe_text(str(client), 200) if client is not None else None,
        )


def split_payload(payload: bytes, headers: dict[str, Any] | None) -> tuple[bytes, bytes | None]:
    """(canonical JSON, request bytes or None) of an AMQP body; DecodeError if the raw-bytes
    header is not a count that fits the body."""
    size = (headers or {}).get(H_RAW_BYTES)
    if size is None:
        return payload, None
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= len(payload):
        raise DecodeError(f"bad {H_RAW_BYTES} header")
    cut = len(payload) - size
    return payload[:cut], payload[cut:]


def _warnings(raw: Any) -> tuple[str, ...]:
    """The gateway's warnings header: a JSON list of strings; anything else is ignored."""
    if raw is None:
        return ()
    try:
        items = json.loads(raw)
    except (ValueError, TypeError):
        return ()
    if not isinstance(items, list):
        return ()
    return tuple(str(item)[:300] for item in items[:MAX_WARNINGS])
