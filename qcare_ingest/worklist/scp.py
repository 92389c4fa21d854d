"""`qcare-ingest worklist`: the Modality Worklist C-FIND SCP (pynetdicom).

pynetdicom runs each association in a thread of its own and calls the handlers there,
synchronously. The database is read by asyncpg in one event loop on a thread of its own;
a handler hands it the query with run_coroutine_threadsafe and waits at most
QCARE_WORKLIST_QUERY_TIMEOUT for each batch of rows, which come from a server-side cursor
(the first items go out before a big day is read). Whatever goes wrong answers with a
C-FIND status, never a crash or a hang: a query the SCP cannot read A900, a database that
does not answer C001.

Logs name the calling AE, the keys asked for (never their values), the number of
matches and the time taken: no personal data. pynetdicom's own identifier dumps are off.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import signal
import socket
import threading
import time
import warnings
from collections.abc import Generator, Iterator
from types import FrameType
from typing import Any

import asyncpg
from pydicom import config as pydicom_config
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, _config, evt
from pynetdicom.transport import ThreadedAssociationServer

from .. import audit
from ..config import Settings
from ..db import create_pool
from . import items, query, reads
from .matching import InvalidQuery

log = logging.getLogger("worklist")

MODALITY_WORKLIST_FIND = "1.2.840.10008.5.1.4.31"  # the C-FIND SOP class (PS3.4 K.4)
VERIFICATION = "1.2.840.10008.1.1"  # C-ECHO, for the modality engineer's "test connection"
PENDING = 0xFF00
CANCEL = 0xFE00
INVALID = 0xA900  # Identifier does not match SOP Class
UNABLE = 0xC001  # Unable to process: the orders could not be read
BROKEN = 0xC002  # Unable to process: an item could not be built (a bug; logged)
# One audit row per C-FIND that shows an item (personal data), written before the first
# item goes out; a query that matches nothing shows nothing and writes none (modalities
# poll every few seconds).
AUDIT_ACTION = "worklist_query"
SUBJECT_MAX = 500  # characters of a query kept in its audit row
MAX_ASSOCIATIONS = 10  # at once; each C-FIND holds a connection while it streams
# one connection per association for its cursor, plus one the audit rows take in turn: a
# C-FIND writes its row on another connection while its cursor holds its own, so with only
# MAX_ASSOCIATIONS connections, that many queries at once would all wait for the timeout
POOL_SIZE = MAX_ASSOCIATIONS + 1
FIRST_BATCH, BATCH = 50, 1000  # rows per fetch from the cursor
# no deflate: a compressed identifier could be a decompression bomb
TRANSFER_SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]

# pynetdicom logs every identifier at INFO (names, ids): never
_config.LOG_REQUEST_IDENTIFIERS = False
_config.LOG_RESPONSE_IDENTIFIERS = False


class Database:
    """An asyncpg pool in an event loop on its own thread, for synchronous callers."""

    def __init__(self, dsn: str, timeout: float) -> None:
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="worklist-db", daemon=True
        )
        self._thread.start()
        self._pool: asyncpg.Pool = self._call(create_pool(dsn, POOL_SIZE), timeout)

    def _call(self, coro: Any, timeout: float) -> Any:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no answer from the database in {timeout}s") from None

    def rows(self, q: query.Query) -> Generator[list[asyncpg.Record], None, None]:
        """The rows `q` may match, in batches (the first small: the first items go out
        soon); the cursor is closed however the caller stops (GeneratorExit included)."""
        wait = self.timeout + 1
        cursor: reads.Cursor = self._call(reads.Cursor.open(self._pool, q, self.timeout), wait)
        try:
            size = FIRST_BATCH
            while batch := self._call(cursor.fetch(size, self.timeout), wait):
                yield batch
                size = BATCH
        finally:
            try:
                self._call(cursor.close(), wait)
            except Exception:  # the connection is lost or wedged: the pool drops it
                log.warning("cursor did not close", extra={"action": "cursor_close"})

    def audit(self, who: str, subject: str, client: str, outcome: str) -> None:
        """One audit row (audit.record); raises when it cannot be written."""
        record = audit.record(
            self._pool, who=who, action=AUDIT_ACTION, subject=subject[:SUBJECT_MAX],
            client=client, outcome=outcome,
        )  # fmt: skip
        self._call(record, self.timeout + 1)

    def close(self) -> None:
        try:
            self._call(self._pool.close(), 5)  # waits for connections still streaming
        except Exception:  # closing on the way out: nothing left to protect
            log.warning("database pool did not close in 5 s", extra={"action": "db_close"})
            self._loop.call_soon_threadsafe(self._pool.terminate)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def no_delay(event: evt.Event) -> None:
    """TCP_NODELAY on an accepted connection. pynetdicom writes a response's command and
    its identifier as two PDUs; with Nagle's algorithm the second waits for the peer's
    delayed ACK, 40 ms per matching item."""
    raw = getattr(event.assoc.dul.socket, "socket", None)
    if isinstance(raw, socket.socket):
        with contextlib.suppress(OSError):
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Worklist:
    """The SCP: its AE, the database, the C-FIND handler and counters."""

    def __init__(self, settings: Settings, database: Database) -> None:
        self.settings = settings
        self.db = database
        self.stations = dict(settings.worklist_stations)
        self.queries = 0
        self.failures = 0
        self._counting = threading.Lock()  # handlers run in one thread per association
        self.ae = AE(ae_title=settings.worklist_ae)
        self.ae.require_called_aet = True
        self.ae.require_calling_aet = list(settings.worklist_calling_aes)
        self.ae.add_supported_context(MODALITY_WORKLIST_FIND, TRANSFER_SYNTAXES)
        self.ae.add_supported_context(VERIFICATION, TRANSFER_SYNTAXES)
        self.ae.maximum_associations = MAX_ASSOCIATIONS
        self.ae.network_timeout = 30
        self.ae.acse_timeout = 30
        self.ae.dimse_timeout = 30
        self.server: ThreadedAssociationServer | None = None

    def _count(self, queries: int = 0, failures: int = 0) -> None:
        with self._counting:
            self.queries += queries
            self.failures += failures

    def start(self) -> tuple[str, int]:
        server = self.ae.start_server(
            (self.settings.worklist_host, self.settings.worklist_port),
            block=False,
            evt_handlers=[
                (evt.EVT_C_FIND, self.on_find),
                (evt.EVT_REJECTED, self._on_rejected),
                (evt.EVT_CONN_OPEN, no_delay),
            ],
        )
        assert server is not None  # block=False: the server, running
        self.server = server
        host, port = server.server_address[:2]
        return str(host), int(port)

    def stop(self, grace: float) -> None:
        """No new associations; those open get `grace` seconds to finish, then abort."""
        if self.server is not None:
            self.server.shutdown()
            self.server = None
        deadline = time.monotonic() + grace
        while self.ae.active_associations and time.monotonic() < deadline:
            time.sleep(0.05)
        for assoc in self.ae.active_associations:
            assoc.abort()

    @staticmethod
    def _on_rejected(event: evt.Event) -> None:
        log.warning(
            "association rejected",
            extra={
                "action": "rejected",
                "calling_ae": event.assoc.requestor.ae_title,
                "called_ae": getattr(event.assoc.requestor.primitive, "called_ae_title", "?"),
                "peer": event.assoc.requestor.address,
            },
        )

    def on_find(self, event: evt.Event) -> Iterator[tuple[int, Dataset | None]]:
        """EVT_C_FIND: the matching items, one pending response each, then success."""
        started = time.perf_counter()
        calling = event.assoc.requestor.ae_title
        self._count(queries=1)
        outcome: dict[str, Any] = {"action": "c_find", "calling_ae": calling}
        try:
            try:
                q = query.parse(event.identifier)
            except InvalidQuery as exc:
                outcome.update(status="invalid", reason=str(exc))
                yield INVALID, None
                return
            except Exception as exc:  # the identifier did not decode at all
                outcome.update(status="invalid", reason=f"undecodable ({type(exc).__name__})")
                yield INVALID, None
                return
            outcome["keys"] = q.keywords()
            outcome.update(read=0, matches=0, status="abandoned")  # until it ends otherwise
            yield from self._answers(q, event, outcome)
        finally:
            outcome["ms"] = round((time.perf_counter() - started) * 1000, 1)
            level = (
                logging.INFO if outcome.get("status") in ("ok", "cancelled") else logging.WARNING
            )
            log.log(level, "worklist query", extra=outcome)

    def _answers(
        self, q: query.Query, event: evt.Event, outcome: dict[str, Any]
    ) -> Iterator[tuple[int, Dataset | None]]:
        batches = self.db.rows(q)
        requestor = event.assoc.requestor
        audited = False

        def audit_row() -> bool:
            """The audit row, before the first item goes out (no row, no data)."""
            try:
                self.db.audit(
                    f"dicom:{requestor.ae_title}", q.masked(),
                    f"{requestor.address}:{requestor.port}", "shown",
                )  # fmt: skip
            except Exception as exc:
                self._count(failures=1)
                outcome.update(status="audit", error=f"{type(exc).__name__}: {exc}"[:200])
                return False
            return True

        try:
            while True:
                try:
                    batch = next(batches, None)
                except Exception as exc:  # no database, a timeout, a lost connection
                    self._count(failures=1)
                    outcome.update(status="database", error=f"{type(exc).__name__}: {exc}"[:200])
                    yield UNABLE, None
                    return
                if batch is None:
                    break
                outcome["read"] += len(batch)
                for row in batch:
                    if not items.servable(row["accession_no"]):
                        continue
                    try:
                        item = items.item(row, self.stations, q.wanted)
                        if not query.matches(q, item):
                            continue
                        answer = query.response(q, item)
                    except Exception:
                        self._count(failures=1)
                        log.exception(
                            "worklist item failed",
                            extra={"action": "item_failed", "accessionNo": row["accession_no"]},
                        )
                        outcome["status"] = "item_failed"
                        yield BROKEN, None
                        return
                    if event.is_cancelled:
                        outcome["status"] = "cancelled"
                        yield CANCEL, None
                        return
                    if not audited:
                        if not audit_row():
                            yield UNABLE, None
                            return
                        audited = True
                    outcome["matches"] += 1
                    yield PENDING, answer
            outcome["status"] = "ok"
        finally:
            batches.close()  # the cursor, whoever stops first


def run(settings: Settings) -> int:
    """Serve until SIGTERM or SIGINT; 0 after a clean stop."""
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    # query.parse checks every key itself; pydicom's own warnings about a peer's values
    # would quote them (and print them raw on stderr)
    pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    database = Database(settings.worklist_dsn, settings.worklist_query_timeout)
    scp = Worklist(settings, database)
    try:
        try:
            host, port = scp.start()
        except OSError as exc:  # the port is taken, the address is not this machine's
            log.error(
                "worklist cannot listen",
                extra={"action": "listen_failed", "host": settings.worklist_host,
                       "port": settings.worklist_port, "error": str(exc)},
            )  # fmt: skip
            return 2
        log.info(
            "worklist listening",
            extra={
                "action": "listening",
                "host": host,
                "port": port,
                "ae_title": settings.worklist_ae,
                "calling_aes": list(settings.worklist_calling_aes) or "any",
            },
        )
        while not stop.wait(1.0):
            pass
        log.info("worklist stopping", extra={"action": "stopping"})
        scp.stop(grace=settings.shutdown_grace)
    finally:
        database.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info(
        "worklist stopped",
        extra={"action": "stopped", "queries": scp.queries, "failures": scp.failures},
    )
    return 0
