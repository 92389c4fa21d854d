"""Issue 16: the FHIR R4 views, read by a client that checks every resource against
fhir.resources' R4B models (the R4 line fhir.resources ships for pydantic 2), over orders
POSTed through a real gateway and applied by a real worker."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import asyncpg
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.servicerequest import ServiceRequest

from qcare_ingest.identifiers import fhir_request_id
from qcare_ingest.normalize import hkid_check_digit
from tests.conftest import Procs, RunEnv
from tests.integration.test_least_privilege import Roles, as_role
from tests.support.payloads import UPDATE, order
from tests.support.procs import Gateway, wait_for
from tests.support.queues import cli

POSTER = "fhir-test-key-for-posting-k1"
READER = "fhir-test-key-for-reading-k2"
STATUS_ONLY = "fhir-test-key-for-status-k3"
KEYS = f"qcare:{POSTER}:post+status,reader:{READER}:read,watcher:{STATUS_ONLY}:status"
FHIR_JSON = "application/fhir+json"
MODELS = {
    "ServiceRequest": ServiceRequest,
    "Patient": Patient,
    "Bundle": Bundle,
    "CapabilityStatement": CapabilityStatement,
    "OperationOutcome": OperationOutcome,
}


@pytest.fixture(scope="module")
async def gw(test_env: RunEnv) -> AsyncIterator[Gateway]:
    """One gateway (with keys) and one worker for the module, each connected as its own
    least-privilege role (`migrate` grants them): the gateway's grants are enough for FHIR."""
    run = uuid.uuid4().hex[:8]
    names = [f"qcare_test_fgw_{run}", f"qcare_test_fwk_{run}"]
    roles = Roles(
        as_role(test_env.database_url, names[0], f"gw-{uuid.uuid4().hex}"),
        as_role(test_env.database_url, names[1], f"wk-{uuid.uuid4().hex}"),
    )
    procs = Procs(test_env)
    try:
        migrated = await asyncio.to_thread(cli, test_env.env(**roles.env()), "migrate")
        assert migrated.returncode == 0, migrated.stderr
        gateway = procs.gateway(QCARE_API_KEYS=KEYS, **roles.env())
        worker = procs.worker(**roles.env())
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(gateway.ready(session), worker.consuming())
        yield gateway
    finally:
        procs.close()
        owner = await asyncpg.connect(test_env.database_url)
        try:
            for name in names:
                if await owner.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", name):
                    await owner.execute(f'DROP OWNED BY "{name}"')
                    await owner.execute(f'DROP ROLE "{name}"')
        finally:
            await owner.close()


def tag() -> str:
    return uuid.uuid4().hex[:8]


def new_hkid() -> tuple[str, str]:
    """(as sent, normalised): a valid HKID no other test uses (random digits, prefix Z)."""
    digits = f"{random.randrange(10**6):06d}"
    check = hkid_check_digit("Z", digits)
    return f"z{digits}({check})", f"Z{digits}{check}"


async def post_applied(http: aiohttp.ClientSession, gw: Gateway, bodies: list[bytes]) -> None:
    """POST through the gateway, then poll each message until the worker applied it."""

    async def one(body: bytes) -> None:
        headers = {"Content-Type": "application/json", "X-Api-Key": POSTER}
        async with http.post(gw.url + UPDATE, data=body, headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            msg_id = (await resp.json())["msg_id"]

        async def applied() -> bool:
            path = f"{gw.url}/api/v1/qcare/messages/{quote(msg_id, safe='')}"
            async with http.get(path, headers={"X-Api-Key": POSTER}) as r:
                return r.status == 200 and (await r.json())["status"] == "applied"

        await wait_for(applied, 30, what=f"{msg_id} applied")

    await asyncio.gather(*(one(b) for b in bodies))


async def fhir(
    http: aiohttp.ClientSession, url: str, key: str | None = READER, status: int = 200
) -> dict[str, Any]:
    """GET a FHIR URL; the answer is application/fhir+json and validates as its resource."""
    headers = {"X-Api-Key": key} if key else {}
    async with http.get(url, headers=headers) as resp:
        body = await resp.text()
        assert resp.status == status, body
        assert resp.content_type == FHIR_JSON
        resource: dict[str, Any] = json.loads(body)
    MODELS[resource["resourceType"]].model_validate(resource)
    if resource["resourceType"] == "Bundle":  # entries validate with the Bundle; and alone
        for entry in resource.get("entry", []):
            MODELS[entry["resource"]["resourceType"]].model_validate(entry["resource"])
    return resource


async def walk(http: aiohttp.ClientSession, url: str) -> tuple[list[dict[str, Any]], int]:
    """Every page of a search, following `next`: (resources in order, pages)."""
    found: list[dict[str, Any]] = []
    pages = 0
    next_url: str | None = url
    while next_url is not None:
        bundle = await fhir(http, next_url)
        pages += 1
        assert bundle["type"] == "searchset"
        found += [e["resource"] for e in bundle.get("entry", [])]
        links = {link["relation"]: link["url"] for link in bundle["link"]}
        if pages > 1:
            assert "previous" in links
        next_url = links.get("next")
        assert pages <= 50
    return found, pages


@pytest.fixture(scope="module")
async def orders(gw: Gateway) -> dict[str, Any]:
    """Five orders for one HKID patient (study days 1-5 Oct 2025, HK time), one for a
    passport-only patient, one whose accession is outside FHIR's id grammar."""
    t = tag()
    raw_hkid, hkid = new_hkid()
    passno = f"p{t}"
    accessions = [f"FH-{t}-{i}" for i in range(1, 6)]
    bodies = [
        order(
            f"fhir-{t}-{i}",
            acc,
            hkid=raw_hkid,
            name="CHAN TAI MAN",
            gender="M",
            dob="1980-01-02",
            Address="1 Queen's Road Central",
            studyDate=f"2025-10-0{i}T09:30:00+08:00",
            modality="CR",
            csCode="XR01",
            chitno=f"CH-{t}-{i}",
            ref_doctor="Dr WONG",
            ref_clinic_fullname="Central Clinic",
            examClinicFullName="Kowloon X-ray",
            location="Room 3",
        )
        for i, acc in enumerate(accessions, 1)
    ]
    odd = f"FH {t}/odd"
    bodies.append(order(f"fhir-{t}-p", odd, hkid=None, passno=f" {passno} ", name="LEE, Siu Ming"))
    async with aiohttp.ClientSession() as http:
        await post_applied(http, gw, bodies)
    return {
        "tag": t,
        "hkid": hkid,
        "raw_hkid": raw_hkid,
        "passno": passno.upper(),
        "accessions": accessions,
        "odd": odd,
    }


async def test_read_and_search_round_trip(
    gw: Gateway, orders: dict[str, Any], http: aiohttp.ClientSession
) -> None:
    base = gw.url + "/fhir"
    first = orders["accessions"][0]
    found = await fhir(http, f"{base}/ServiceRequest?identifier=urn:qcare:id:accession|{first}")
    assert found["total"] == 1
    sr = found["entry"][0]["resource"]
    assert found["entry"][0]["fullUrl"] == f"{base}/ServiceRequest/{first}"
    assert await fhir(http, f"{base}/ServiceRequest/{first}") == sr  # the search round-trips
    assert sr["status"] == "active"
    assert sr["intent"] == "order"
    assert sr["identifier"][0]["value"] == first
    assert sr["occurrenceDateTime"] == "2025-10-01T09:30:00+08:00"
    assert sr["category"][0]["coding"][0]["code"] == "CR"
    assert sr["code"]["coding"][0]["code"] == "XR01"
    assert sr["requester"]["display"] == "Dr WONG (Central Clinic)"
    assert sr["orderDetail"] == [{"text": "CHEST PA"}]
    # a chit number, without a system: found too
    by_chit = await fhir(http, f"{base}/ServiceRequest?identifier=CH-{orders['tag']}-1")
    assert [e["resource"] for e in by_chit["entry"]] == [sr]

    patient_ref = sr["subject"]["reference"]
    assert patient_ref == f"Patient/hkid-{orders['hkid']}"
    pat = await fhir(http, f"{base}/{patient_ref}")
    assert pat["identifier"][0] == {
        "use": "official",
        "system": "urn:qcare:id:hkid",
        "value": orders["hkid"],
    }
    assert pat["name"][0]["family"] == "CHAN"
    assert pat["name"][0]["given"] == ["TAI MAN"]
    assert pat["gender"] == "male"
    assert pat["birthDate"] == "1980-01-02"
    # the HKID as a clinic writes it is normalised the way the worker normalises it
    query = quote(f"urn:qcare:id:hkid|{orders['raw_hkid']}", safe="")
    by_hkid = await fhir(http, f"{base}/Patient?identifier={query}")
    assert [e["resource"] for e in by_hkid["entry"]] == [pat]

    # paging walks every order of the patient exactly once, in a stable order
    url = f"{base}/ServiceRequest?patient={quote(patient_ref, safe='')}&_count=2"
    walked, pages = await walk(http, url)
    assert pages == 3
    assert [r["id"] for r in walked] == orders["accessions"]


async def test_date_and_status_searches(
    gw: Gateway, orders: dict[str, Any], http: aiohttp.ClientSession
) -> None:
    base = f"{gw.url}/fhir/ServiceRequest?patient=hkid-{orders['hkid']}"
    acc = orders["accessions"]

    async def ids(query: str) -> list[str]:
        bundle = await fhir(http, base + query)
        assert bundle["total"] == len(bundle.get("entry", []))
        return [e["resource"]["id"] for e in bundle.get("entry", [])]

    assert await ids("&occurrence=2025-10-03") == [acc[2]]
    assert await ids("&occurrence=ge2025-10-02&occurrence=lt2025-10-04") == acc[1:3]
    assert await ids("&occurrence=le2025-10-02") == acc[:2]
    assert await ids("&occurrence=gt2025-10-04") == [acc[4]]
    assert await ids("&occurrence=2025-10-03T09:30") == [acc[2]]
    assert await ids("&occurrence=" + quote("eq2025-10-03T01:30:00Z")) == [acc[2]]
    assert await ids("&occurrence=2025-10-02,2025-10-05") == [acc[1], acc[4]]
    assert await ids("&occurrence=ne2025-10") == []
    assert await ids("&authored=ge2020&authored=lt3000") == acc
    assert await ids("&authored=lt2020-01-01") == []
    assert await ids("&status=active") == acc
    assert await ids("&status=completed,revoked") == []
    counted = await fhir(http, base + "&_count=0")
    assert counted["total"] == len(acc)
    assert "entry" not in counted


async def test_passport_patient_and_an_id_outside_the_grammar(
    gw: Gateway, orders: dict[str, Any], http: aiohttp.ClientSession
) -> None:
    base = gw.url + "/fhir"
    odd_id = fhir_request_id(orders["odd"])
    assert odd_id.startswith("acc-")
    query = quote(f"urn:qcare:id:accession|{orders['odd']}", safe="")
    found = await fhir(http, f"{base}/ServiceRequest?identifier={query}")
    sr = await fhir(http, f"{base}/ServiceRequest/{odd_id}")
    assert [e["resource"] for e in found["entry"]] == [sr]
    assert sr["identifier"][0]["value"] == orders["odd"]
    pat = await fhir(http, f"{base}/{sr['subject']['reference']}")
    assert pat["id"] == f"passno-{orders['passno']}"
    assert pat["name"][0] == {
        "use": "official",
        "text": "LEE, Siu Ming",
        "family": "LEE",
        "given": ["Siu Ming"],
    }
    spelled = quote(f"urn:qcare:id:passport| {orders['passno'].lower()}", safe="")
    by_passport = await fhir(http, f"{base}/Patient?identifier={spelled}")
    assert [e["resource"] for e in by_passport["entry"]] == [pat]
    unknown = await fhir(http, f"{base}/Patient?identifier=urn:qcare:id:hkid|Z0000000")
    assert unknown["total"] == 0
    assert "entry" not in unknown


async def test_an_update_shows(
    gw: Gateway, orders: dict[str, Any], http: aiohttp.ClientSession
) -> None:
    acc = orders["accessions"][4]
    before = await fhir(http, f"{gw.url}/fhir/ServiceRequest/{acc}")
    update = json.dumps(
        {
            "msg_id": f"fhir-{orders['tag']}-upd",
            "accessionNo": acc,
            "modality": "DX",
            "studyDate": "2025-10-09T14:00:00+08:00",
            "services": [{"studyDesc": "HAND AP", "bodypart": "HAND", "noOfImages": 1}],
        }
    ).encode()
    await post_applied(http, gw, [update])
    after = await fhir(http, f"{gw.url}/fhir/ServiceRequest/{acc}")
    assert after["occurrenceDateTime"] == "2025-10-09T14:00:00+08:00"
    assert after["category"][0]["coding"][0]["code"] == "DX"
    assert after["orderDetail"] == [{"text": "HAND AP"}]
    assert after["authoredOn"] == before["authoredOn"]
    assert after["meta"]["lastUpdated"] > before["meta"]["lastUpdated"]
    moved = await fhir(
        http, f"{gw.url}/fhir/ServiceRequest?patient=hkid-{orders['hkid']}&occurrence=2025-10-09"
    )
    assert [e["resource"] for e in moved["entry"]] == [after]


@pytest.mark.parametrize(
    "sent",
    ["0001-01-01T00:00:00Z", "0001-01-01T08:00:00+08:00", "9999-12-31T23:59:59.9999999Z"],
)
async def test_a_study_date_at_the_calendar_s_ends_is_served(
    gw: Gateway, http: aiohttp.ClientSession, sent: str
) -> None:
    """UTC's first and last microsecond were stored as -infinity / infinity and read back
    naive: the search that met such an order answered 500 (schemathesis found it). Now the
    order keeps the text, has no instant, and reads and searches over it answer."""
    raw_hkid, hkid = new_hkid()
    acc = f"FH-END-{tag()}"
    await post_applied(http, gw, [order(f"fhir-end-{tag()}", acc, hkid=raw_hkid, studyDate=sent)])
    sr = await fhir(http, f"{gw.url}/fhir/ServiceRequest/{acc}")
    assert "occurrenceDateTime" not in sr
    found = await fhir(http, f"{gw.url}/fhir/ServiceRequest?patient=hkid-{hkid}&_count=101")
    assert [e["resource"] for e in found["entry"]] == [sr]
    async with http.get(
        f"{gw.url}/api/v1/qcare/orders/{acc}", headers={"X-Api-Key": READER}
    ) as resp:
        read = await resp.json()
    assert (read["studyDate"], read["normalized"]["studyAt"]) == (sent, None)


async def test_every_route_needs_the_read_scope(gw: Gateway, http: aiohttp.ClientSession) -> None:
    paths = ["metadata", "ServiceRequest", "ServiceRequest/x", "Patient?_id=x", "Patient/x", "Obs"]
    for path in paths:
        async with http.get(f"{gw.url}/fhir/{path}") as resp:
            assert resp.status == 401
            assert resp.content_type == FHIR_JSON
            assert "Bearer" in resp.headers["WWW-Authenticate"]
            OperationOutcome.model_validate(await resp.json(content_type=None))
        for key in (POSTER, STATUS_ONLY, "wrong"):
            denied = await fhir(http, f"{gw.url}/fhir/{path}", key, 401 if key == "wrong" else 403)
            assert denied["issue"][0]["code"] == ("login" if key == "wrong" else "forbidden")
    cap = await fhir(http, f"{gw.url}/fhir/metadata")
    assert cap["fhirVersion"] == "4.0.1"
    assert cap["format"] == ["json"]
    resources = {r["type"]: r for r in cap["rest"][0]["resource"]}
    assert {"identifier", "patient", "authored", "occurrence", "status"} <= {
        p["name"] for p in resources["ServiceRequest"]["searchParam"]
    }
    async with http.get(
        f"{gw.url}/fhir/metadata", headers={"Authorization": f"Bearer {READER}"}
    ) as resp:
        assert resp.status == 200


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("ServiceRequest?authored=26/10/2025", 400, "'authored' is not a FHIR date"),
        ("ServiceRequest?occurrence=xx2025", 400, "'occurrence'"),
        ("ServiceRequest?name=CHAN", 400, "'name' is not supported"),
        ("ServiceRequest?_count=lots", 400, "'_count'"),
        ("ServiceRequest?status=done", 400, "'status' must be one of"),
        ("ServiceRequest?patient=Practitioner/1", 400, "must reference a Patient"),
        ("Patient?_count=10", 400, "needs 'identifier'"),
        ("Patient?identifier=a|b|Z1234563", 400, "more than one '|'"),
        ("ServiceRequest/no-such-order", 404, "No ServiceRequest"),
        ("ServiceRequest/bad%20id", 404, "No ServiceRequest"),
        ("Patient/hkid-Z0000000", 404, "No Patient"),
        ("Patient/Z1234563", 404, "No Patient"),
        ("Observation", 404, "No such FHIR endpoint"),
    ],
)
async def test_refusals_are_operation_outcomes(
    gw: Gateway, http: aiohttp.ClientSession, path: str, status: int, says: str
) -> None:
    outcome = await fhir(http, f"{gw.url}/fhir/{path}", status=status)
    diagnostics = outcome["issue"][0]["diagnostics"]
    assert says in diagnostics
    assert "Z1234563" not in diagnostics
    assert "Z0000000" not in diagnostics


async def test_a_write_is_refused_as_an_outcome(gw: Gateway, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{gw.url}/fhir/Patient", headers={"X-Api-Key": READER}) as resp:
        assert resp.status == 405
        assert resp.content_type == FHIR_JSON
        OperationOutcome.model_validate(await resp.json(content_type=None))


async def test_reads_are_audited_with_identifiers_masked(
    gw: Gateway, orders: dict[str, Any], http: aiohttp.ClientSession, db: asyncpg.Pool
) -> None:
    acc = orders["accessions"][1]
    await fhir(http, f"{gw.url}/fhir/ServiceRequest/{acc}")
    await fhir(http, f"{gw.url}/fhir/Patient/hkid-{orders['hkid']}")
    query = quote(f"urn:qcare:id:hkid|{orders['raw_hkid']}", safe="")
    await fhir(http, f"{gw.url}/fhir/Patient?identifier={query}")
    await fhir(http, f"{gw.url}/fhir/Patient/hkid-Z0000000", status=404)
    rows = await db.fetch(
        "SELECT who, action, subject, outcome FROM audit_log WHERE action LIKE 'fhir_%' ORDER BY id"
    )
    subjects = [(r["action"], r["subject"], r["outcome"]) for r in rows]
    masked = f"hkid-{orders['hkid'][:3]}****({orders['hkid'][-1]})"
    assert ("fhir_read", f"ServiceRequest/{acc}", "shown") in subjects
    assert ("fhir_read", f"Patient/{masked}", "shown") in subjects
    assert ("fhir_read", "Patient/hkid-Z00****(0)", "not_found") in subjects
    assert (
        "fhir_search",
        f"Patient?identifier=urn:qcare:id:hkid|{orders['hkid'][:3]}****({orders['hkid'][-1]})",
        "shown",
    ) in subjects
    first = orders["accessions"][0]  # an accession is kept whole, as GET /orders audits it
    assert (
        "fhir_search",
        f"ServiceRequest?identifier=urn:qcare:id:accession|{first}",
        "shown",
    ) in subjects
    assert {r["who"] for r in rows} == {"reader"}
    everything = " ".join(r["subject"] for r in rows)
    assert orders["hkid"] not in everything
    assert orders["hkid"][1:7] not in everything
    assert orders["passno"] not in everything
