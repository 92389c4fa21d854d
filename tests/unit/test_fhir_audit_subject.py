"""What a FHIR search's audit row (and its log line) names: identifiers masked wherever a
client puts them."""

from __future__ import annotations

import pytest

from gateway.fhir import masked_search


@pytest.mark.parametrize(
    "value",
    [
        "A1234563|urn:qcare:id:hkid",  # system and value swapped: a common slip
        "A1234563|",  # "any value of system A1234563"
        "urn:qcare:id:hkid|A1234563",
        "A1234563",
        "urn:qcare:id:accession|ACC1,A1234563|urn:qcare:id:hkid",
    ],
)
def test_an_identifier_in_the_system_slot_is_masked_too(value: str) -> None:
    for resource in ("Patient", "ServiceRequest"):
        subject = masked_search(resource, [("identifier", value)])
        assert "1234563" not in subject, subject


def test_known_systems_and_accession_numbers_stay_readable() -> None:
    subject = masked_search(
        "ServiceRequest",
        [("identifier", "urn:qcare:id:accession|ACC1,urn:qcare:id:chitno|C1234567")],
    )
    assert subject == (
        "ServiceRequest?identifier=urn:qcare:id:accession|ACC1,urn:qcare:id:chitno|C12****(7)"
    )
