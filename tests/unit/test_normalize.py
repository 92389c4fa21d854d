from __future__ import annotations

import pytest

from qcare_ingest.normalize import (
    hkid_valid,
    mask_id,
    normalise_gender,
    normalise_hkid,
    patient_key,
)


@pytest.mark.parametrize(
    "hkid", ["E364912(5)", "AB123456(9)", "A123456(3)", "A100004(A)", "XA100001(A)"]
)
def test_wire_md_check_digit_table(hkid: str) -> None:
    assert hkid_valid(normalise_hkid(hkid))


@pytest.mark.parametrize("hkid", ["A123456(4)", "A12345(3)", "1234567", "", "AB1234567(8)"])
def test_wrong_check_digit_or_shape(hkid: str) -> None:
    assert not hkid_valid(normalise_hkid(hkid))


def test_spellings_of_one_hkid_are_one_patient() -> None:
    keys = {patient_key(h, None) for h in ["A123456(3)", "a123456(3)", "A 123456 (3)", "A1234563"]}
    assert keys == {"HKID:A1234563"}
    assert patient_key(None, " k1234567 ") == "PASSNO:K1234567"
    assert patient_key("  ", None) is None


def test_mask_never_shows_the_whole_id() -> None:
    assert mask_id("A123456(3)") == "A12****(3)"
    assert "123456" not in mask_id("AB123456(9)")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("M", "M"), ("male", "M"), ("男", "M"), ("Female", "F"), ("女", "F"), ("u", "U"), ("?", None)],
)
def test_gender(raw: str, expected: str | None) -> None:
    assert normalise_gender(raw) == expected


def test_an_hkid_of_brackets_and_spaces_is_no_identity() -> None:
    """'( )' and '[]' normalised to '': two patients merged into one key 'HKID:'."""
    from qcare_ingest.normalize import patient_key

    assert patient_key("( )", None) is None
    assert patient_key("[]", "K1234567") == "PASSNO:K1234567"
    assert patient_key(" a123456(3) ", None) == "HKID:A1234563"
