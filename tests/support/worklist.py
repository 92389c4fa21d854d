"""The worklist SCP as a process, and two SCUs nobody here wrote to query it: dcmtk's
findscu (by path: $QCARE_FINDSCU, default /usr/bin/findscu; the `findscu` on PATH is
pynetdicom's) and a pynetdicom SCU."""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE

from tests.support.procs import Proc, free_port, wait_for

FINDSCU = os.environ.get("QCARE_FINDSCU", "/usr/bin/findscu")
MWL_FIND = "1.2.840.10008.5.1.4.31"
PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
VERIFICATION = "1.2.840.10008.1.1"


class WorklistProc(Proc):
    def __init__(self, env: dict[str, str], port: int | None = None) -> None:
        self.port = free_port() if port is None else port
        super().__init__(
            "qcare_ingest.cli", {**env, "QCARE_WORKLIST_PORT": str(self.port)}, ["worklist"]
        )

    async def listening(self, timeout: float = 20) -> None:
        async def up() -> bool:
            if self.popen.poll() is not None:
                raise AssertionError(f"worklist exited: {self.text()[-2000:]}")
            return any(e.get("action") == "listening" for e in self.events())

        await wait_for(up, timeout, what="worklist listening")

    def queries(self) -> list[dict[str, Any]]:
        return [e for e in self.events() if e.get("action") == "c_find"]


@dataclass
class Found:
    """What one C-FIND answered: the final status and the pending identifiers."""

    status: int
    items: list[Dataset]


def scu_find(
    port: int,
    ds: Dataset,
    *,
    calling: str = "PYSCU",
    called: str = "QCARE",
    sop_class: str = MWL_FIND,
) -> Found:
    """A C-FIND by a pynetdicom SCU (blocking: run it in a thread from async tests)."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(sop_class)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 15
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    if not assoc.is_established:
        return Found(-1, [])  # rejected or aborted
    try:
        items: list[Dataset] = []
        status = -2
        for rsp_status, identifier in assoc.send_c_find(ds, sop_class):
            if not rsp_status:  # no answer in time: connection lost
                break
            status = int(rsp_status.Status)
            if status in (0xFF00, 0xFF01) and identifier is not None:
                items.append(identifier)
        return Found(status, items)
    finally:
        assoc.release()


def echo(port: int, calling: str = "PYSCU", called: str = "QCARE") -> int:
    ae = AE(ae_title=calling)
    ae.add_requested_context(VERIFICATION)
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    if not assoc.is_established:
        return -1
    try:
        return int(assoc.send_c_echo().Status)
    finally:
        assoc.release()


@dataclass
class FindscuResult:
    returncode: int
    output: str
    items: list[Dataset]


def findscu(
    port: int, keys: list[str], *, calling: str = "FINDSCU", called: str = "QCARE"
) -> FindscuResult:
    """dcmtk's findscu -W with `-k` keys; its responses extracted (-X) and read back."""
    with tempfile.TemporaryDirectory(prefix="qcare-findscu-") as out:
        args = [FINDSCU, "-W", "-X", "-od", out, "-aet", calling, "-aec", called, "-to", "20"]
        for key in keys:
            args += ["-k", key]
        done = subprocess.run(
            [*args, "127.0.0.1", str(port)], capture_output=True, text=True, timeout=60
        )
        files = sorted(Path(out).glob("rsp*.dcm"))
        items = [dcmread(f, force=True) for f in files]
    return FindscuResult(done.returncode, done.stdout + done.stderr, items)


def abort_after_first(port: int, ds: Dataset, calling: str = "PYSCU") -> int:
    """Start a C-FIND, take its first answer, then abort the association: a modality
    switched off mid-query. Returns the first answer's status."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(MWL_FIND)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 15
    assoc = ae.associate("127.0.0.1", port, ae_title="QCARE")
    assert assoc.is_established
    status = -1
    for rsp_status, _ in assoc.send_c_find(ds, MWL_FIND):
        status = int(rsp_status.Status) if rsp_status else -2
        break
    assoc.abort()
    return status


def scu_find_raw(port: int, identifier: bytes) -> Found:
    """A C-FIND whose identifier is `identifier` as is (say, bytes that are no dataset):
    pynetdicom's encoder is swapped for one that returns them."""
    with mock.patch("pynetdicom.association.encode", return_value=identifier):
        return scu_find(port, Dataset())
