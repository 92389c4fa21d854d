"""Issue 3 at the HTTP level: every manifest vector, and hostile bodies, through the gateway."""

from __future__ import annotations

import io
import json
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings

from qcare_ingest.binding import bind, select_format
from tests.conftest import Procs, RunEnv
from tests.support import exceptions
from tests.support.payloads import UPDATE, VECTORS, order
from tests.support.procs import Gateway
from tests.support.reference import Outcome, from_echo, ours
from tests.support.strategies import bodies, content_types

MANIFEST: list[dict[str, Any]] = json.loads((VECTORS / "manifest.json").read_text())


@pytest.fixture(scope="module")
async def gateway(test_env: RunEnv) -> AsyncIterator[Gateway]:
    procs = Procs(test_env)
    gw = procs.gateway()
    async with aiohttp.ClientSession() as session:
        await gw.ready(session)
    yield gw
    procs.close()


def expected_outcome(case: dict[str, Any], body: bytes) -> Outcome:
    """What the reference answered (the manifest), unless tests/support/exceptions.py
    documents our divergence for this body: then what our binder gives."""
    theirs = from_echo(case["reference"]["status"], case["reference"])
    mine = ours(body, case["content_type"])
    if theirs != mine and exceptions.match(body, case["content_type"], theirs, mine):
        return mine
    return theirs


def expected_status(case: dict[str, Any], body: bytes) -> int:
    expect = expected_outcome(case, body)
    if expect.status is not None:
        return expect.status
    if expect.error_keys or expect.model is None:
        return 400
    result = bind(*select_format(case["content_type"]), body)
    assert result.model is not None
    usable = bool(result.model.msg_id) and result.model.has_target()
    return 200 if usable else 400


def model_state(status_body: str, is_xml: bool) -> tuple[str, list[str]]:
    if is_xml:
        root = ET.fromstring(status_body)
        assert root.tag == "Error"
        state = root.find("ModelState")
        keys = [child.tag for child in state] if state is not None else []
        return root.findtext("Message") or "", keys
    data = json.loads(status_body)
    return data["Message"], list(data.get("ModelState", {}))


@pytest.mark.parametrize("case", MANIFEST, ids=[c["id"] for c in MANIFEST])
async def test_vector_over_http(
    gateway: Gateway, http: aiohttp.ClientSession, case: dict[str, Any]
) -> None:
    body = (VECTORS / case["file"]).read_bytes()
    headers = {} if case["content_type"] is None else {"Content-Type": case["content_type"]}
    async with http.post(
        gateway.url + UPDATE, data=body, headers=headers, skip_auto_headers=["Content-Type"]
    ) as resp:
        status, text = resp.status, await resp.text()
    want = expected_status(case, body)
    assert status == want, text
    if status == 200:
        assert json.loads(text)["status"] == "queued"
    elif status == 415:
        assert "not supported" in json.loads(text)["Message"]
    else:
        is_xml = "xml" in (case["content_type"] or "")
        message, keys = model_state(text, is_xml)
        assert message == "The request is invalid."
        error_keys = expected_outcome(case, body).error_keys
        expected = [("dto." + k if k else "dto") for k in error_keys]
        if expected:
            xml_keys = [k.replace("[", "_x005B_").replace("]", "_x005D_") for k in expected]
            assert sorted(keys) == sorted(xml_keys if is_xml else expected)
        else:
            assert keys  # says what is missing


def _deep_json(depth: int) -> bytes:
    return b'{"msg_id":"x","name":' + b"[" * depth + b"]" * depth + b"}"


def _deep_xml(depth: int) -> bytes:
    return b"<QCareDto><name>" + b"<a>" * depth + b"</a>" * depth + b"</name></QCareDto>"


def _v(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


XML, JSON, FORM = "application/xml", "application/json", "application/x-www-form-urlencoded"
HOSTILE: list[tuple[str, str, bytes, int]] = [
    ("billion_laughs", XML, _v("xml_hostile_billion_laughs.xml"), 400),
    ("xxe_file", XML, _v("xml_hostile_xxe_file.xml"), 400),
    ("xxe_param", "text/xml", _v("xml_hostile_xxe_param.xml"), 400),
    ("doctype", XML, _v("xml_hostile_doctype_only.xml"), 400),
    ("xml_depth_300", "application/xml", _deep_xml(300), 400),
    ("xml_depth_100k", "application/xml", _deep_xml(100_000), 400),
    ("json_depth_300", "application/json", _deep_json(300), 400),
    ("json_depth_1M", "application/json", _deep_json(1_000_000), 400),
    ("ref_cycle", JSON, _v("json_07_hostile_ref_cycle_to_root.json"), 400),
    ("form_keys", FORM, "&".join(f"k{i}=v" for i in range(5000)).encode(), 400),
    ("whitespace", "application/json", b" \r\n\t" * 1000, 400),
    ("bad_utf8", "application/json", b'{"msg_id":"\xff\xfe\xfd"}', 400),
    ("bad_utf8_xml", "application/xml", b"<QCareDto><name>\xc3\x28</name></QCareDto>", 400),
    ("too_big", "application/json", b'{"name":"' + b"x" * (4 * 1024 * 1024) + b'"}', 413),
]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize(("name", "ctype", "body", "status"), HOSTILE, ids=[h[0] for h in HOSTILE])
async def test_hostile_body_is_refused_quickly(
    gateway: Gateway, http: aiohttp.ClientSession, name: str, ctype: str, body: bytes, status: int
) -> None:
    started = time.monotonic()
    async with http.post(
        gateway.url + UPDATE, data=io.BytesIO(body), headers={"Content-Type": ctype}
    ) as resp:
        assert resp.status == status, await resp.text()
        text = await resp.text()
    elapsed = time.monotonic() - started
    assert elapsed < 3, f"{name} took {elapsed:.2f}s"
    assert "lol" not in text  # nothing expanded
    assert "root:" not in text  # no file read
    ok_id = f"after-{name}-{uuid.uuid4()}"
    async with http.post(
        gateway.url + UPDATE,
        data=order(ok_id, "ACC-" + ok_id),
        headers={"Content-Type": "application/json"},
    ) as resp:
        assert resp.status == 200


async def test_hostile_bodies_keep_memory_flat(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    async def round_of_hostility() -> None:
        for _, ctype, body, _ in HOSTILE:
            async with http.post(
                gateway.url + UPDATE, data=io.BytesIO(body), headers={"Content-Type": ctype}
            ) as resp:
                await resp.read()

    await round_of_hostility()  # warm up: allocator arenas, lazy imports
    before = rss_kib(gateway.pid)
    for _ in range(5):
        await round_of_hostility()
    after = rss_kib(gateway.pid)
    assert after - before < 40 * 1024, f"RSS grew {before} -> {after} KiB"


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ctype=content_types, body=bodies)
async def test_gateway_never_answers_5xx(gateway: Gateway, ctype: str, body: bytes) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            gateway.url + UPDATE,
            data=body,
            headers={"Content-Type": ctype},
            skip_auto_headers=["Content-Type"],
        ) as resp,
    ):
        text = await resp.text()
        assert resp.status in (200, 400, 415), text
        if resp.status == 400:
            assert "The request is invalid." in text
