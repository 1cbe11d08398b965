"""The capture spool: a durable local queue for batches a clew server did not take.

A client of a server posts each capture batch under a batch id made before its first attempt.
When the server does not answer (it is being deployed, restarted, or is out of reach) or
answers that it is unavailable, the batch is written here instead of being lost: one Arrow IPC
file per batch, named by its batch id, holding the rows exactly as they were to be posted and
the batch id, model version and dropped count in its schema metadata, readable by the user
only (directory 0700, files 0600). Each file is written to a temporary name, fsynced and
renamed, so a crash leaves a whole batch or none.

A ``SpoolSender`` thread re-sends the files, oldest first, under their original batch ids
until the server takes them: the server records a batch id once, so a batch that arrived
before its answer was lost is acknowledged again, never stored twice, and signed once. Batches
that arrive while older ones wait are spooled behind them. A new process with the same spool
directory delivers what an earlier one left. The spool is bounded in bytes and batches; a
batch that does not fit is dropped and counted. The directory is ``CLEW_CAPTURE_SPOOL``, or
``$XDG_STATE_HOME/clew/capture-spool`` (``~/.local/state/...``), with one subdirectory per
server address.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from clew.client.capture_queue import Backlog
from clew.domain.blobs import fsync_directory
from clew.domain.captures import CaptureTarget
from clew.errors import ClewError, StoreBusyError, StoreUnavailableError

SPOOL_ENV = "CLEW_CAPTURE_SPOOL"
HEADER_KEY = b"clew.capture.spool"
SUFFIX = ".arrow"
SET_ASIDE = ".refused"
MAX_BYTES = 1024 * 1024 * 1024
MAX_BATCHES = 10_000
RETRY_SECONDS = 15.0
FIRST_RETRY_SECONDS = 0.5
STALE_TEMP_SECONDS = 3600.0
LATER_STATUSES = {408, 429}  # besides 5xx: answers that say "not now", not "never"

log = logging.getLogger("clew.capture")


@dataclass(frozen=True)
class SpoolSettings:
    directory: Path | None = None
    max_bytes: int = MAX_BYTES
    max_batches: int = MAX_BATCHES
    retry_seconds: float = RETRY_SECONDS


@dataclass(frozen=True)
class SpooledBatch:
    """One batch waiting in the spool: where it goes and how much it holds."""

    path: Path
    batch_id: str
    target: CaptureTarget
    dropped: int
    rows: int
    size: int


def default_directory() -> Path:
    """``CLEW_CAPTURE_SPOOL``, else the user's state directory (it must outlive a reboot,
    which a cache or /tmp need not)."""
    configured = os.environ.get(SPOOL_ENV)
    if configured:
        return Path(configured).expanduser()
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "clew" / "capture-spool"


def open_spool(server: str, settings: SpoolSettings | None = None) -> CaptureSpool:
    """The spool of the server at ``server`` (its base URL) under the configured directory."""
    settings = settings or SpoolSettings()
    root = settings.directory or default_directory()
    return CaptureSpool(server_directory(root, server), server, settings)


def server_directory(root: Path, base_url: str) -> Path:
    """The spool of one server: batches must go back to the server they were made for."""
    readable = re.sub(r"[^A-Za-z0-9.-]+", "_", base_url.split("://", 1)[-1]).strip("_")
    digest = hashlib.sha256(base_url.encode()).hexdigest()[:12]
    return root / f"{readable[:60]}-{digest}"


def undelivered(error: Exception) -> bool:
    """True when ``error`` means the server did not take the batch now but may later (no
    answer, or a 5xx/408/429); False when it refused the batch itself (another 4xx)."""
    if isinstance(error, StoreBusyError | StoreUnavailableError):
        return True
    status = getattr(error, "http_status", None)
    return (
        isinstance(error, ClewError)
        and isinstance(status, int)
        and (status >= 500 or status in LATER_STATUSES)
    )


class CaptureSpool:
    """The files of one server's spool directory, bounded in bytes and batches."""

    def __init__(self, directory: Path, server: str, settings: SpoolSettings) -> None:
        self.directory = directory
        self.server = server
        self.settings = settings
        self._lock = threading.Lock()
        self._known: dict[str, SpooledBatch] = {}

    def put(self, target: CaptureTarget, batch_id: str, table: pa.Table, dropped: int) -> bool:
        """Keep one batch durably; False (nothing written) when the spool has no room.

        Raises ``ClewError`` naming the directory when it cannot be written at all."""
        header = {
            "server": self.server,
            "batch": batch_id,
            "target": asdict(target),
            "dropped": dropped,
            "rows": table.num_rows,
        }
        metadata = {**(table.schema.metadata or {}), HEADER_KEY: json.dumps(header).encode()}
        table = table.replace_schema_metadata(metadata)
        with self._lock:
            waiting = self._scan()
            if len(waiting) >= self.settings.max_batches:
                return False
            used = sum(batch.size for batch in waiting)
            final = self.directory / f"{batch_id}{SUFFIX}"
            try:
                self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                size = _write_durably(final, table)
                if used + size > self.settings.max_bytes:
                    final.unlink()
                    fsync_directory(self.directory)
                    return False
            except OSError as error:
                raise ClewError(
                    f"could not write capture batch {batch_id} to the capture spool "
                    f"{self.directory} ({error}); make that directory writable, or point "
                    f"{SPOOL_ENV} at one that is."
                ) from error
            self._known[final.name] = _entry(final, header, size)
        return True

    def waiting(self) -> list[SpooledBatch]:
        """The batches waiting, oldest first (batch ids are time-ordered)."""
        with self._lock:
            return self._scan()

    def read(self, batch: SpooledBatch) -> pa.Table:
        """The rows to post again, with the schema metadata they were first posted with."""
        with pa.OSFile(str(batch.path)) as source:
            table = pa.ipc.open_file(source).read_all()
        metadata = dict(table.schema.metadata or {})
        metadata.pop(HEADER_KEY, None)
        return table.replace_schema_metadata(metadata or None)

    def remove(self, batch: SpooledBatch) -> None:
        batch.path.unlink(missing_ok=True)
        with self._lock:
            self._known.pop(batch.path.name, None)

    def set_aside(self, batch: SpooledBatch) -> Path:
        """Keep a batch the server refused out of the queue, for an operator to look at."""
        aside = batch.path.with_suffix(SET_ASIDE)
        os.replace(batch.path, aside)
        with self._lock:
            self._known.pop(batch.path.name, None)
        return aside

    def _scan(self) -> list[SpooledBatch]:
        """The directory's batch files (another process may share it), read once each."""
        try:
            names = sorted(entry.name for entry in os.scandir(self.directory))
        except OSError:  # none yet, or not a readable directory: ``put`` says which
            return []
        found = []
        for name in names:
            path = self.directory / name
            if name.endswith(SUFFIX):
                batch = self._known.get(name) or _read_entry(path)
                if batch is not None:
                    self._known[name] = batch
                    found.append(batch)
            elif name.endswith(".tmp"):
                _remove_if_stale(path)
        for gone in set(self._known) - set(names):
            del self._known[gone]
        return found


def _write_durably(final: Path, table: pa.Table) -> int:
    """Write ``table`` as an Arrow IPC file at ``final`` all or nothing, readable by this user
    only (it holds prediction inputs and outputs); its size."""
    temp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    try:
        descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(descriptor, "wb") as handle:
            options = pa.ipc.IpcWriteOptions(compression="zstd")
            with pa.ipc.new_file(handle, table.schema, options=options) as writer:
                writer.write_table(table)
            handle.flush()
            os.fsync(handle.fileno())
            size = handle.tell()
        os.replace(temp, final)
    finally:
        temp.unlink(missing_ok=True)
    fsync_directory(final.parent)
    return size


def _read_entry(path: Path) -> SpooledBatch | None:
    """A spooled file's header, or None: when its content cannot be read (the file is set
    aside), or it cannot be opened now (gone, or a passing I/O error: tried again later)."""
    try:
        with pa.OSFile(str(path)) as source:
            metadata = pa.ipc.open_file(source).schema.metadata or {}
        header = json.loads(metadata[HEADER_KEY])
        return _entry(path, header, path.stat().st_size)
    except (pa.ArrowInvalid, KeyError, ValueError, TypeError) as error:
        aside = path.with_suffix(SET_ASIDE)
        os.replace(path, aside)
        log.error(
            "clew: capture spool file %s cannot be read (%s); moved it to %s. Its predictions "
            "cannot be re-sent; keep the file for the audit trail.",
            path,
            error,
            aside,
        )
        return None
    except OSError:  # delivered by another process sharing the spool, or not readable now
        return None


def _entry(path: Path, header: dict[str, Any], size: int) -> SpooledBatch:
    return SpooledBatch(
        path,
        str(header["batch"]),
        CaptureTarget(**header["target"]),
        int(header["dropped"]),
        int(header["rows"]),
        size,
    )


def _remove_if_stale(path: Path) -> None:
    """A temporary file left by a process that died mid-write (a live one renames it soon)."""
    try:
        if time.time() - path.stat().st_mtime > STALE_TEMP_SECONDS:
            path.unlink()
    except FileNotFoundError:
        return


Send = Callable[[CaptureTarget, str, pa.Table, int], object]


class SpoolSender:
    """Re-sends spooled batches from a background thread until the server takes them.

    ``send`` posts one batch (raising as the server's client does). After a failed attempt
    the thread waits 0.5 s, doubling up to ``retry_seconds``; ``drain`` wakes it at once.
    """

    def __init__(self, spool: CaptureSpool, send: Send) -> None:
        self.spool = spool
        self._send = send
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._wake = False
        self._delivered_rows = 0
        self._delivered_batches = 0
        self._failed_rows = 0
        self._last_error: str | None = None
        self._outage_batches = 0
        self._stopped = False

    def spooled(self, batch_id: str, rows: int, error: Exception | None) -> None:
        """Note a batch just spooled (``error``: why it was not delivered) and start sending."""
        with self._cond:
            first = self._outage_batches == 0
            self._outage_batches += 1
            if error is not None:
                self._last_error = f"{type(error).__name__}: {error}"
        if first:
            log.warning(
                "clew: capture batch %s (%s rows) was not taken by the clew server at %s "
                "(%s); spooling capture batches to %s and re-sending them until it takes them.",
                batch_id,
                rows,
                self.spool.server,
                self._last_error or "older batches are still waiting",
                self.spool.directory,
            )
        self.start()

    def start(self) -> None:
        """Run the sender if batches wait (also those an earlier process left). The thread
        decides to end under the same lock, so a batch spooled meanwhile is never stranded."""
        with self._cond:
            if self._stopped or self._thread is not None or not self.spool.waiting():
                return
            self._thread = threading.Thread(
                target=self._run, name="clew-capture-spool", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Send nothing more (the client is closing its connection); what waits stays, and
        a warning says where."""
        with self._cond:
            if self._stopped:
                return
            self._stopped = True
            self._wake = True
            self._cond.notify_all()
        backlog = self.backlog()
        if backlog.pending_batches:
            log.warning(
                "clew: %s predictions in %s batches wait in the capture spool %s; a clew "
                "client of %s using this spool directory sends them when it next runs.",
                backlog.pending,
                backlog.pending_batches,
                self.spool.directory,
                self.spool.server,
            )

    def drain(self, timeout: float | None) -> bool:
        """Re-send now and wait until the spool is empty; False when ``timeout`` ran out."""
        self.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._wake = True
            self._cond.notify_all()
            while self.spool.waiting():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                if self._thread is None:
                    return False
                self._cond.wait(0.5 if left is None else min(left, 0.5))
        return True

    def backlog(self) -> Backlog:
        waiting = self.spool.waiting()
        with self._cond:
            return Backlog(
                pending=sum(batch.rows for batch in waiting),
                pending_batches=len(waiting),
                delivered=self._delivered_rows,
                delivered_batches=self._delivered_batches,
                failed=self._failed_rows,
                last_error=self._last_error,
            )

    def _run(self) -> None:
        try:
            self._send_until_empty()
        finally:  # also when it failed: the next spooled batch starts a sender again
            with self._cond:
                if self._thread is threading.current_thread():
                    self._thread = None
                self._cond.notify_all()

    def _send_until_empty(self) -> None:
        pause = FIRST_RETRY_SECONDS
        while True:
            with self._cond:
                waiting = [] if self._stopped else self.spool.waiting()
                if not waiting:
                    self._thread = None
                    if not self._stopped:
                        self._drained()
                    return
            if self._deliver(waiting[0]):
                pause = FIRST_RETRY_SECONDS
                continue
            with self._cond:
                self._cond.wait_for(lambda: self._wake, pause)
                self._wake = False
            pause = min(pause * 2, self.spool.settings.retry_seconds)

    def _deliver(self, batch: SpooledBatch) -> bool:
        """Post one spooled batch; True when it left the spool (delivered or set aside)."""
        try:
            table = self.spool.read(batch)
            self._send(batch.target, batch.batch_id, table, batch.dropped)
        except FileNotFoundError:
            return True  # another process sharing the spool delivered it
        except Exception as error:  # capture must never break the process: count it
            if undelivered(error) or self._stopped:  # stopped: the connection was closed
                with self._cond:
                    self._last_error = f"{type(error).__name__}: {error}"
                return False
            self._refused(batch, error)
            return True
        self.spool.remove(batch)
        with self._cond:
            self._delivered_rows += batch.rows
            self._delivered_batches += 1
            self._cond.notify_all()
        return True

    def _refused(self, batch: SpooledBatch, error: Exception) -> None:
        aside = self.spool.set_aside(batch)
        with self._cond:
            self._failed_rows += batch.rows
            self._last_error = f"{type(error).__name__}: {error}"
            self._cond.notify_all()
        log.error(
            "clew: the clew server at %s refused spooled capture batch %s (%s rows): %s; "
            "moved it to %s and counted its rows as failed.",
            self.spool.server,
            batch.batch_id,
            batch.rows,
            error,
            aside,
        )

    def _drained(self) -> None:
        """Say so once the spool is empty (called holding ``_cond``)."""
        batches, self._outage_batches = self._outage_batches, 0
        delivered = self._delivered_rows
        log.warning(
            "clew: the capture spool %s has drained: every spooled batch was delivered to %s "
            "(%s spooled this time; %s rows re-sent by this process in all).",
            self.spool.directory,
            self.spool.server,
            batches,
            delivered,
        )
