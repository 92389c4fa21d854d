from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qcare_ingest.identifiers import (
    HKID_ISSUER,
    HKID_SYSTEM,
    PASSPORT_ISSUER,
    PASSPORT_SYSTEM,
    IdRef,
    accession_from_fhir_request_id,
    fhir_patient_id,
    fhir_request_id,
    id_digest,
    patient_identifier,
    patient_identifiers,
    patient_key_from_fhir_id,
    patient_ref_from_fhir_id,
    request_ref_from_fhir_id,
    split_name,
)
from qcare_ingest.normalize import normalise_hkid, patient_key

FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def test_hkid_first_then_passport() -> None:
    ident = patient_identifier("A1234563", " k1234567 ")
    assert ident == ("hkid", "A1234563")
    assert ident is not None
    assert ident.issuer == HKID_ISSUER
    assert ident.system == HKID_SYSTEM
    passport = patient_identifier(None, " k1234567 ")
    assert passport == ("passport", "K1234567")
    assert passport is not None
    assert passport.issuer == PASSPORT_ISSUER
    assert passport.system == PASSPORT_SYSTEM
    assert patient_identifier("", "  ") is None
    assert patient_identifier(None, None) is None
    assert patient_identifiers("A1234563", "k1") == [("hkid", "A1234563"), ("passport", "K1")]


def test_identifier_value_is_the_patient_keys() -> None:
    for hkid, passno in [("a123456(3)", None), (None, " k1234567 "), ("A123456(3)", "X")]:
        key = patient_key(hkid, passno)
        ident = patient_identifier(normalise_hkid(hkid) if hkid else None, passno)
        assert key is not None
        assert ident is not None
        assert key.split(":", 1)[1] == ident.value


@pytest.mark.parametrize(
    ("key", "fhir_id"),
    [("HKID:A1234563", "hkid-A1234563"), ("PASSNO:K1234567", "passno-K1234567")],
)
def test_patient_ids(key: str, fhir_id: str) -> None:
    assert fhir_patient_id(key) == fhir_id
    assert patient_key_from_fhir_id(fhir_id) == key


def test_patient_id_outside_the_grammar_is_base32_then_digest() -> None:
    key = "PASSNO:K 123/45"
    fhir_id = fhir_patient_id(key)
    assert fhir_id.startswith("passno-b32-")
    assert FHIR_ID.fullmatch(fhir_id)
    assert patient_key_from_fhir_id(fhir_id) == key
    long_key = "PASSNO:" + "護照" * 16
    long_id = fhir_patient_id(long_key)
    assert long_id == "passno-sha-" + id_digest(long_key)
    assert patient_ref_from_fhir_id(long_id) == IdRef(None, id_digest(long_key))
    assert patient_key_from_fhir_id(long_id) is None


@pytest.mark.parametrize(
    "fhir_id", ["", "A1234563", "HKID-A1", "hkid-", "pat-1", "hkid-b32-!!", "hkid-sha-12", "a/b"]
)
def test_foreign_patient_ids(fhir_id: str) -> None:
    assert patient_key_from_fhir_id(fhir_id) is None


def test_not_a_patient_key() -> None:
    with pytest.raises(ValueError, match="not a patient_key"):
        fhir_patient_id("A1234563")


@given(st.sampled_from(["HKID", "PASSNO"]), st.text(min_size=1, max_size=32))
def test_patient_id_round_trips(kind: str, raw: str) -> None:
    value = raw.upper()
    key = f"{kind}:{value}"
    fhir_id = fhir_patient_id(key)
    assert FHIR_ID.fullmatch(fhir_id)
    ref = patient_ref_from_fhir_id(fhir_id)
    assert ref == IdRef(key, None) or ref == IdRef(None, id_digest(key))


def test_request_ids() -> None:
    assert fhir_request_id("ACC-2024.001") == "ACC-2024.001"
    assert accession_from_fhir_request_id("ACC-2024.001") == "ACC-2024.001"
    for odd in ["A 1", "acc-mfrgg", "acx-1", "ACC/1", "x" * 36 + " "]:
        fhir_id = fhir_request_id(odd)
        assert fhir_id.startswith("acc-")
        assert FHIR_ID.fullmatch(fhir_id)
        assert accession_from_fhir_request_id(fhir_id) == odd
    long_acc = "編號" * 32
    assert fhir_request_id(long_acc) == "acx-" + id_digest(long_acc)
    assert request_ref_from_fhir_id(fhir_request_id(long_acc)) == IdRef(None, id_digest(long_acc))
    assert accession_from_fhir_request_id("acc-!") is None
    assert accession_from_fhir_request_id("acc-mfrgg") == "abc"
    assert accession_from_fhir_request_id("a/b") is None


@given(st.text(min_size=1, max_size=64))
def test_request_id_round_trips(accession: str) -> None:
    fhir_id = fhir_request_id(accession)
    assert FHIR_ID.fullmatch(fhir_id)
    ref = request_ref_from_fhir_id(fhir_id)
    assert ref == IdRef(accession, None) or ref == IdRef(None, id_digest(accession))


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("CHAN TAI MAN", ("CHAN", "TAI MAN")),
        ("  CHAN   TAI  MAN ", ("CHAN", "TAI MAN")),
        ("CHAN, Tai Man", ("CHAN", "Tai Man")),
        ("AU YEUNG, Ka Ho", ("AU YEUNG", "Ka Ho")),
        ("CHAN", ("CHAN", "")),
        ("CHAN,", ("CHAN", "")),
        (", Tai Man", ("", "Tai Man")),
        ("陳大文", ("陳大文", "")),
        ("", ("", "")),
        ("   ", ("", "")),
        (None, ("", "")),
    ],
)
def test_split_name(name: str | None, parts: tuple[str, str]) -> None:
    assert split_name(name) == parts
