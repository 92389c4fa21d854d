"""Issue 6: the OpenAPI document describes the live gateway; schemathesis finds no 5xx and
no response that breaks the document."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import Procs
from tests.support.procs import ROOT

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
    ]
)


async def test_openapi_document_served(procs: Procs, http: aiohttp.ClientSession) -> None:
    gw = procs.gateway()
    await gw.ready(http)
    async with http.get(gw.url + "/openapi.json") as resp:
        doc = await resp.json()
    assert doc["openapi"] == "3.1.0"
    post = doc["paths"]["/api/v1/qcare/updateXRayOrder"]["post"]
    content = post["requestBody"]["content"]
    assert {
        "application/json",
        "text/json",
        "text/html",
        "application/xml",
        "text/xml",
        "application/x-www-form-urlencoded",
    } <= set(content)
    assert {"200", "400", "401", "413", "415", "503"} <= set(post["responses"])
    schemas = doc["components"]["schemas"]
    assert schemas["QCareDtoXml"]["properties"]["address"]["xml"] == {"name": "Address"}
    assert schemas["ServicesInfoXml"]["properties"]["noOfImages"]["xml"] == {"name": "NoOfImages"}


@pytest.mark.skipif(
    shutil.which("schemathesis", path=str(Path(sys.executable).parent)) is None,
    reason="schemathesis not installed",
)
async def test_schemathesis_finds_nothing(
    procs: Procs, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    gw = procs.gateway()
    worker = procs.worker()
    await gw.ready(http)
    await worker.consuming()
    report = tmp_path / "junit.xml"
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        gw.url + "/openapi.json",
        "--checks",
        CHECKS,
        "--max-examples",
        "40",
        "--report",
        "junit",
        "--report-junit-path",
        str(report),
    ]
    result = await _run(command)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "passed" in result.stdout
    assert "failures" not in report.read_text().lower().replace('failures="0"', "")


async def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=600, cwd=ROOT
    )
