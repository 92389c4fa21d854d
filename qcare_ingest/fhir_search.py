"""FHIR search parameters read from a query string: pure, typed, refusing what is not
supported with a SearchError whose text names the parameter but never echoes its value
(an identifier is personal data).

Repeating a parameter ANDs it, a comma inside one value ORs (FHIR's rules; `\\,` `\\|`
`\\$` `\\\\` escape). Dates take the prefixes eq ne lt le gt ge sa eb and any precision from
a year to fractions of a second; a value without an offset is Hong Kong time. The date
searched (an order's study instant or first-seen time) is a point in time: `eq2025-10-26`
matches any instant of that day, `lt2025-10-26` one before it, `le2025-10-26` one before
its end.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Literal

from .dates import HONG_KONG
from .fhir_resources import SERVICE_REQUEST_STATUSES
from .identifiers import IdRef, patient_ref_from_fhir_id, request_ref_from_fhir_id

DEFAULT_COUNT = 20
MAX_COUNT = 100
MAX_OFFSET = 1_000_000
REQUEST_STATUS_SYSTEM = "http://hl7.org/fhir/request-status"

DatePrefix = Literal["eq", "ne", "lt", "le", "gt", "ge", "sa", "eb"]
PREFIXES: tuple[DatePrefix, ...] = ("eq", "ne", "lt", "le", "gt", "ge", "sa", "eb")
_BY_PREFIX: dict[str, DatePrefix] = {p: p for p in PREFIXES}

# Accepted and ignored: the answer is always JSON, with its total.
IGNORED = ("_format", "_pretty", "_total")
_JSON_FORMATS = ("json", "application/json", "application/fhir+json", "application/json+fhir")

REQUEST_PARAMS = {
    "_id": "token: the ServiceRequest id",
    "identifier": "token: [system|]value; urn:qcare:id:accession or urn:qcare:id:chitno",
    "patient": "reference: Patient/{id} or the bare id",
    "authored": "date: when the order was first seen (authoredOn), with a prefix",
    "occurrence": "date: the study instant (occurrenceDateTime), with a prefix",
    "status": "token: request-status; every order is active",
}
PATIENT_PARAMS = {
    "_id": "token: the Patient id",
    "identifier": "token: [system|]value; urn:qcare:id:hkid (normalised) or urn:qcare:id:passport",
}
PAGING_PARAMS = {
    "_count": f"page size, default {DEFAULT_COUNT}, at most {MAX_COUNT}",
    "_offset": "how many matches the page skips (the Bundle's next/previous links set it)",
}


class SearchError(ValueError):
    """A search the server refuses: 400 with an OperationOutcome saying why."""

    def __init__(self, diagnostics: str, code: str = "invalid") -> None:
        super().__init__(diagnostics)
        self.diagnostics = diagnostics
        self.code = code


@dataclass(frozen=True)
class Token:
    system: str | None  # None: any system; "": no system
    value: str | None  # None: any value of the system (`system|`)


@dataclass(frozen=True)
class DateRange:
    """A date parameter's value: the prefix and the range its precision spans [start, end)."""

    prefix: DatePrefix
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Paging:
    count: int = DEFAULT_COUNT
    offset: int = 0


# Every field: AND over the outer tuple, OR over the inner one.
@dataclass(frozen=True)
class RequestSearch:
    ids: tuple[tuple[IdRef | None, ...], ...] = ()  # None: an id that names nothing
    identifiers: tuple[tuple[Token, ...], ...] = ()
    patients: tuple[tuple[IdRef | None, ...], ...] = ()
    authored: tuple[tuple[DateRange, ...], ...] = ()
    occurrence: tuple[tuple[DateRange, ...], ...] = ()
    statuses: tuple[tuple[str, ...], ...] = ()
    paging: Paging = field(default_factory=Paging)


@dataclass(frozen=True)
class PatientSearch:
    ids: tuple[tuple[IdRef | None, ...], ...] = ()
    identifiers: tuple[tuple[Token, ...], ...] = ()
    paging: Paging = field(default_factory=Paging)


def _or_values(name: str, value: str) -> list[str]:
    if not value:
        raise SearchError(f"Parameter '{name}' has an empty value.")
    values = _split_keep_escapes(value, ",")
    if any(not v for v in values):
        raise SearchError(f"Parameter '{name}' has an empty value in its comma-separated list.")
    return values


def _split_keep_escapes(value: str, sep: str) -> list[str]:
    """Split on unescaped `sep`, leaving escapes in place for the next split."""
    parts, current, escaped = [], [], False
    for ch in value:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            current.append(ch)
            escaped = True
        elif ch == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def _unescape(value: str) -> str:
    return re.sub(r"\\([,|$\\])", r"\1", value)


def token(name: str, value: str) -> Token:
    parts = _split_keep_escapes(value, "|")
    if len(parts) == 1:
        return Token(None, _unescape(parts[0]))
    if len(parts) > 2:
        raise SearchError(f"Parameter '{name}' has more than one '|': use system|value.")
    system, code = _unescape(parts[0]), _unescape(parts[1])
    if not system and not code:
        raise SearchError(f"Parameter '{name}' needs a value after '|'.")
    return Token(system, code or None)


_DATE = re.compile(
    r"(?P<prefix>[a-z]{2})?(?P<y>\d{4})(?:-(?P<mo>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<h>\d{2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:\.(?P<f>\d{1,9}))?)?"
    r"(?P<tz>Z|[+\- ]\d{2}:\d{2})?)?)?)?",
    re.ASCII,
)


def _add_months(value: datetime, months: int) -> datetime:
    total = value.month - 1 + months
    return value.replace(year=value.year + total // 12, month=total % 12 + 1)


def date_range(name: str, value: str) -> DateRange:
    """`ge2025-10-26`, `2025-10`, `lt2025-10-26T15:51:31+08:00`, ... -> its range."""
    m = _DATE.fullmatch(value)
    if not m:
        raise SearchError(
            f"Parameter '{name}' is not a FHIR date: [prefix]YYYY[-MM[-DD[Thh:mm[:ss[.f]]"
            "[Z|+hh:mm]]]] with prefix one of " + ", ".join(PREFIXES) + "."
        )
    prefix = _BY_PREFIX.get(m["prefix"] or "eq")
    if prefix is None:
        raise SearchError(
            f"Parameter '{name}' has an unsupported prefix; use one of {', '.join(PREFIXES)}."
        )
    tz: tzinfo = HONG_KONG
    if m["tz"] == "Z":
        tz = UTC
    elif m["tz"]:
        sign = -1 if m["tz"][0] == "-" else 1  # a '+' not %2B-encoded arrives as a space
        hours, minutes = int(m["tz"][1:3]), int(m["tz"][4:6])
        if hours > 14 or minutes > 59:
            raise SearchError(f"Parameter '{name}' has an offset out of range.")
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    frac = m["f"] or ""
    try:
        start = datetime(
            int(m["y"]), int(m["mo"] or 1), int(m["d"] or 1),
            int(m["h"] or 0), int(m["mi"] or 0), int(m["s"] or 0),
            int(frac[:6].ljust(6, "0")) if frac else 0, tzinfo=tz,
        )  # fmt: skip
    except ValueError:
        raise SearchError(f"Parameter '{name}' names a date that does not exist.") from None
    return DateRange(prefix, _sendable(start), _sendable(_end(start, m)))


# Where the calendar ends: 9999-12-31's end is past datetime's range, 0001-01-01 in Hong
# Kong time is year 0 in UTC (no timestamptz asyncpg can send); such a bound is the
# infinity PostgreSQL compares with every instant.
_EARLIEST = datetime.min.replace(tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)


def _sendable(at: datetime | None) -> datetime:
    """`at`, or the infinity it lies beyond (None: past the calendar's end)."""
    if at is None:
        return _LATEST
    try:
        at.astimezone(UTC)
    except OverflowError:
        return _EARLIEST if at.year == 1 else _LATEST
    return at


def _end(start: datetime, m: re.Match[str]) -> datetime | None:
    """The end of the range `start`'s precision spans; None past the calendar's end."""
    frac = m["f"] or ""
    try:
        if m["f"]:
            step = timedelta(microseconds=10 ** max(6 - len(frac), 0))
            end = start + step
        elif m["s"]:
            end = start + timedelta(seconds=1)
        elif m["h"]:
            end = start + timedelta(minutes=1)
        elif m["d"]:
            end = start + timedelta(days=1)
        elif m["mo"]:
            end = _add_months(start, 1)
        else:
            end = start.replace(year=start.year + 1)
    except (ValueError, OverflowError):  # year 10000
        return None
    return end


def _count(value: str) -> int:
    """The page size; any larger number is read as MAX_COUNT (however many digits)."""
    if not re.fullmatch(r"[0-9]+", value):
        raise SearchError("Parameter '_count' must be a whole number from 0.")
    digits = value.lstrip("0") or "0"
    return MAX_COUNT if len(digits) > 9 else min(int(digits), MAX_COUNT)


def _offset(value: str) -> int:
    if not re.fullmatch(r"\d{1,9}", value) or int(value) > MAX_OFFSET:
        raise SearchError(f"Parameter '_offset' must be a whole number from 0 to {MAX_OFFSET}.")
    return int(value)


def _paging(pairs: Sequence[tuple[str, str]]) -> Paging:
    count, offset = DEFAULT_COUNT, 0
    for name, value in pairs:
        if name == "_count":
            count = _count(value)
        elif name == "_offset":
            offset = _offset(value)
    return Paging(count, offset)


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # no stored text holds these


def _check_names(pairs: Iterable[tuple[str, str]], supported: dict[str, str]) -> None:
    known = {**supported, **PAGING_PARAMS}
    seen_paging: set[str] = set()
    for name, value in pairs:
        if _UNSTORABLE.search(name) or _UNSTORABLE.search(value):
            raise SearchError("A parameter holds a NUL or an unpaired surrogate.")
        if name in IGNORED:
            if name == "_format" and value not in _JSON_FORMATS:
                raise SearchError(
                    "Parameter '_format': only JSON (application/fhir+json) is served.",
                    "not-supported",
                )
            continue
        if ":" in name:
            raise SearchError(
                f"Parameter '{name.split(':', 1)[0]}': modifiers are not supported.",
                "not-supported",
            )
        if name not in known:
            listed = ", ".join(sorted(known))
            raise SearchError(
                f"Parameter '{_safe_name(name)}' is not supported. Supported: {listed}.",
                "not-supported",
            )
        if name in PAGING_PARAMS:
            if name in seen_paging:
                raise SearchError(f"Parameter '{name}' is given more than once.")
            seen_paging.add(name)


def _safe_name(name: str) -> str:
    """An unknown parameter's name as echoed: a name-like one as it is; one holding digits
    or odd characters (an identifier sent as a name, say) is not repeated."""
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z_\-.]{0,39}", name) else "(not shown)"


def _request_ref(value: str) -> IdRef | None:
    return request_ref_from_fhir_id(value)


def _patient_ref(value: str) -> IdRef | None:
    """`Patient/{id}`, a full URL ending in it, or the bare id."""
    kind, sep, rest = value.rpartition("/")
    if sep:
        resource = kind.rsplit("/", 1)[-1]
        if resource != "Patient":
            raise SearchError("Parameter 'patient' must reference a Patient: Patient/{id}.")
        value = rest
    return patient_ref_from_fhir_id(value)


def _status(value: str) -> str:
    tok = token("status", value)
    if tok.system not in (None, REQUEST_STATUS_SYSTEM) or tok.value is None:
        raise SearchError(f"Parameter 'status' takes a code of {REQUEST_STATUS_SYSTEM}.")
    if tok.value not in SERVICE_REQUEST_STATUSES:
        raise SearchError(
            "Parameter 'status' must be one of " + ", ".join(SERVICE_REQUEST_STATUSES) + "."
        )
    return tok.value


def request_search(pairs: Sequence[tuple[str, str]]) -> RequestSearch:
    """GET /fhir/ServiceRequest?... (pairs: the query's items in order)."""
    _check_names(pairs, REQUEST_PARAMS)
    ids: list[tuple[IdRef | None, ...]] = []
    identifiers: list[tuple[Token, ...]] = []
    patients: list[tuple[IdRef | None, ...]] = []
    authored: list[tuple[DateRange, ...]] = []
    occurrence: list[tuple[DateRange, ...]] = []
    statuses: list[tuple[str, ...]] = []
    for name, value in pairs:
        if name in PAGING_PARAMS or name in IGNORED:
            continue
        values = [_unescape(v) if name != "identifier" else v for v in _or_values(name, value)]
        if name == "_id":
            ids.append(tuple(_request_ref(v) for v in values))
        elif name == "identifier":
            identifiers.append(tuple(token(name, v) for v in values))
        elif name == "patient":
            patients.append(tuple(_patient_ref(v) for v in values))
        elif name == "authored":
            authored.append(tuple(date_range(name, v) for v in values))
        elif name == "occurrence":
            occurrence.append(tuple(date_range(name, v) for v in values))
        elif name == "status":
            statuses.append(tuple(_status(v) for v in values))
    return RequestSearch(
        tuple(ids), tuple(identifiers), tuple(patients), tuple(authored), tuple(occurrence),
        tuple(statuses), _paging(pairs),
    )  # fmt: skip


def patient_search(pairs: Sequence[tuple[str, str]]) -> PatientSearch:
    """GET /fhir/Patient?...: identifier or _id is required (no listing of every patient)."""
    _check_names(pairs, PATIENT_PARAMS)
    ids: list[tuple[IdRef | None, ...]] = []
    identifiers: list[tuple[Token, ...]] = []
    for name, value in pairs:
        if name == "_id":
            ids.append(
                tuple(patient_ref_from_fhir_id(_unescape(v)) for v in _or_values(name, value))
            )
        elif name == "identifier":
            tokens = tuple(token(name, v) for v in _or_values(name, value))
            if any(t.value is None for t in tokens):  # `system|`: every patient of a system
                raise SearchError(
                    "Parameter 'identifier' needs a value (system|value): patients are not listed."
                )
            identifiers.append(tokens)
    if not ids and not identifiers:
        raise SearchError(
            "A Patient search needs 'identifier' (system|value) or '_id': patients are not listed."
        )
    return PatientSearch(tuple(ids), tuple(identifiers), _paging(pairs))
