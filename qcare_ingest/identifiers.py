"""How a patient and an order are named outside: DICOM issuers, FHIR systems and ids.

One place for the worklist (PatientID, IssuerOfPatientID, PatientName) and FHIR
(Patient/ServiceRequest ids, identifier systems, HumanName), so the two never disagree.

- A patient's identifier is the normalised HKID (`patients.hkid`, e.g. A1234563) when
  there is one, else the passport number as `normalize.patient_key` keys it (trimmed,
  upper case). Issuer "HKID" / "PASSPORT"; FHIR system urn:qcare:id:hkid / urn:qcare:id:passport.
- FHIR Patient id: the patient_key made URL-safe, `HKID:A1234563` -> `hkid-A1234563`,
  `PASSNO:K1234567` -> `passno-K1234567`. A value outside FHIR's id grammar
  ([A-Za-z0-9-.]{1,64}) is written `<kind>-b32-<base32 of its UTF-8>` (lower case, no
  padding; stored values are upper case, so `b32-` cannot be a value's own start), and
  one too long even for that `<kind>-sha-<first 48 hex of the SHA-256 of the patient_key>`
  (not reversible: found by hashing the stored keys, `id_digest`).
- FHIR ServiceRequest id: the accession number itself when it fits the id grammar and
  does not start with `acc-`/`acx-`; else `acc-<base32>`, or `acx-<48 hex of SHA-256>`
  when that would be longer than 64 characters.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Literal, NamedTuple

from .normalize import normalise_hkid

PatientIdKind = Literal["hkid", "passport"]

HKID_ISSUER = "HKID"  # DICOM IssuerOfPatientID
PASSPORT_ISSUER = "PASSPORT"
HKID_SYSTEM = "urn:qcare:id:hkid"  # FHIR Identifier.system
PASSPORT_SYSTEM = "urn:qcare:id:passport"
ACCESSION_SYSTEM = "urn:qcare:id:accession"
CHIT_SYSTEM = "urn:qcare:id:chitno"
# Identifier.type of an accession number: HL7 v2 table 0203, code ACSN.
IDENTIFIER_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0203"
ACCESSION_TYPE_CODE = "ACSN"

ISSUERS: dict[PatientIdKind, str] = {"hkid": HKID_ISSUER, "passport": PASSPORT_ISSUER}
SYSTEMS: dict[PatientIdKind, str] = {"hkid": HKID_SYSTEM, "passport": PASSPORT_SYSTEM}

_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_ID_MAX = 64
_DIGEST_HEX = 48
# patient_key prefix -> FHIR id prefix
_KEY_PREFIXES = {"HKID": "hkid", "PASSNO": "passno"}
_ID_PREFIXES = {v: k for k, v in _KEY_PREFIXES.items()}


class PatientIdentifier(NamedTuple):
    kind: PatientIdKind
    value: str

    @property
    def issuer(self) -> str:
        return ISSUERS[self.kind]

    @property
    def system(self) -> str:
        return SYSTEMS[self.kind]


def normalise_passno(raw: str) -> str:
    """A passport number as patient_key keys it: trimmed, upper case."""
    return raw.strip().upper()


def patient_identifier(hkid_norm: str | None, passno: str | None) -> PatientIdentifier | None:
    """The patient's one identifier: normalised HKID (patients.hkid), else passport
    (patients.passno as sent, normalised like patient_key), else None."""
    if hkid_norm:
        hkid = normalise_hkid(hkid_norm)  # idempotent on a stored value
        if hkid:
            return PatientIdentifier("hkid", hkid)
    if passno is not None and passno.strip():
        return PatientIdentifier("passport", normalise_passno(passno))
    return None


def patient_identifiers(hkid_norm: str | None, passno: str | None) -> list[PatientIdentifier]:
    """Every identifier the patient has: the HKID first, then the passport (FHIR lists both;
    the worklist puts the second in OtherPatientIDsSequence)."""
    found: list[PatientIdentifier] = []
    if hkid_norm and normalise_hkid(hkid_norm):
        found.append(PatientIdentifier("hkid", normalise_hkid(hkid_norm)))
    if passno is not None and passno.strip():
        found.append(PatientIdentifier("passport", normalise_passno(passno)))
    return found


def _b32(text: str) -> str:
    return base64.b32encode(text.encode("utf-8")).decode("ascii").rstrip("=").lower()


def _unb32(code: str) -> str | None:
    if not code or not re.fullmatch(r"[a-z2-7]+", code):
        return None
    padded = code.upper() + "=" * (-len(code) % 8)
    try:
        text = base64.b32decode(padded).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return text if _b32(text) == code else None  # only the spelling we write


def id_digest(text: str) -> str:
    """The hex digest an over-long id carries: of the whole patient_key, or of the accession
    (SQL: left(encode(sha256(convert_to(value, 'UTF8')), 'hex'), 48))."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:_DIGEST_HEX]


def fhir_patient_id(key: str) -> str:
    """`HKID:A1234563` -> `hkid-A1234563`, `PASSNO:K1234567` -> `passno-K1234567`."""
    kind, sep, value = key.partition(":")
    if not sep or kind not in _KEY_PREFIXES or not value:
        raise ValueError("not a patient_key")
    prefix = _KEY_PREFIXES[kind] + "-"
    # stored values are upper case: a lower-case `b32-`/`sha-` after the kind is ours
    if value == value.upper() and len(prefix + value) <= _ID_MAX and _FHIR_ID.fullmatch(value):
        return prefix + value
    encoded = f"{prefix}b32-{_b32(value)}"
    return encoded if len(encoded) <= _ID_MAX else f"{prefix}sha-{id_digest(key)}"


class IdRef(NamedTuple):
    """What an id names: the exact value, or (for an over-long one) only its digest."""

    value: str | None
    digest: str | None


def _parse(rest: str, b32: str, sha: str) -> IdRef | None:
    if rest.startswith(b32):
        value = _unb32(rest[len(b32) :])
        return IdRef(value, None) if value is not None else None
    if rest.startswith(sha):
        digest = rest[len(sha) :]
        ok = len(digest) == _DIGEST_HEX and re.fullmatch(r"[0-9a-f]+", digest)
        return IdRef(None, digest) if ok else None
    return IdRef(rest, None) if rest else None


def patient_ref_from_fhir_id(fhir_id: str) -> IdRef | None:
    """The patient_key (or its digest) a Patient id names; None if it is not one of ours."""
    if not _FHIR_ID.fullmatch(fhir_id):
        return None
    kind, sep, rest = fhir_id.partition("-")
    if not sep or kind not in _ID_PREFIXES:
        return None
    ref = _parse(rest, "b32-", "sha-")
    if ref is None:
        return None
    if ref.value is not None:
        return IdRef(f"{_ID_PREFIXES[kind]}:{ref.value}", None)
    return ref


def patient_key_from_fhir_id(fhir_id: str) -> str | None:
    """`hkid-A1234563` -> `HKID:A1234563`; None for a digest id or a foreign id."""
    ref = patient_ref_from_fhir_id(fhir_id)
    return ref.value if ref is not None else None


def fhir_request_id(accession: str) -> str:
    """The ServiceRequest id of an accession number (module docstring)."""
    plain = not accession.startswith(("acc-", "acx-"))
    if plain and _FHIR_ID.fullmatch(accession):
        return accession
    encoded = f"acc-{_b32(accession)}"
    return encoded if len(encoded) <= _ID_MAX else f"acx-{id_digest(accession)}"


def request_ref_from_fhir_id(fhir_id: str) -> IdRef | None:
    """The accession (or its digest) a ServiceRequest id names; None if it is no id."""
    if not _FHIR_ID.fullmatch(fhir_id):
        return None
    return _parse(fhir_id, "acc-", "acx-")


def accession_from_fhir_request_id(fhir_id: str) -> str | None:
    """The accession number a ServiceRequest id names; None for a digest id or no id."""
    ref = request_ref_from_fhir_id(fhir_id)
    return ref.value if ref is not None else None


def split_name(name: str | None) -> tuple[str, str]:
    """(family, given) as Hong Kong writes a name: "CHAN TAI MAN" -> ("CHAN", "TAI MAN"),
    "CHAN, Tai Man" -> ("CHAN", "Tai Man"); either may be "" (DICOM PN family^given)."""
    if name is None:
        return "", ""
    if "," in name:
        family, _, given = name.partition(",")
        return " ".join(family.split()), " ".join(given.split())
    words = name.split()
    if not words:
        return "", ""
    return words[0], " ".join(words[1:])
