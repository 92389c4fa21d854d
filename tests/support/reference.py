"""Compare our binder with the reference server (`../shared/oracle`, the real old endpoint).

`Outcome` is what both sides are reduced to: 415 or bound; the ModelState keys after the
`dto.` prefix ('' for the parameter itself); and, only when binding had no error, the model
in canonical names with `studyDate` as ticks (naive wall clock, or the UTC instant). A model
bound beside errors is not compared: our gateway answers 400 and never uses it. Our side
includes the hardening limits the gateway applies to a bound model (`limits.check`), so a
value too long for us is a refusal here, as it is at the gateway.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from qcare_ingest import limits
from qcare_ingest.binding import UnsupportedMediaTypeError, bind, select_format
from qcare_ingest.dates import parse_dotnet
from qcare_ingest.dto import DTO_FIELDS, SERVICE_FIELDS

ROUTE = "/api/v1/qcare/updateXRayOrder"
DEFAULT_URL = "http://127.0.0.1:18090"
_EPOCH = datetime(1, 1, 1)
_TICK = 10  # ticks per microsecond


@dataclass(frozen=True)
class Outcome:
    status: int | None  # 415 (refused before binding), else None
    error_keys: frozenset[str]
    model: Any  # canonical dict, None (null model), or "n/a" when there were errors

    @property
    def accepted(self) -> bool:
        return self.status is None and not self.error_keys and self.model is not None


def _date_key(text: str | None) -> tuple[str, int] | None:
    if text is None:
        return None
    parsed = parse_dotnet(text)
    if parsed is None:
        return ("unreadable", 0)
    value = parsed.value
    offset = value.utcoffset()
    naive = value.replace(tzinfo=None)
    delta = naive - _EPOCH
    ticks = (delta.days * 86_400_000_000 + delta.seconds * 1_000_000 + delta.microseconds) * _TICK
    ticks += parsed.extra_ticks
    if offset is None:
        return ("naive", ticks)
    return ("aware", ticks - int(offset.total_seconds()) * 1_000_000 * _TICK)


def _oracle_date(value: dict[str, Any] | None) -> tuple[str, int] | None:
    if value is None:
        return None
    if value["kind"] == "Unspecified":
        return ("naive", int(value["ticks"]))
    return ("aware", int(value["utcTicks"]))


def _model(fields: dict[str, Any], services: list[Any] | None) -> dict[str, Any]:
    out = dict(fields)
    out["services"] = services
    return out


def ours(body: bytes, content_type: str | None) -> Outcome:
    try:
        fmt, charset = select_format(content_type)
    except UnsupportedMediaTypeError:
        if body:
            return Outcome(415, frozenset(), None)
        fmt, charset = select_format("application/json")
    result = bind(fmt, charset, body)
    if result.errors:
        return Outcome(None, frozenset(result.errors), "n/a")
    if result.model is None:
        return Outcome(None, frozenset(), None)
    over = limits.check(result.model)  # the gateway refuses these as binding errors (answers.py)
    if over:
        return Outcome(None, frozenset(over), "n/a")
    dumped = result.model.model_dump()
    fields = {k: v for k, v in dumped.items() if k not in ("services", "studyDate")}
    fields["studyDate"] = _date_key(dumped["studyDate"])
    return Outcome(None, frozenset(), _model(fields, dumped["services"]))


def from_echo(status: int, echo: dict[str, Any]) -> Outcome:
    if status == 415:
        return Outcome(415, frozenset(), None)
    keys = frozenset(k.removeprefix("dto").removeprefix(".") for k in echo["errors"])
    if keys:
        return Outcome(None, keys, "n/a")
    model = echo["model"]
    if model is None:
        return Outcome(None, frozenset(), None)
    fields = {
        canon: model[cs]
        for cs, canon in DTO_FIELDS.items()
        if canon not in ("services", "studyDate")
    }
    fields["studyDate"] = _oracle_date(model["studyDate"])
    services = model["services"]
    if services is not None:
        services = [
            None if item is None else {canon: item[cs] for cs, canon in SERVICE_FIELDS.items()}
            for item in services
        ]
    return Outcome(None, frozenset(), _model(fields, services))


class Reference:
    """A keep-alive client of the reference server."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or os.environ.get("QCARE_REFERENCE_URL") or DEFAULT_URL
        parts = urlsplit(self.url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._conn: http.client.HTTPConnection | None = None

    def post(self, body: bytes, content_type: str | None) -> tuple[int, dict[str, Any]]:
        headers = {} if content_type is None else {"Content-Type": content_type}
        for attempt in range(2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=30)
            try:
                self._conn.request("POST", ROUTE, body=body, headers=headers)
                response = self._conn.getresponse()
                data = response.read()
                return response.status, json.loads(data)
            except (http.client.HTTPException, ConnectionError):
                self._conn.close()
                self._conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def outcome(self, body: bytes, content_type: str | None) -> Outcome:
        return from_echo(*self.post(body, content_type))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


def diverges(
    ref: Reference, body: bytes, content_type: str | None
) -> tuple[Outcome, Outcome] | None:
    """(reference, ours) when they differ, else None."""
    theirs, mine = ref.outcome(body, content_type), ours(body, content_type)
    return None if theirs == mine else (theirs, mine)


# --- comparing many bodies (issue 13: tests/integration/test_reference.py, /tmp/i13-diff.py)

_INDEX = re.compile(r"\[\d+\]")


def shorten(body: bytes, limit: int = 160) -> str:
    """A body's repr cut in the middle, for failure lists."""
    text = repr(body)
    if len(text) <= limit:
        return text
    half = (limit - 5) // 2
    return f"{text[:half]} ... {text[-half:]} ({len(body)} bytes)"


def _leaf(key: str) -> str:
    """The member a ModelState key names: 'services[0].NoOfImages' -> 'noofimages'."""
    if key == "":
        return "''"
    parts = [p for p in _INDEX.sub("", key).split(".") if p and not p.startswith("$")]
    return parts[-1].lower() if parts else key.lower()


def _keys(keys: frozenset[str]) -> str:
    norm = sorted({_leaf(k) for k in keys})
    if len(norm) > 4:
        norm = [*norm[:4], f"+{len(norm) - 4}"]
    return "{" + ", ".join(norm) + "}"


def _state(outcome: Outcome) -> str:
    if outcome.status is not None:
        return str(outcome.status)
    if outcome.error_keys:
        return "refuses " + _keys(outcome.error_keys)
    return "null model" if outcome.model is None else "binds"


def signature(theirs: Outcome, mine: Outcome) -> str:
    """A divergence's class, independent of the body: what differs, not by how much.
    ModelState keys are reduced to the members they name (lower case, no indices)."""
    a, b = _state(theirs), _state(mine)
    if a.startswith("refuses") and b.startswith("refuses"):
        if mine.error_keys == {""}:
            return "both refuse; ours as a whole (''), ref per member"
        if theirs.error_keys == {""}:
            return "both refuse; ref as a whole (''), ours per member"
        if a == b:
            return "both refuse; same members, keys differ (paths or case)"
        return f"both refuse; members differ: ref {a[8:]} / ours {b[8:]}"
    if a != b:
        return f"ref {a} / ours {b}"
    ma, mb = theirs.model, mine.model
    fields = sorted(k for k in ma if ma[k] != mb.get(k))
    return "both bind; model differs in " + ", ".join(fields)


@dataclass(frozen=True)
class Divergence:
    body: bytes
    content_type: str | None
    focus: str
    theirs: Outcome
    mine: Outcome
    exception: str | None = None  # the registry entry that allows it

    @property
    def signature(self) -> str:
        return signature(self.theirs, self.mine)

    def describe(self) -> str:
        return (
            f"[{self.focus}] {self.signature}\n"
            f"    body {shorten(self.body)}\n"
            f"    content-type {self.content_type!r}\n"
            f"    reference {outcomes_text(self.theirs, self.mine)[0]}\n"
            f"    ours      {outcomes_text(self.theirs, self.mine)[1]}"
        )


def _outcome_text(outcome: Outcome, limit: int = 400) -> str:
    text = repr(outcome)
    return text if len(text) <= limit else text[: limit - 4] + " ..."


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + " ..."


def outcomes_text(theirs: Outcome, mine: Outcome) -> tuple[str, str]:
    """Both outcomes, briefly: when both bound, only the members that differ."""
    if isinstance(theirs.model, dict) and isinstance(mine.model, dict):
        fields = [k for k in theirs.model if theirs.model[k] != mine.model.get(k)]
        return (
            "binds " + ", ".join(f"{k}={_short(theirs.model[k])}" for k in fields),
            "binds " + ", ".join(f"{k}={_short(mine.model.get(k))}" for k in fields),
        )
    return _state_text(theirs), _state_text(mine)


def _state_text(outcome: Outcome) -> str:
    if outcome.status is not None:
        return str(outcome.status)
    if outcome.error_keys:
        return "refuses " + _short(sorted(outcome.error_keys), 300)
    if outcome.model is None:
        return "null model"
    return "binds " + _short(outcome.model, 300)


# --- finding or starting the reference server (tests/conftest.py's `reference` fixture)

ORACLE_HELP = (
    "the reference server is needed: run ../shared/oracle/run.sh (it installs Mono and builds "
    "once), or set QCARE_REFERENCE_URL to a running one, or QCARE_ORACLE_DIR to the oracle "
    "directory"
)


def oracle_dir(repo: Path) -> Path | None:
    """The oracle's directory: $QCARE_ORACLE_DIR, else `shared/oracle` beside the repository
    or one of its parents (the workspace layout: <workspace>/main and <workspace>/shared),
    also when this checkout is a git worktree or a clone elsewhere (then beside the checkout
    it belongs to or was cloned from)."""
    if os.environ.get("QCARE_ORACLE_DIR"):  # given: that one or none
        given = Path(os.environ["QCARE_ORACLE_DIR"])
        return given.resolve() if (given / "run.sh").is_file() else None
    candidates = [parent / "shared" / "oracle" for parent in repo.parents]
    for git_args in (
        ["rev-parse", "--path-format=absolute", "--git-common-dir"],  # a worktree's checkout
        ["remote", "get-url", "origin"],  # a clean clone (CI): the checkout it came from
    ):
        try:
            found = subprocess.run(
                ["git", *git_args],
                cwd=repo, capture_output=True, text=True, timeout=10, check=True,
            ).stdout.strip()  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            continue
        origin = Path(found.removeprefix("file://"))
        if origin.is_absolute():
            base = origin.parent if origin.name == ".git" else origin
            candidates.append(base.parent / "shared" / "oracle")
    for candidate in candidates:
        if (candidate / "run.sh").is_file():
            return candidate.resolve()
    return None


def reachable(url: str, timeout: float = 5.0) -> bool:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(
        parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout
    )
    try:
        conn.request("POST", ROUTE, body=b"", headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        return response.status == 200
    except OSError:
        return False
    finally:
        conn.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Started:
    """A reference server this test run started (run.sh in the background), and how to stop it."""

    url: str
    oracle: Path
    port: int
    log: str

    def stop(self) -> None:
        subprocess.run(
            [str(self.oracle / "run.sh"), "--stop", "--port", str(self.port)],
            capture_output=True, timeout=60, check=False,
        )  # fmt: skip


def start_oracle(oracle: Path, port: int, timeout: float = 900) -> Started:
    """run.sh on `port`: installs Mono and builds when needed (minutes, once), else ~1 s."""
    proc = subprocess.run(
        [str(oracle / "run.sh"), "--port", str(port)],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    started = Started(url, oracle, port, proc.stdout + proc.stderr)
    if proc.returncode != 0 or not reachable(url):
        started.stop()
        raise RuntimeError(f"{oracle}/run.sh --port {port} failed:\n{started.log[-2000:]}")
    return started
