"""A C-FIND identifier as a worklist query: its keys, whether an item matches them, and
the response identifier, holding exactly the keys asked for (PS3.4 C.2.2.1, K.6.1.2).

Keys the worklist supports (items.SUPPORTED) are matched and returned with the item's
value; any other key is returned zero-length and does not narrow the match. The Scheduled
Procedure Step Sequence's one item holds its keys (sequence matching); an empty sequence
asks for every attribute of the step. OtherPatientIDsSequence is returned, never matched.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from pydicom.config import IGNORE
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import Tag

from ..normalize import mask_id
from . import items
from .items import CHARSET, OTHER_ID_KEYS, OTHER_IDS, STEP, STEP_KEYS, TOP_KEYS, VR, Item
from .matching import InvalidQuery, Key, Predicate, compile_key, prepare

CHARSET_TAG = 0x00080005
_BINARY = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
MAX_KEYS = 200  # an identifier has a few dozen keys; thousands is an attack


@dataclass(frozen=True)
class Nested:
    """A sequence key: its tag and the keys of its one item (None: no item, i.e. all)."""

    tag: int
    keyword: str
    keys: tuple[Key, ...] | None


Entry = Key | Nested


@dataclass(frozen=True)
class Check:
    """A supported key to match: where its value is, and the compiled match."""

    keyword: str
    in_step: bool
    test: Predicate


@dataclass(frozen=True)
class Query:
    entries: tuple[Entry, ...]
    checks: tuple[Check, ...] = ()  # the supported keys that narrow the match
    wanted: frozenset[str] = frozenset()  # keywords the item must hold (items.item)

    def key(self, keyword: str) -> Key | None:
        """A top-level key, or one in the Scheduled Procedure Step, by keyword."""
        for entry in self.entries:
            if isinstance(entry, Key) and entry.keyword == keyword:
                return entry
            if isinstance(entry, Nested) and entry.keyword == STEP and entry.keys:
                for key in entry.keys:
                    if key.keyword == keyword:
                        return key
        return None

    def masked(self) -> str:
        """The query for the audit trail: each key with its value, unless universal; the
        values of personal attributes (fields.py) masked, identifiers keeping a hint
        (`PatientID=A12****(3)`), names and dates `***`; unsupported keys by name only."""
        parts: list[str] = []
        for entry in self.entries:
            keys = entry.keys or () if isinstance(entry, Nested) else (entry,)
            if isinstance(entry, Nested):
                parts.append(entry.keyword or f"{entry.tag:08X}")
            for key in keys:
                name = key.keyword or f"{key.tag:08X}"
                if key.universal or key.keyword not in VR:
                    parts.append(name)
                else:
                    parts.append(f"{name}={_masked_value(key)}")
        return " ".join(parts)

    def keywords(self) -> list[str]:
        """The keys asked for, as keywords (for logs: never their values)."""
        out: list[str] = []
        for entry in self.entries:
            out.append(entry.keyword or f"{entry.tag:08X}")
            if isinstance(entry, Nested) and entry.keys:
                out.extend(f"{entry.keyword}/{k.keyword or f'{k.tag:08X}'}" for k in entry.keys)
        return out


def _masked_value(key: Key) -> str:
    spec = items.PERSONAL.get(key.keyword)
    if spec is None:
        return key.value
    return mask_id(key.value) if spec == "identifier" else "***"


def _value(elem_value: object) -> str:
    if elem_value is None:
        return ""
    if isinstance(elem_value, MultiValue | list | tuple):
        return "\\".join(_value(v) for v in elem_value)
    if isinstance(elem_value, bytes | bytearray):
        return ""
    return str(elem_value)


def _keys(ds: Dataset, depth: int) -> Iterator[Entry]:
    for elem in ds:
        tag = int(elem.tag)
        if tag == CHARSET_TAG or elem.tag.element == 0:  # our charset; group lengths
            continue
        keyword = elem.keyword or ""
        if elem.VR == "SQ":
            items = list(elem.value or [])
            if depth > 0:  # a sequence in the step's item: returned empty, never matched
                yield Key(tag, "SQ", "", keyword)
            elif not items:
                yield Nested(tag, keyword, None)
            else:
                keys = tuple(k for k in _keys(items[0], 1) if isinstance(k, Key))
                yield Nested(tag, keyword, keys)
            continue
        vr = "UN" if elem.VR in _BINARY or " or " in str(elem.VR) else str(elem.VR)
        key = Key(tag, vr, _value(elem.value) if vr != "UN" else "", keyword)
        prepare(key)
        yield key


def parse(identifier: Dataset) -> Query:
    """The query an identifier asks; InvalidQuery if it cannot be one (A900)."""
    try:
        entries = tuple(_keys(identifier, 0))
    except InvalidQuery:
        raise
    except Exception as exc:  # a value pydicom cannot decode: the peer's error, not ours
        raise InvalidQuery(f"an undecodable key ({type(exc).__name__})") from None
    count = sum(1 + len(e.keys or ()) if isinstance(e, Nested) else 1 for e in entries)
    if count > MAX_KEYS:
        raise InvalidQuery(f"more than {MAX_KEYS} keys")
    checks: list[Check] = []
    wanted: set[str] = set()
    for entry in entries:
        if isinstance(entry, Key):
            if entry.keyword in TOP_KEYS:
                wanted.add(entry.keyword)
                if not entry.universal:
                    checks.append(Check(entry.keyword, False, compile_key(entry)))
        elif entry.keyword == STEP:
            wanted |= STEP_KEYS if entry.keys is None else {k.keyword for k in entry.keys}
            for key in entry.keys or ():
                if key.keyword in STEP_KEYS and not key.universal:
                    checks.append(Check(key.keyword, True, compile_key(key)))
        elif entry.keyword == OTHER_IDS:
            wanted.add(OTHER_IDS)
    return Query(entries, tuple(checks), frozenset(wanted))


def matches(query: Query, item: Item) -> bool:
    top, step = item.top, item.step
    return all(c.test((step if c.in_step else top)[c.keyword]) for c in query.checks)


def _element(tag: int, vr: str, value: object) -> DataElement:
    # the values are ours, cut and cleaned to their VR (items.py): not checked again
    return DataElement(tag, vr, value if value != "" else None, validation_mode=IGNORE)


def _project(
    keys: tuple[Key, ...] | None, values: Mapping[str, str], names: frozenset[str]
) -> Dataset:
    out = Dataset()
    if keys is None:  # the whole item
        for name in sorted(names):
            out.add(_element(int(Tag(name)), VR[name], values.get(name, "")))
        return out
    for key in keys:
        value = values.get(key.keyword, "") if key.keyword in names else ""
        out.add(_element(key.tag, key.vr, [] if key.vr == "SQ" else value))
    return out


def response(query: Query, item: Item) -> Dataset:
    """The identifier answering `query` with `item`: the keys asked for, no others, plus
    SpecificCharacterSet (UTF-8)."""
    ds = Dataset()
    ds.add(_element(CHARSET_TAG, "CS", CHARSET))
    for entry in query.entries:
        if isinstance(entry, Key):
            value = item.top.get(entry.keyword, "") if entry.keyword in TOP_KEYS else ""
            ds.add(_element(entry.tag, entry.vr, value))
        elif entry.keyword == STEP:
            ds.add(_element(entry.tag, "SQ", [_project(entry.keys, item.step, STEP_KEYS)]))
        elif entry.keyword == OTHER_IDS:
            found = [_project(entry.keys, o, OTHER_ID_KEYS) for o in item.other_ids]
            ds.add(_element(entry.tag, "SQ", found))
        else:
            ds.add(_element(entry.tag, "SQ", []))
    return ds
