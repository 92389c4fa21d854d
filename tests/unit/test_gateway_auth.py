"""API keys as bytes (issue 12, finding 10): aiohttp hands header bytes over decoded as UTF-8
with surrogateescape; a key is whatever bytes were sent, compared in constant time."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import pytest
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.app import _authenticate
from qcare_ingest.config import ApiKey

KEYS = {"s3cret": ApiKey("qcare"), "clé-secrète": ApiKey("ops")}  # as config parses them


def request_with(header: str, raw: bytes) -> web.Request:
    """A request whose header holds `raw` as aiohttp's parser hands it over (the header is all
    _authenticate reads; make_mocked_request cannot carry such values)."""
    value = raw.decode("utf-8", "surrogateescape")
    return cast(
        web.Request, SimpleNamespace(headers=CIMultiDictProxy(CIMultiDict({header: value})))
    )


@pytest.mark.parametrize(
    ("header", "raw", "expected"),
    [
        ("X-Api-Key", b"s3cret", "qcare"),
        ("Authorization", b"Bearer s3cret", "qcare"),
        ("Authorization", b"bearer  s3cret ", "qcare"),
        ("X-Api-Key", "clé-secrète".encode(), "ops"),  # a UTF-8 key: its bytes as sent
        ("Authorization", b"Bearer " + "clé-secrète".encode(), "ops"),
        ("X-Api-Key", "clé-secrète".encode("latin-1"), None),  # same text, other bytes
        ("X-Api-Key", b"\xff\xfe", None),
        ("Authorization", b"Bearer \xff\xfe", None),
        ("X-Api-Key", b"s3cret\xff", None),
        ("X-Api-Key", b"s3cre", None),
        ("X-Api-Key", b"", None),
        ("Authorization", b"Basic s3cret", None),
    ],
)
def test_a_key_is_its_bytes(header: str, raw: bytes, expected: str | None) -> None:
    key = _authenticate(KEYS, request_with(header, raw))
    assert (key.name if key else None) == expected
