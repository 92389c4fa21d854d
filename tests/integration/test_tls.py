"""Issue 14: the gateway over HTTPS, PostgreSQL over verified TLS, AMQP's TLS client, and
the loud dev mode, against real processes and servers with certificates the tests make."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import ssl
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from qcare_ingest.broker import connect
from qcare_ingest.db import create_pool
from qcare_ingest.tls import server_context
from tests.conftest import IN_CI, Procs, RunEnv
from tests.support.certs import Authority, Issued
from tests.support.http import wait_processed
from tests.support.payloads import UPDATE, order
from tests.support.procs import Gateway, Proc, free_port

KEY = secrets.token_urlsafe(32)


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is needed to make test certificates")
    return Authority.create(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def server_cert(authority: Authority) -> Issued:
    return authority.issue("server", "localhost", "127.0.0.1")


def trusting(authority: Authority) -> ssl.SSLContext:
    """A client that verifies the server against the test CA (and its host name)."""
    return ssl.create_default_context(cafile=str(authority.cert))


async def https_gateway(procs: Procs, cert: Issued, **env: str) -> tuple[Gateway, str]:
    gw = procs.gateway(QCARE_TLS_CERT=str(cert.cert), QCARE_TLS_KEY=str(cert.key), **env)
    return gw, f"https://localhost:{gw.port}"


async def test_gateway_serves_https_end_to_end(
    procs: Procs, authority: Authority, server_cert: Issued
) -> None:
    keys = f"qcare:{KEY}:post+status+read"  # it reads the order back
    gw, url = await https_gateway(procs, server_cert, QCARE_API_KEYS=keys)
    worker = procs.worker()
    gw.url = url
    connector = aiohttp.TCPConnector(ssl=trusting(authority))
    async with aiohttp.ClientSession(connector=connector) as https:
        await gw.ready(https)
        await worker.consuming()
        m = f"tls-{uuid.uuid4().hex[:8]}"
        headers = {"Content-Type": "application/json", "X-Api-Key": KEY}
        async with https.post(url + UPDATE, data=order(m, "ACC-" + m), headers=headers) as resp:
            assert resp.status == 200, await resp.text()
        https.headers.update({"X-Api-Key": KEY})
        assert (await wait_processed(https, gw, m))["status"] == "applied"
        async with https.get(f"{url}/api/v1/qcare/orders/ACC-{m}") as resp:
            assert resp.status == 200
    _, writer = await asyncio.open_connection(
        "localhost", gw.port, ssl=trusting(authority), server_hostname="localhost"
    )
    assert writer.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
    writer.close()
    await writer.wait_closed()
    listening = [e for e in gw.events() if e.get("action") == "listening"]
    assert listening[0]["url"].startswith("https://")
    assert listening[0]["tls"] == "on"

    # the same port refuses plain HTTP, and a client that does not trust the CA
    async with aiohttp.ClientSession() as plain:
        with pytest.raises(aiohttp.ClientError):
            async with plain.get(f"http://127.0.0.1:{gw.port}/healthz") as resp:
                await resp.read()
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            async with plain.get(f"{url}/healthz") as resp:
                await resp.read()


def test_gateway_refuses_plain_http_off_loopback(test_env: RunEnv) -> None:
    proc = Proc(
        "gateway",
        test_env.env(QCARE_HTTP_HOST="0.0.0.0", QCARE_HTTP_PORT="0", QCARE_API_KEYS=f"q:{KEY}"),
    )
    try:
        assert proc.popen.wait(30) == 2
        assert "QCARE_TLS_CERT" in proc.text()
        assert "QCARE_BEHIND_TLS_PROXY" in proc.text()
    finally:
        proc.close()


@pytest.mark.parametrize(
    ("keys", "expect"),
    [
        ("qcare:short-key-123", "shorter than 24"),
        ("ops:change-me-change-me-change-me", "placeholder"),
    ],
)
def test_gateway_refuses_weak_keys_at_start(test_env: RunEnv, keys: str, expect: str) -> None:
    proc = Proc("gateway", test_env.env(QCARE_HTTP_PORT="0", QCARE_API_KEYS=keys))
    try:
        assert proc.popen.wait(30) == 2
        text = proc.text()
        assert "QCARE_API_KEYS" in text
        assert expect in text
        assert keys.split(":", 1)[1] not in text  # the message names the key, never quotes it
    finally:
        proc.close()


async def test_dev_mode_is_loud(procs: Procs, http: aiohttp.ClientSession) -> None:
    gw = procs.gateway()
    await gw.ready(http)
    async with http.get(gw.url + "/readyz") as resp:
        assert (await resp.json())["auth"] == "off"
    async with http.get(gw.url + "/openapi.json") as resp:
        assert (await resp.json())["security"] == [{}]  # says anonymous access is what it is
    warnings = [e for e in gw.events() if e.get("action") == "auth_off"]
    assert warnings
    assert warnings[0]["level"] == "warning"

    keyed = procs.gateway(QCARE_API_KEYS=f"qcare:{KEY}")
    await keyed.ready(http)
    async with http.get(keyed.url + "/readyz") as resp:
        assert (await resp.json())["auth"] == "on"
    async with http.get(keyed.url + "/openapi.json") as resp:
        security = (await resp.json())["security"]
    assert {} not in security
    assert security == [{"bearer": []}, {"apiKey": []}]
    assert not [e for e in keyed.events() if e.get("action") == "auth_off"]


# --- PostgreSQL over TLS: a private server with a certificate this test issues ----------------

PG_BIN = Path("/usr/lib/postgresql")


def _pg_tool(name: str) -> str | None:
    found = sorted(PG_BIN.glob(f"*/bin/{name}"))
    return str(found[-1]) if found else None


@pytest.fixture(scope="module")
def tls_postgres(authority: Authority) -> Iterator[int]:
    """A throw-away PostgreSQL with ssl=on and our certificate, as user postgres on a free
    port. The machine's own server has ssl off; this one needs no change to it."""
    initdb, pg_ctl = _pg_tool("initdb"), _pg_tool("pg_ctl")
    if initdb is None or pg_ctl is None or os.geteuid() != 0 or shutil.which("runuser") is None:
        reason = "needs root, runuser and PostgreSQL's initdb/pg_ctl"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    # not under pytest's tmp_path: its parents are root's alone (0700), out of postgres's reach
    base = Path(tempfile.mkdtemp(prefix="qcare-pgtls-"))
    base.chmod(0o755)
    cert = authority.issue("pg", "localhost", "127.0.0.1")
    data, run = base / "data", base / "run"
    run.mkdir()
    for path in (cert.cert, cert.key):
        shutil.copy(path, base / path.name)
    for path in (base, run, base / cert.cert.name, base / cert.key.name):
        shutil.chown(path, "postgres", "postgres")
    (base / cert.key.name).chmod(0o600)
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_pg, initdb, "-D", str(data), "-U", "postgres", "--auth=trust",
                    "--no-sync"], check=True, capture_output=True, timeout=120)  # fmt: skip
    port = free_port()
    options = (
        f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={run} "
        f"-c ssl=on -c ssl_cert_file={base / cert.cert.name} "
        f"-c ssl_key_file={base / cert.key.name} -c ssl_min_protocol_version=TLSv1.2"
    )
    # -w: pg_ctl itself waits until the server accepts connections
    start = [pg_ctl, "-D", str(data), "-o", options, "-l", str(base / "log"), "-w", "-t", "60"]
    subprocess.run([*as_pg, *start, "start"], check=True, capture_output=True, timeout=90)
    try:
        yield port
    finally:
        subprocess.run([*as_pg, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(base, ignore_errors=True)


OWN_SESSION = "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"


async def _own_session(url: str) -> asyncpg.Record:
    pool = await create_pool(url, size=1)  # the product's pool, from a QCARE_DATABASE_URL
    try:
        async with pool.acquire() as conn:
            row = await conn.fetchrow(OWN_SESSION)
            assert row is not None
            return row
    finally:
        await pool.close()


async def test_postgres_session_is_encrypted_and_verified(
    tls_postgres: int, authority: Authority, tmp_path: Path
) -> None:
    base = f"postgresql://postgres@127.0.0.1:{tls_postgres}/postgres"
    verified = f"{base}?sslmode=verify-full&sslrootcert={authority.cert}"
    row = await _own_session(verified)
    assert row["ssl"] is True
    assert row["version"] in ("TLSv1.2", "TLSv1.3")
    # the check can fail: the same query on a plain session says so
    assert (await _own_session(f"{base}?sslmode=disable"))["ssl"] is False
    # and verify-full really verifies: another CA's root does not vouch for this server
    stranger = Authority.create(tmp_path / "stranger", name="another CA")
    with pytest.raises(ssl.SSLCertVerificationError):
        await _own_session(f"{base}?sslmode=verify-full&sslrootcert={stranger.cert}")


# --- AMQP over TLS: the product's connect() against a TLS listener -------------------------


@pytest.fixture
async def tls_listener(server_cert: Issued) -> AsyncIterator[tuple[int, list[bytes]]]:
    """A TLS server on loopback with the test certificate that records what a client sends
    once the handshake is done (an AMQP client sends its protocol header first), then
    hangs up. Enough to see whether connect() verified and completed TLS."""
    received: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            received.append(await reader.readexactly(8))
        writer.close()

    server = await asyncio.start_server(
        handle, "127.0.0.1", 0, ssl=server_context(str(server_cert.cert), str(server_cert.key))
    )
    port = server.sockets[0].getsockname()[1]
    try:
        yield port, received
    finally:
        server.close()
        await server.wait_closed()


async def test_amqps_verifies_the_broker(
    tls_listener: tuple[int, list[bytes]], authority: Authority
) -> None:
    port, received = tls_listener
    with pytest.raises(Exception):  # noqa: B017, PT011 - our listener hangs up after the header
        await connect(f"amqps://guest:guest@localhost:{port}/", 5, ca_file=str(authority.cert))
    assert received == [b"AMQP\x00\x00\x09\x01"]  # AMQP's header, over a verified TLS session
    # the system's CAs (no QCARE_AMQP_CA_FILE) do not know our CA: no session, nothing sent
    with pytest.raises(Exception) as refused:  # noqa: PT011
        await connect(f"amqps://guest:guest@localhost:{port}/", 5)
    assert "CERTIFICATE_VERIFY_FAILED" in repr(refused.value)
    assert len(received) == 1
