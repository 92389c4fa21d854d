"""Issue 6: authentication, privacy, logs, metrics, health, status/config, compose."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.conftest import Procs, RunEnv
from tests.support.http import wait_processed
from tests.support.payloads import UPDATE, order
from tests.support.procs import ROOT, Gateway, Proc, Worker, wait_for
from tests.support.queues import cli

KEYS = "qcare:k-qcare-123-Zp8Qw2Lx5Rv9,ops:k-ops-456-Hn4Tb7Jc1Md6Ks:post+status+read+admin"


async def status_of(http: aiohttp.ClientSession, url: str, **kw: object) -> int:
    async with http.request(kw.pop("method", "GET"), url, **kw) as resp:  # type: ignore[arg-type]
        await resp.read()
        return resp.status


async def test_api_keys(procs: Procs, http: aiohttp.ClientSession, db: asyncpg.Pool) -> None:
    gw = procs.gateway(QCARE_API_KEYS=KEYS)
    worker = procs.worker()
    await gw.ready(http)
    await worker.consuming()
    m = f"auth-{uuid.uuid4().hex[:8]}"
    body = order(m, "ACC-" + m)
    ctype = {"Content-Type": "application/json"}
    post = gw.url + UPDATE
    assert await status_of(http, post, method="POST", data=body, headers=ctype) == 401
    assert (
        await status_of(
            http, post, method="POST", data=body, headers={**ctype, "X-Api-Key": "wrong"}
        )
        == 401
    )
    for path in (f"/api/v1/qcare/messages/{m}", f"/api/v1/qcare/orders/ACC-{m}"):
        assert await status_of(http, gw.url + path) == 401
    assert await status_of(http, gw.url + "/healthz") == 200
    bearer = {**ctype, "Authorization": "Bearer k-qcare-123-Zp8Qw2Lx5Rv9"}
    assert await status_of(http, post, method="POST", data=body, headers=bearer) == 200
    auth = {"X-Api-Key": "k-ops-456-Hn4Tb7Jc1Md6Ks"}

    async def applied() -> bool:
        async with http.get(f"{gw.url}/api/v1/qcare/messages/{m}", headers=auth) as resp:
            return resp.status == 200

    await wait_for(applied, 30, what="applied, read with the ops key")
    assert await status_of(http, f"{gw.url}/api/v1/qcare/orders/ACC-{m}", headers=auth) == 200
    assert await status_of(http, f"{gw.url}/api/v1/qcare/orders/NONE-{m}", headers=auth) == 404
    # name:secret means post+status: the posting key cannot read the personal data it posted
    qcare = {"X-Api-Key": "k-qcare-123-Zp8Qw2Lx5Rv9"}
    assert await status_of(http, f"{gw.url}/api/v1/qcare/messages/{m}", headers=qcare) == 200
    async with http.get(f"{gw.url}/api/v1/qcare/orders/ACC-{m}", headers=qcare) as resp:
        assert resp.status == 403
        assert "read" in (await resp.json())["Message"]

    async def queued_line() -> list[dict[str, Any]]:
        return [
            u
            for e in gw.events()
            if e.get("action") == "queued"
            for u in e["updates"]
            if u["msg_id"] == m
        ]

    queued = await wait_for(queued_line, 10, what="the accepted update's log line")
    assert queued[0]["client"] == "qcare"  # logs say which client posted
    assert "k-qcare-123-Zp8Qw2Lx5Rv9" not in gw.text()
    # every read of an order is in the audit trail: who, what, from where; the refused
    # read and the reads without personal data (GET /messages) are not
    rows = await db.fetch(
        "SELECT who, action, subject, client, outcome FROM audit_log WHERE subject LIKE $1",
        f"%{m}",
    )
    assert sorted(tuple(r) for r in rows) == [
        ("ops", "order_read", f"ACC-{m}", "127.0.0.1", "shown"),
        ("ops", "order_read", f"NONE-{m}", "127.0.0.1", "not_found"),
    ]
    with pytest.raises(asyncpg.InsufficientPrivilegeError):  # append-only, even for the owner
        await db.execute("UPDATE audit_log SET who = 'x' WHERE subject = $1", f"ACC-{m}")


SCOPED = (
    "poster:k-poster-1-Qz7Rb2Wm9Tx4aa:post,watcher:k-watcher-2-Lp5Nd8Hf3Vc6bb:status,"
    "reader:k-reader-3-Gk1Sj6Yq0Ua2cc:read"
)


async def test_each_route_needs_its_scope(procs: Procs, http: aiohttp.ClientSession) -> None:
    """401 without a valid key whatever the route; 403 in Web API's shape with a key that
    lacks the route's scope; the scope's own key gets through."""
    gw = procs.gateway(QCARE_API_KEYS=SCOPED)
    await gw.ready(http)
    m = f"scope-{uuid.uuid4().hex[:8]}"
    routes = {  # route -> (method, the scope it needs)
        UPDATE: ("POST", "post"),
        f"/api/v1/qcare/messages/{m}": ("GET", "status"),
        f"/api/v1/qcare/orders/ACC-{m}": ("GET", "read"),
    }
    keys = {
        "post": "k-poster-1-Qz7Rb2Wm9Tx4aa",
        "status": "k-watcher-2-Lp5Nd8Hf3Vc6bb",
        "read": "k-reader-3-Gk1Sj6Yq0Ua2cc",
    }
    body = order(m, "ACC-" + m)
    for path, (method, needed) in routes.items():
        kw: dict[str, Any] = {"method": method}
        if method == "POST":
            kw.update(data=body, headers={"Content-Type": "application/json"})
        base = kw.get("headers", {})
        assert await status_of(http, gw.url + path, **kw) == 401
        for scope, secret in keys.items():
            async with http.request(
                method, gw.url + path, data=kw.get("data"), headers={**base, "X-Api-Key": secret}
            ) as resp:
                answer = await resp.json()
                if scope == needed:
                    assert resp.status in (200, 404), (path, scope, answer)  # 404: not applied
                else:
                    assert resp.status == 403, (path, scope, answer)
                    assert answer == {
                        "Message": f"This key does not have the '{needed}' scope this "
                        "request needs."
                    }
    refusals = [e for e in gw.events() if e.get("action") == "scope_refused"]
    assert {(e["client"], e["scope"]) for e in refusals} == {
        (name, needed)
        for name, scope in (("poster", "post"), ("watcher", "status"), ("reader", "read"))
        for _, needed in routes.values()
        if scope != needed
    }


async def test_allowed_networks(procs: Procs, http: aiohttp.ClientSession) -> None:
    gw = procs.gateway(QCARE_ALLOWED_NETWORKS="10.9.0.0/16")
    await gw.ready(http)
    assert await status_of(http, gw.url + "/api/v1/qcare/orders/x") == 403
    assert await status_of(http, gw.url + "/healthz") == 200


def test_gateway_refuses_public_address_without_keys(test_env: RunEnv) -> None:
    proc = Proc("gateway", test_env.env(QCARE_HTTP_HOST="0.0.0.0", QCARE_HTTP_PORT="0"))
    try:
        assert proc.popen.wait(30) == 2
        assert "QCARE_API_KEYS" in proc.text()
    finally:
        proc.close()


def test_bad_setting_stops_the_process_naming_the_variable(test_env: RunEnv) -> None:
    proc = Proc("worker", test_env.env(QCARE_WORKER_CONCURRENCY="lots"))
    try:
        assert proc.popen.wait(30) == 2
        assert "QCARE_WORKER_CONCURRENCY" in proc.text()
    finally:
        proc.close()


PERSONAL = {
    "hkid": "K987654(2)",
    "passno": "E99887766",
    "name": "WONG SECRET NAME",
    "dob": "1961-07-23",
    "address": "88 HIDDEN ROAD",
    "chitno": "CHIT-77123",
}
LEAKS = [
    "K987654",
    "K9876542",
    "E99887766",
    "WONG SECRET NAME",
    "SECRET NAME",
    "1961-07-23",
    "HIDDEN ROAD",
    "CHIT-77123",
]


async def test_personal_data_never_in_logs_errors_or_dlq(
    procs: Procs, test_env: RunEnv, http: aiohttp.ClientSession, db: asyncpg.Pool
) -> None:
    gw = procs.gateway()
    worker = procs.worker()
    await gw.ready(http)
    await worker.consuming()
    tag = uuid.uuid4().hex[:8]
    bodies = [  # accepted, accepted with a wrong check digit, and refused in several ways
        (
            "application/json",
            json.dumps({"msg_id": f"p1-{tag}", "accessionNo": f"ACC-p-{tag}", **PERSONAL}),
        ),
        (
            "application/json",
            json.dumps({"msg_id": f"p2-{tag}", "hkid": "K987654(9)", "name": PERSONAL["name"]}),
        ),
        (
            "application/json",
            json.dumps(
                {
                    **PERSONAL,
                    "services": [
                        {"noOfImages": PERSONAL["name"]},
                        {"warningTime": PERSONAL["hkid"]},
                    ],
                }
            ),
        ),
        ("application/json", json.dumps({**PERSONAL, "studyDate": PERSONAL["hkid"]})),
        (
            "application/xml",
            f"<QCareDto><name>{PERSONAL['name']}</name><services><ServicesInfo>"
            f"<NoOfImages>{PERSONAL['passno']}</NoOfImages></ServicesInfo>"
            "</services></QCareDto>",
        ),
        (
            "application/x-www-form-urlencoded",
            f"hkid={PERSONAL['hkid']}&name=x&studyDate={PERSONAL['passno']}",
        ),
        ("application/json", json.dumps(PERSONAL)),  # no msg_id
    ]
    texts = []
    for ctype, body in bodies:
        async with http.post(
            gw.url + UPDATE, data=body.encode(), headers={"Content-Type": ctype}
        ) as resp:
            texts.append(await resp.text())
    await wait_processed(http, gw, f"p1-{tag}")
    view = await wait_processed(http, gw, f"p2-{tag}")
    texts.append(json.dumps(view))
    # a conflict and a dead letter, then `dlq show`
    async with http.post(
        gw.url + UPDATE,
        headers={"Content-Type": "application/json"},
        data=json.dumps(
            {"msg_id": f"p1-{tag}", "accessionNo": f"ACC-p-{tag}", **PERSONAL, "location": "X"}
        ),
    ) as resp:
        assert resp.status == 200

    async def conflict_seen() -> bool:
        return bool(
            await db.fetchval("SELECT count(*) FROM inbox_conflicts WHERE msg_id = $1", f"p1-{tag}")
        )

    await wait_for(conflict_seen, 30, what="conflict recorded")
    shown = cli(test_env.env(), "dlq", "show", f"p1-{tag}")
    assert shown.returncode == 0
    texts += [shown.stdout, shown.stderr, cli(test_env.env(), "dlq", "list").stdout]
    logs = gw.text() + worker.text()
    for line in logs.splitlines():
        json.loads(line)  # one JSON event per line
    for leak in LEAKS:
        assert leak not in logs, f"{leak!r} in logs"
        for text in texts:
            assert leak not in text, f"{leak!r} in {text[:300]}"
    async with http.get(gw.url + "/metrics") as resp:
        exposed = await resp.text()
    assert not any(leak in exposed for leak in LEAKS)
    # the authenticated read is the one place it comes back whole, and it is audited
    async with http.get(f"{gw.url}/api/v1/qcare/orders/ACC-p-{tag}") as resp:
        whole = await resp.json()
    assert {k: whole[k] for k in PERSONAL} == PERSONAL
    # as is `dlq show --reveal`, audited under --as (the OS user is recorded with it)
    revealed = cli(test_env.env(), "dlq", "show", f"p1-{tag}", "--reveal", "--as", f"dr-{tag}")
    assert revealed.returncode == 0, revealed.stderr
    assert {k: json.loads(revealed.stdout)["dto"][k] for k in PERSONAL} == PERSONAL
    rows = await db.fetch(
        "SELECT who, action, subject, client, outcome FROM audit_log WHERE subject = ANY($1)",
        [f"ACC-p-{tag}", f"p1-{tag}"],
    )
    assert sorted((r["who"], r["action"], r["subject"], r["outcome"]) for r in rows) == [
        ("anonymous", "order_read", f"ACC-p-{tag}", "shown"),  # no keys: loopback dev mode
        (f"dr-{tag}", "dlq_reveal", f"p1-{tag}", "shown"),
    ]
    clients = {r["action"]: r["client"] for r in rows}
    assert clients["order_read"] == "127.0.0.1"
    assert clients["dlq_reveal"].startswith("cli:")
    listed = cli(test_env.env(), "audit", "--since", "1h", "--key", f"dr-{tag}")
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[1:5] for line in listed.stdout.splitlines()[1:]] == [
        [f"dr-{tag}", "dlq_reveal", "shown", f"p1-{tag}"]
    ]
    later = cli(test_env.env(), "audit", "--since", "2999-01-01", "--key", f"dr-{tag}")
    assert later.stdout.splitlines()[1:] == []
    # the audit trail and its log lines name the read, never the data
    logs = gw.text() + revealed.stderr
    assert any(e.get("action") == "audit" and e["subject"] == f"ACC-p-{tag}" for e in gw.events())
    for leak in LEAKS:
        assert leak not in logs, f"{leak!r} in logs"
        assert leak not in listed.stdout, f"{leak!r} in the audit listing"


def _port(worker: Worker) -> int:
    for event in worker.events():
        if event.get("action") == "probes":
            return int(event["url"].rsplit(":", 1)[1])
    raise AssertionError("no probes event")


GATEWAY_METRICS = [
    "qcare_http_requests_total",
    "qcare_http_request_duration_seconds",
    "qcare_publish_duration_seconds",
]
WORKER_METRICS = [
    "qcare_messages_total",
    "qcare_message_processing_seconds",
    "qcare_end_to_end_lag_seconds",
    "qcare_retries_total",
    "qcare_dead_lettered_total",
]


async def test_metrics_health_and_status(
    stack: tuple[Gateway, list[Worker]], test_env: RunEnv, http: aiohttp.ClientSession
) -> None:
    gw, workers = stack
    m = f"metrics-{uuid.uuid4().hex[:8]}"
    async with http.post(
        gw.url + UPDATE, data=order(m, "ACC-" + m), headers={"Content-Type": "application/json"}
    ) as resp:
        assert resp.status == 200
    await wait_processed(http, gw, m)
    async with http.get(gw.url + "/metrics") as resp:
        text = await resp.text()
    for name in GATEWAY_METRICS:
        assert name in text
    assert 'route="/api/v1/qcare/updateXRayOrder",status="200"' in text
    async with http.get(gw.url + "/readyz") as resp:
        assert resp.status == 200
    worker_url = f"http://127.0.0.1:{_port(workers[0])}"
    async with http.get(worker_url + "/metrics") as resp:
        text = await resp.text()
    for name in WORKER_METRICS:
        assert name in text
    for path in ("/healthz", "/readyz"):
        async with http.get(worker_url + path) as resp:
            assert resp.status == 200
    status = cli(test_env.env(), "status")
    assert status.returncode == 0, status.stderr
    assert "qcare.ingest.dlq" in status.stdout
    assert "oldest waiting message" in status.stdout
    config = cli(test_env.env(QCARE_API_KEYS=KEYS), "config")
    assert "QCARE_API_KEYS=ops:****:post+status+read+admin,qcare:****:post+status" in config.stdout
    assert "k-ops-456-Hn4Tb7Jc1Md6Ks" not in config.stdout
    assert "guest:****@" in config.stdout


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_compose_file_is_valid(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text((ROOT / ".env.example").read_text())
    command = ["docker-compose", "--env-file", str(env), "-f", str(ROOT / "compose.yaml")]
    result = subprocess.run([*command, "config", "-q"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
