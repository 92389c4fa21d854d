"""Identity and value normalisation (SPEC §3, WIRE.md §7), pure functions."""

from __future__ import annotations

import re

_HKID_STRIP = re.compile(r"[\s()\[\]]")
_HKID_SHAPE = re.compile(r"^([A-Z]{1,2})([0-9]{6})([0-9A])$")


def normalise_hkid(raw: str) -> str:
    """`a123456(3)` -> `A1234563`: uppercase, no spaces or brackets."""
    return _HKID_STRIP.sub("", raw).upper()


def hkid_check_digit(prefix: str, digits: str) -> str:
    letters = prefix.rjust(2)
    values = [36 if c == " " else ord(c) - ord("A") + 10 for c in letters]
    values += [int(d) for d in digits]
    total = sum(v * w for v, w in zip(values, range(9, 1, -1), strict=True))
    check = (11 - total % 11) % 11
    return "A" if check == 10 else str(check)


def hkid_valid(normalised: str) -> bool:
    m = _HKID_SHAPE.match(normalised)
    return bool(m) and hkid_check_digit(m[1], m[2]) == m[3] if m else False


def mask_id(value: str | None) -> str:
    """`A1234563` -> `A12****(3)`; never logs a full identifier (SPEC §5)."""
    if not value:
        return ""
    text = normalise_hkid(value)
    if len(text) <= 4:
        return "*" * len(text)
    return f"{text[:3]}{'*' * max(len(text) - 4, 1)}({text[-1]})"


def patient_key(hkid: str | None, passno: str | None) -> str | None:
    """The patient's identity: normalised HKID, else passport number."""
    normalised = normalise_hkid(hkid) if hkid is not None else ""
    if normalised:  # "( )" or "[]" is no HKID: it made one patient of everyone who sent it
        return "HKID:" + normalised
    if passno is not None and passno.strip():
        return "PASSNO:" + passno.strip().upper()
    return None


_GENDERS = {
    "m": "M",
    "male": "M",
    "man": "M",
    "男": "M",
    "f": "F",
    "female": "F",
    "woman": "F",
    "女": "F",
    "u": "U",
    "unknown": "U",
    "o": "U",
    "other": "U",
    "x": "U",
}


def normalise_gender(raw: str | None) -> str | None:
    """M/F/U, or None when the value is not recognised."""
    if raw is None:
        return None
    return _GENDERS.get(raw.strip().lower())
