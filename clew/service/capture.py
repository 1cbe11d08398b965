"""Prediction capture: batching, Merkle-signing and writing predictions; finding them again.

Predictions are queued in memory (bounded: what does not fit is dropped and counted, never
waited for) and a background thread turns each batch into Arrow columns, hashes every row
into a 16-ary Merkle tree, signs the root with the store's Ed25519 key, writes Parquet plus
the tree, and records the batch (with an audit entry) in one transaction. Nothing the writer
does can raise into the caller's ``predict``; failures are counted in ``stats()``.

A prediction id is ``<call ULID>.<row>``: one id per predict call, so ids cost nothing per row,
and ``capture_batches.first_call/last_call`` find the one file that holds a given call.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy.exc
from sqlalchemy import Connection, delete, select

from clew.domain import digests, ids, leaves, merkle, refs
from clew.errors import (
    ConflictError,
    IntegrityError,
    InvalidInputError,
    NotFoundError,
    StoreBusyError,
    StoreUnavailableError,
)
from clew.service import audit, input_guard, signing
from clew.service.copy_arena import CopyArena
from clew.service.input_guard import InputGuard
from clew.store import captures, schema
from clew.store.location import Store

HEADER_KEY = b"clew.capture.batch"
SIGNATURE_KEY = b"clew.capture.signature"
BATCH_KIND = "clew.capture.batch/v1"
CHANGED_KEY = b"clew.capture.inputs_changed"

log = logging.getLogger("clew.capture")


@dataclass(frozen=True)
class CaptureTarget:
    """The model version (and method) a batch of predictions belongs to."""

    version_id: str
    name: str
    version: int
    digest: str
    method: str = "predict"


@dataclass(slots=True)
class Call:
    """One predict call: its id, time, outputs and the sampled inputs (``rows`` of them).

    ``predict`` queues its id as an ``ids.PendingId``; the writer thread writes it out (see
    ``CaptureService._write``) before any ``BatchWriter`` sees the call.
    """

    call_id: str | ids.PendingId
    time_ms: int
    rows: int
    outputs: Any
    inputs: Any | None
    sampled: np.ndarray | None = None
    guard: InputGuard | None = None
    inputs_changed: bool = False

    def check_inputs(self) -> bool:
        """Replace guarded inputs with the writer's own copy, or withhold them if the caller
        changed them after predict; True when it had.

        The copy is checked, not the caller's array: a change made after the check but before
        the batch was built would otherwise be signed unnoticed.
        """
        if self.guard is None:
            return False
        copied, guard, self.guard = self.inputs.copy(), self.guard, None
        if input_guard.unchanged(guard, copied):
            self.inputs = copied
            return False
        self.inputs, self.sampled, self.inputs_changed = None, None, True
        return True


def changed_call_ids(calls: Sequence[Call]) -> list[str]:
    """The ids of the calls whose inputs were withheld, for the batch header (``CHANGED_KEY``)."""
    return [str(call.call_id) for call in calls if call.inputs_changed]


@dataclass
class CaptureSettings:
    batch_rows: int = 1_000_000
    flush_seconds: float = 1.0
    max_queued_rows: int = 4_000_000


@dataclass
class CaptureStats:
    submitted: int = 0
    captured: int = 0
    dropped: int = 0
    failed: int = 0
    batches: int = 0
    queued: int = 0
    pending: int = 0
    pending_batches: int = 0
    inputs_changed: int = 0
    last_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "submitted": self.submitted,
            "captured": self.captured,
            "dropped": self.dropped,
            "failed": self.failed,
            "batches": self.batches,
            "queued": self.queued,
            "pending": self.pending,
            "pending_batches": self.pending_batches,
            "inputs_changed": self.inputs_changed,
            "last_error": self.last_error,
        }


@dataclass(frozen=True)
class Undelivered:
    """Rows of a batch a writer did not deliver now: kept to send later, or with no room."""

    spooled: int = 0
    dropped: int = 0


@dataclass(frozen=True)
class Backlog:
    """What a spooling writer holds for later delivery (``pending``, batches waiting now, an
    earlier process's included) and what it delivered or had refused from there since."""

    pending: int = 0
    pending_batches: int = 0
    delivered: int = 0
    delivered_batches: int = 0
    failed: int = 0
    last_error: str | None = None


class BatchWriter(Protocol):
    """Where the writer thread hands each batch: the store itself, or a clew server."""

    def write(self, target: CaptureTarget, calls: list[Call], dropped: int) -> Undelivered | None:
        """Deliver the batch; None, or what could not be delivered now (rows it kept for
        later, rows it had no room for)."""


@runtime_checkable
class SpoolingWriter(Protocol):
    """A writer that keeps undelivered batches to send later (a client of a server)."""

    def backlog(self) -> Backlog: ...

    def drain(self, timeout: float | None) -> bool:
        """Send what is kept now; True when nothing is left within ``timeout``."""

    def close(self) -> None:
        """Stop sending: what is still kept waits for the next process."""


class StoreWriter:
    """Signs and writes batches into a store opened in this process."""

    def __init__(self, store: Store, actor: str) -> None:
        self.store = store
        self.actor = actor
        self._signer: signing.Signer | None = None

    def write(self, target: CaptureTarget, calls: list[Call], dropped: int) -> None:
        self._signer = signing.current_signer(self.store, self._signer)
        write_batch(self.store, self._signer, self.actor, target, calls, dropped)


class CaptureService:
    """The bounded queue and its writer thread, feeding one ``BatchWriter``.

    A writer that raises ``StoreBusyError`` or ``StoreUnavailableError`` could not deliver
    the batch and kept nothing: its rows count as dropped; any other error counts them as
    failed. A spooling writer (a client of a server) keeps what the server did not take
    (``pending`` until it is delivered) and drops only what its spool has no room for.
    """

    def __init__(self, writer: BatchWriter, settings: CaptureSettings | None = None) -> None:
        self.writer = writer
        self.settings = settings or CaptureSettings()
        self._queue: deque[tuple[CaptureTarget, Call]] = deque()
        self._lock = threading.Lock()  # entered directly on predict's path: cheaper than _cond
        self._cond = threading.Condition(self._lock)
        self._stats = CaptureStats()
        self._dropped_since: dict[CaptureTarget, int] = {}
        self._oldest = 0.0
        self._flush_requested = False
        self._handled = 0
        self._enqueued = 0
        self._writing = 0  # rows taken from the queue and not yet delivered, kept or counted
        self._closed = False
        self._thread: threading.Thread | None = None
        self._thread_started = False  # reset in a forked child, which has no writer thread
        self.copying_versions: set[str] = set()  # whose inputs predict must copy, not guard
        self.arena = CopyArena()
        _services.add(self)

    # --- the caller's side: never blocks on I/O, never raises -----------------------------

    def submit(self, target: CaptureTarget, call: Call) -> bool:
        rows, stats = call.rows, self._stats
        with self._lock:
            stats.submitted += rows
            queued = stats.queued + rows
            if self._closed or queued > self.settings.max_queued_rows:
                stats.dropped += rows
                self._dropped_since[target] = self._dropped_since.get(target, 0) + rows
                return False
            if not self._queue:
                self._oldest = time.monotonic()
            self._queue.append((target, call))
            stats.queued = queued
            self._enqueued += 1
            if not self._thread_started:
                self._start_thread()
            if queued >= self.settings.batch_rows or self.arena.short():
                self._cond.notify_all()
        return True

    def record_failure(self, rows: int, error: Exception) -> None:
        """Count rows that could not even be queued (e.g. inputs that are not tabular)."""
        with self._cond:
            self._stats.submitted += rows
            self._stats.failed += rows
            self._stats.last_error = f"{type(error).__name__}: {error}"

    def stats(self) -> CaptureStats:
        """Counts so far; rows still being written count as queued, kept ones as pending."""
        backlog = self.writer.backlog() if isinstance(self.writer, SpoolingWriter) else Backlog()
        with self._cond:
            stats = CaptureStats(**self._stats.to_dict())
            stats.queued += self._writing
        stats.captured += backlog.delivered
        stats.batches += backlog.delivered_batches
        stats.failed += backlog.failed
        stats.pending, stats.pending_batches = backlog.pending, backlog.pending_batches
        stats.last_error = backlog.last_error or stats.last_error
        return stats

    def flush(self, timeout: float | None = None, *, drain: bool = True) -> bool:
        """Write everything queued so far and, with ``drain``, deliver what a spooling writer
        kept; True when all of it was done within ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._flush_queue(timeout):
            return False
        if not drain or not isinstance(self.writer, SpoolingWriter):
            return True
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        return self.writer.drain(left)

    def _flush_queue(self, timeout: float | None) -> bool:
        with self._cond:
            goal = self._enqueued
            if self._thread is None or not self._thread.is_alive():
                items = self._take_all()
            else:
                self._flush_requested = True
                self._cond.notify_all()
                return self._cond.wait_for(lambda: self._handled >= goal, timeout)
        self._write(items)
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Flush, then stop the writer; later submissions are counted as dropped. Batches a
        spooling writer still keeps stay in its spool for the next process to deliver."""
        self.flush(timeout, drain=False)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        if isinstance(self.writer, SpoolingWriter):
            self.writer.close()

    # --- the writer thread -------------------------------------------------------------

    def _start_thread(self) -> None:
        """Start the writer: on the first call, after one ended, and in a forked child (see
        ``_forget_thread``); a flag, because ``is_alive`` costs ~1 µs on predict's path."""
        self._thread_started = True  # before start(): a writer that ends at once clears it
        try:
            self._thread = threading.Thread(
                target=self._run, name="clew-capture-writer", daemon=True
            )
            self._thread.start()
        except BaseException:
            self._thread_started = False
            raise

    def _forget_thread(self) -> None:
        """In a forked child: no writer runs, the parent's may have held the locks, and the
        calls still queued are the parent's to write, not the child's."""
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._queue.clear()
        self._stats.queued = 0
        self._handled = self._enqueued = self._writing = 0
        self._flush_requested = False
        self._thread_started = False
        self.arena = CopyArena()

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(self._awake, timeout=self.settings.flush_seconds)
                    if self._closed and not self._queue:
                        return
                    items = self._take_all() if self._ready() else []
                self.arena.refill()
                if items:
                    self._write(items)
        finally:  # whatever ended it, the next submit starts a writer again
            self._thread_started = False

    def _awake(self) -> bool:
        return self._ready() or self.arena.short()

    def _ready(self) -> bool:
        if not self._queue:
            return self._closed
        age = time.monotonic() - self._oldest
        return (
            self._flush_requested
            or self._closed
            or self._stats.queued >= self.settings.batch_rows
            or age >= self.settings.flush_seconds
        )

    def _take_all(self) -> list[tuple[CaptureTarget, Call]]:
        items = list(self._queue)
        self._queue.clear()
        self._writing += self._stats.queued
        self._stats.queued = 0
        self._flush_requested = False
        return items

    def _write(self, items: list[tuple[CaptureTarget, Call]]) -> None:
        for target, call in items:
            call.call_id = str(call.call_id)
            if call.check_inputs():
                self._inputs_changed(target, call)
        for target, calls in _group(items, self.settings.batch_rows):
            rows = sum(call.rows for call in calls)
            with self._cond:
                dropped = self._dropped_since.pop(target, 0)
            try:
                undelivered = self.writer.write(target, calls, dropped) or Undelivered()
            except (StoreBusyError, StoreUnavailableError) as error:
                with self._cond:
                    self._stats.dropped += rows
                    self._stats.last_error = f"{type(error).__name__}: {error}"
            except Exception as error:  # capture must never break prediction: count it
                with self._cond:
                    self._stats.failed += rows
                    self._stats.last_error = f"{type(error).__name__}: {error}"
            else:
                delivered = rows - undelivered.spooled - undelivered.dropped
                with self._cond:
                    self._stats.captured += delivered
                    self._stats.dropped += undelivered.dropped
                    self._stats.batches += int(delivered > 0)
            finally:
                with self._cond:
                    self._writing -= rows
        with self._cond:
            self._handled += len(items)
            self._cond.notify_all()

    def _inputs_changed(self, target: CaptureTarget, call: Call) -> None:
        """Count the withheld inputs, warn once per model, and copy its inputs from now on."""
        with self._cond:
            self._stats.inputs_changed += call.rows
            first = target.version_id not in self.copying_versions
            self.copying_versions.add(target.version_id)
        if first:
            log.warning(
                "clew: an input array passed to %s/%s %s() was changed after the call "
                "returned, so the inputs of call %s were not captured (its batch header lists "
                "it); this model now copies its inputs. Set copy_inputs = True on the loaded "
                "model to copy from the first call.",
                target.name,
                target.version,
                target.method,
                call.call_id,
            )


_services: weakref.WeakSet[CaptureService] = weakref.WeakSet()


def _forget_threads() -> None:
    """In a forked child: the services' writer threads stayed in the parent."""
    for service in list(_services):
        service._forget_thread()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_threads)


def _group(
    items: list[tuple[CaptureTarget, Call]], batch_rows: int
) -> Iterable[tuple[CaptureTarget, list[Call]]]:
    """Calls per target, in order, cut into batches of at most ``batch_rows`` (calls stay whole)."""
    by_target: dict[CaptureTarget, list[Call]] = {}
    for target, call in items:
        by_target.setdefault(target, []).append(call)
    for target, calls in by_target.items():
        chunk: list[Call] = []
        rows = 0
        for call in calls:
            if chunk and rows + call.rows > batch_rows:
                yield target, chunk
                chunk, rows = [], 0
            chunk.append(call)
            rows += call.rows
        if chunk:
            yield target, chunk


# --- one batch: columns, tree, signature, files, record ------------------------------------


def write_batch(
    store: Store,
    signer: signing.Signer,
    actor: str,
    target: CaptureTarget,
    calls: Sequence[Call],
    dropped: int = 0,
) -> str:
    """Write one signed batch of in-process calls and record it; returns the batch id."""
    table = build_table(target, calls)
    call_ids = [call.call_id for call in calls]

    def hash_leaves() -> bytes:
        header = leaves.header_bytes_for_calls(
            call_ids,
            np.array([call.rows for call in calls]),
            np.array([call.time_ms for call in calls]),
        )
        return leaves.leaf_hashes(table, header, leaves.LEAF_ROWS)

    changed = tuple(changed_call_ids(calls))
    sealed = SealedBatch(
        ids.new_id(), target, table, hash_leaves, leaves.LEAF_ROWS, dropped, changed
    )
    # threads may queue a later call id first, so the range comes from the ids themselves
    return write_sealed(store, signer, actor, sealed, min(call_ids), max(call_ids))


@dataclass(frozen=True)
class SealedBatch:
    """A batch's rows and how to hash them (``leaf_rows`` rows per leaf), ready for a tree,
    a signature and files. Hashing is deferred so that it runs while the rows are encoded."""

    batch_id: str
    target: CaptureTarget
    table: pa.Table
    hash_leaves: Callable[[], bytes]
    leaf_rows: int
    dropped: int = 0
    inputs_changed: tuple[str, ...] = ()  # calls whose inputs were withheld (``InputGuard``)
    # A client-chosen batch id may be posted twice at once (a retry through another replica);
    # each attempt then writes files of its own name, so the losing attempt can never overwrite
    # the files the recorded row names (its own are orphans ``clew gc`` sweeps).
    file_name: str | None = None


def write_sealed(
    store: Store,
    signer: signing.Signer,
    actor: str,
    batch: SealedBatch,
    first_call: str,
    last_call: str,
) -> str:
    """Hash the rows, build the tree, sign its root and write the files, then record the batch
    (and audit it).

    The rows are encoded to Parquet on a second thread while this one hashes them (see
    ``CaptureFiles.write_sealing``). The database row is inserted only after both files are
    complete, and readers only open files a row names, so no reader sees a batch half-written,
    on disk or in an object store. Callers pass a current signer (``signing.current_signer``);
    one whose key was rotated out meanwhile is refused when the row is recorded.
    """
    target, count = batch.target, batch.table.num_rows
    header: dict[str, Any] = {
        "kind": BATCH_KIND,
        "batch": batch.batch_id,
        "model": target.name,
        "version": target.version,
        "model_version_id": target.version_id,
        "model_digest": target.digest,
        "method": target.method,
        "count": count,
        "leaf_rows": batch.leaf_rows,
        "first_call": first_call,
        "last_call": last_call,
        "key_id": signer.key_id,
    }
    if batch.inputs_changed:
        header["inputs_changed"] = sorted(batch.inputs_changed)

    signature = ""

    def seal() -> tuple[list[bytes], dict[bytes, bytes]]:
        nonlocal signature
        levels = merkle.build_levels(batch.hash_leaves())
        header["merkle_root"] = digests.PREFIX + levels[-1].hex()
        signature = signer.sign(digests.canonical_json(header))
        return levels, {
            HEADER_KEY: digests.canonical_json(header),
            SIGNATURE_KEY: signature.encode(),
        }

    table = batch.table.append_column("leaf", _leaf_column(count, batch.leaf_rows))
    first_ms = pc.min(table.column("time")).value
    date = dt.datetime.fromtimestamp(first_ms / 1000, tz=dt.UTC).date().isoformat()
    name = batch.file_name or batch.batch_id
    relative = captures.batch_relative_path(target.name, target.version, date, name)
    file_digest = store.capture_files.write_sealing(relative, table, seal)
    row = {
        "id": batch.batch_id,
        "model_version_id": target.version_id,
        "path": relative,
        "file_digest": file_digest,
        "count": count,
        "first_call": first_call,
        "last_call": last_call,
        "merkle_root": header["merkle_root"],
        "signature": signature,
        "key_id": signer.key_id,
        "dropped": batch.dropped,
        "created_ms": time.time_ns() // 1_000_000,
    }
    with store.db.write() as connection:
        signer.require_current(connection)
        connection.execute(schema.capture_batches.insert().values(**row))
        audit.stage(connection, schema.capture_batches, row)
        audit.append(connection, actor, "capture.batch", f"{target.name}/{target.version}", row)
    return batch.batch_id


# --- batches a remote client sends: sealed and signed by the server ----------------------

MAX_REMOTE_ROWS = 1_000_000
REMOTE_COLUMNS = ("prediction_id", "time", "inputs", "output")
_PREDICTION_ID = r"^[0-9A-HJKMNP-TV-Z]{26}\.(0|[1-9][0-9]{0,8})$"


@dataclass(frozen=True)
class AcceptedBatch:
    batch_id: str
    count: int
    duplicate: bool

    def to_dict(self) -> dict[str, Any]:
        return {"batch": self.batch_id, "count": self.count, "duplicate": self.duplicate}


def accept_batch(
    store: Store,
    signer: signing.Signer,
    actor: str,
    target: CaptureTarget,
    batch_id: str,
    rows: pa.Table,
    dropped: int = 0,
) -> AcceptedBatch:
    """Seal, sign and write a batch of rows a remote client predicted.

    The client sends only ids, times, inputs and outputs; the model columns come from the
    registry here, and the tree and signature are made here, so the signing key never leaves
    the server. A batch id already recorded for this version is acknowledged again without
    writing anything: a retried post never makes two batches.
    """
    if not ids.is_id(batch_id):
        raise InvalidInputError(f"batch id {batch_id!r} is not a ULID like 01J...; send a new id.")
    existing = _recorded(store, batch_id, target)
    if existing is not None:
        return existing
    table = remote_table(target, rows)
    calls = pc.utf8_slice_codeunits(table.column("prediction_id"), 0, leaves.CALL_LENGTH)
    try:  # hashed before any file is written: rows clew cannot hash leave nothing behind
        hashes = leaves.leaf_hashes(table, leaf_rows=leaves.LEAF_ROWS)
    except (pa.ArrowException, ValueError, TypeError, NotImplementedError) as error:
        raise InvalidInputError(
            f"capture batch {batch_id} has columns clew cannot hash ({error}); send numbers, "
            "text, booleans or fixed-size lists of them."
        ) from error
    changed = _changed_calls(rows.schema.metadata, table, calls, batch_id)
    sealed = SealedBatch(
        batch_id,
        target,
        table,
        lambda: hashes,
        leaves.LEAF_ROWS,
        dropped,
        changed,
        file_name=f"{batch_id}-{ids.new_id()}",
    )
    first, last = pc.min(calls).as_py(), pc.max(calls).as_py()
    try:
        write_sealed(store, signer, actor, sealed, first, last)
    except sqlalchemy.exc.IntegrityError:
        existing = _recorded(store, batch_id, target)
        if existing is None:
            raise
        return existing
    return AcceptedBatch(batch_id, table.num_rows, duplicate=False)


def _changed_calls(
    metadata: dict[bytes, bytes] | None, table: pa.Table, calls: pa.ChunkedArray, batch_id: str
) -> tuple[str, ...]:
    """The calls a client withheld changed inputs of (``CHANGED_KEY`` in the schema metadata):
    a JSON list of call ids of this batch (``calls`` names each row's) with null inputs."""
    text = (metadata or {}).get(CHANGED_KEY)
    if text is None:
        return ()
    try:
        changed = json.loads(text)
    except ValueError:
        changed = None
    if (
        not isinstance(changed, list)
        or not all(isinstance(call, str) for call in changed)
        or not set(changed) <= set(pc.unique(calls).to_pylist())
    ):
        raise InvalidInputError(
            f"capture batch {batch_id} metadata {CHANGED_KEY.decode()} must be a JSON list of "
            "call ids of its own rows."
        )
    if changed and "inputs" in table.column_names:
        sent = pc.filter(table.column("inputs"), pc.is_in(calls, pa.array(changed, pa.string())))
        if sent.null_count != len(sent):
            raise InvalidInputError(
                f"capture batch {batch_id} metadata {CHANGED_KEY.decode()} lists calls whose "
                "inputs it sends; send their rows with null inputs."
            )
    return tuple(sorted(set(changed)))


def _recorded(store: Store, batch_id: str, target: CaptureTarget) -> AcceptedBatch | None:
    table = schema.capture_batches
    with store.db.read() as connection:
        row = connection.execute(
            select(table.c.model_version_id, table.c.count).where(table.c.id == batch_id)
        ).first()
    if row is None:
        return None
    if row.model_version_id != target.version_id:
        raise ConflictError(
            f"capture batch {batch_id} was already recorded for another model version; send "
            "each batch with a new id."
        )
    return AcceptedBatch(batch_id, int(row.count), duplicate=True)


def remote_table(target: CaptureTarget, rows: pa.Table) -> pa.Table:
    """A client's rows checked and completed into the stored column layout.

    Columns must be ``prediction_id`` (``<ULID>.<row>``, unique), ``time`` (a timestamp),
    ``output`` and optionally ``inputs`` (a struct); anything else is refused by name.
    """
    names = rows.column_names
    unknown = [name for name in names if name not in REMOTE_COLUMNS]
    missing = [name for name in ("prediction_id", "time", "output") if name not in names]
    if unknown or missing or len(set(names)) != len(names):
        raise InvalidInputError(
            f"a capture batch has columns prediction_id, time, output and optionally inputs; "
            f"got {names}."
        )
    unions = [name for name in names if _has_union(rows.schema.field(name).type)]
    if unions:
        raise InvalidInputError(
            f"column(s) {unions} of a capture batch use a union type, which capture files "
            "cannot store; send plain or struct columns."
        )
    count = rows.num_rows
    if not 0 < count <= MAX_REMOTE_ROWS:
        raise InvalidInputError(
            f"a capture batch holds 1 to {MAX_REMOTE_ROWS} rows, not {count}; split it."
        )
    prediction_ids = _prediction_ids(rows.column("prediction_id"))
    times = _times(rows.column("time"))
    columns: dict[str, Any] = {
        "prediction_id": prediction_ids,
        "time": times,
        "model_name": _constant(target.name, count),
        "model_version": pa.array(np.full(count, target.version, dtype=np.int32)),
        "model_digest": _constant(target.digest, count),
    }
    if "inputs" in names:
        inputs = rows.column("inputs")
        if not pa.types.is_struct(inputs.type):
            raise InvalidInputError(
                f"inputs of a capture batch must be a struct of named fields, not {inputs.type}."
            )
        columns["inputs"] = leaves.one_array(inputs)
    columns["output"] = leaves.one_array(rows.column("output"))
    return pa.table(columns)


def _has_union(kind: pa.DataType) -> bool:
    if pa.types.is_union(kind):
        return True
    return any(_has_union(kind.field(i).type) for i in range(kind.num_fields))


def _prediction_ids(column: pa.ChunkedArray) -> pa.Array:
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise InvalidInputError(f"prediction_id must be text, not {column.type}.")
    values = leaves.one_array(pc.cast(column, pa.string()))
    if values.null_count or not pc.all(pc.match_substring_regex(values, _PREDICTION_ID)).as_py():
        raise InvalidInputError(
            "every prediction_id of a capture batch must look like <26-character ULID>.<row>."
        )
    if pc.count_distinct(values).as_py() != len(values):
        raise InvalidInputError("a capture batch repeats a prediction_id; ids must be unique.")
    return values


def _times(column: pa.ChunkedArray) -> pa.Array:
    if not pa.types.is_timestamp(column.type) or column.null_count:
        raise InvalidInputError(f"time must be a timestamp on every row, not {column.type}.")
    return leaves.one_array(pc.cast(column, pa.timestamp("ms", tz="UTC")))


def _leaf_column(count: int, leaf_rows: int) -> pa.Array:
    """Which leaf each row belongs to: how a verifier finds the rows that hash together."""
    return pa.array(np.arange(count, dtype=np.int32) // leaf_rows)


def leaf_rows_of(header: dict[str, Any]) -> int:
    """Rows per leaf as the signed header states it; headers from before grouping have one."""
    value = header.get("leaf_rows", 1)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"leaf_rows {value!r} is not a positive whole number")
    return value


def build_table(target: CaptureTarget, calls: Sequence[Call]) -> pa.Table:
    """The batch's rows as Arrow columns, built per column (no per-row Python)."""
    counts = np.array([call.rows for call in calls], dtype=np.int64)
    count = int(counts.sum())
    which = np.repeat(np.arange(len(calls), dtype=np.int32), counts)
    call_ids = pa.array([call.call_id for call in calls], pa.string()).take(pa.array(which))
    rows = np.concatenate([np.arange(call.rows, dtype=np.int64) for call in calls])
    prediction_ids = pc.binary_join_element_wise(
        call_ids, pc.cast(pa.array(rows), pa.string()), "."
    )
    times = np.repeat(np.array([call.time_ms for call in calls], dtype=np.int64), counts)
    columns: dict[str, pa.Array] = {
        "prediction_id": prediction_ids,
        "time": pa.array(times, pa.timestamp("ms", tz="UTC")),
        "model_name": _constant(target.name, count),
        "model_version": pa.array(np.full(count, target.version, dtype=np.int32)),
        "model_digest": _constant(target.digest, count),
    }
    inputs = _inputs_column(calls, count)
    if inputs is not None:
        columns["inputs"] = inputs
    columns["output"] = _outputs_column(calls)
    return pa.table(columns)


def _constant(value: str, count: int) -> pa.Array:
    return pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(count, dtype=np.int32)), pa.array([value], pa.string())
    )


def _inputs_column(calls: Sequence[Call], count: int) -> pa.Array | None:
    children = _uniform_columns(calls, count)
    if children is not None:
        return pa.StructArray.from_arrays(children, names=[f"f{j}" for j in range(len(children))])
    tables: list[pa.Table] = []
    positions: list[np.ndarray] = []
    base = 0
    for call in calls:
        if call.inputs is None:
            positions.append(np.full(call.rows, -1, dtype=np.int64))
            continue
        table = inputs_table(call.inputs)
        tables.append(table)
        local = np.full(call.rows, -1, dtype=np.int64)
        taken = np.arange(call.rows) if call.sampled is None else call.sampled
        local[taken] = base + np.arange(len(taken))
        positions.append(local)
        base += table.num_rows
    if not tables:
        return None
    combined = pa.concat_tables(tables, promote_options="permissive").combine_chunks()
    index = np.concatenate(positions)
    present = index >= 0
    if not present.all() or not np.array_equal(index, np.arange(count)):
        combined = combined.take(pa.array(index, mask=~present))
    children = [leaves.one_array(column) for column in combined.columns]
    mask = None if present.all() else pa.array(~present)
    return pa.StructArray.from_arrays(children, names=combined.column_names, mask=mask)


def _uniform_columns(calls: Sequence[Call], count: int) -> list[pa.Array] | None:
    """One array per feature when every call kept every row of a numeric array of the same
    width and dtype: the common case. Each feature is gathered straight from the calls' rows
    (one strided copy per call), so no whole-batch matrix or transposed copy is made."""
    arrays = [call.inputs for call in calls]
    if not all(
        isinstance(a, np.ndarray) and a.ndim in (1, 2) and a.dtype.kind in "biuf" for a in arrays
    ) or any(call.sampled is not None for call in calls):
        return None
    shaped = [a.reshape(-1, 1) if a.ndim == 1 else a for a in arrays]
    if len({(a.shape[1], a.dtype) for a in shaped}) != 1:
        return None
    columns = np.empty((shaped[0].shape[1], count), dtype=shaped[0].dtype)
    start = 0
    for array in shaped:
        columns[:, start : start + len(array)] = array.T
        start += len(array)
    return [pa.array(column) for column in columns]


def inputs_table(inputs: Any) -> pa.Table:
    """Model inputs as Arrow columns: DataFrame columns keep their names, arrays get f0, f1..."""
    if isinstance(inputs, pa.Table):
        return inputs
    if type(inputs).__name__ == "DataFrame" and hasattr(inputs, "columns"):
        frame = inputs.rename(columns=str)
        return pa.Table.from_pandas(frame, preserve_index=False)
    if isinstance(inputs, list) and inputs and isinstance(inputs[0], dict):
        return pa.Table.from_pylist(inputs)
    array = np.asarray(inputs)
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2:
        raise InvalidInputError(f"inputs of shape {array.shape} cannot be captured as rows.")
    columns = np.ascontiguousarray(array.T)
    return pa.table({f"f{j}": columns[j] for j in range(columns.shape[0])})


def _outputs_column(calls: Sequence[Call]) -> pa.Array:
    arrays = [np.asarray(call.outputs) for call in calls]
    if all(a.ndim == 1 for a in arrays):
        return pa.array(np.concatenate(arrays))
    if all(a.ndim == 2 for a in arrays) and len({a.shape[1] for a in arrays}) == 1:
        joined = np.concatenate(arrays)
        return pa.FixedSizeListArray.from_arrays(pa.array(joined.ravel()), joined.shape[1])
    return pa.array([json.dumps(row.tolist()) for a in arrays for row in a])


# --- finding and verifying one prediction ---------------------------------------------------


@dataclass
class Verification:
    verified: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"verified": self.verified, "reason": self.reason}


@dataclass
class CapturedPrediction:
    """One captured prediction as stored, with the evidence to check it.

    ``leaf_table`` holds every row of the prediction's Merkle leaf (``leaf_index``) in file
    order: those rows hash together, so all of them are needed to check this one.
    """

    id: str
    time_ms: int
    model: str
    version: int
    model_version_id: str
    model_digest: str
    method: str
    inputs: dict[str, Any] | None
    output: Any
    batch_id: str
    leaf_index: int
    leaf_hash: str
    proof: list[merkle.ProofStep]
    merkle_root: str
    signature: str
    key_id: str
    header: dict[str, Any]
    verification: Verification
    label: Any = None
    labelled: bool = False
    row: pa.Table | None = field(default=None, repr=False)
    leaf_table: pa.Table | None = field(default=None, repr=False)

    @property
    def verified(self) -> bool:
        return self.verification.verified

    @property
    def inputs_withheld(self) -> bool:
        """Whether the batch's signed header says the caller changed this call's input array
        after predict, so its inputs were not captured (see ``input_guard``)."""
        return self.id[: leaves.CALL_LENGTH] in self.header.get("inputs_changed", [])

    def to_dict(self) -> dict[str, Any]:
        from clew.domain.records import ms_to_iso

        return {
            "id": self.id,
            "time": ms_to_iso(self.time_ms),
            "model": self.model,
            "version": self.version,
            "model_digest": self.model_digest,
            "method": self.method,
            "inputs": self.inputs,
            "inputs_withheld": self.inputs_withheld,
            "output": self.output,
            "label": self.label if self.labelled else None,
            "batch": self.batch_id,
            "leaf": {
                "index": self.leaf_index,
                "hash": self.leaf_hash,
                "prediction_ids": self._leaf_ids(),
            },
            "proof": [step.to_dict() for step in self.proof],
            "merkle_root": self.merkle_root,
            "signature": self.signature,
            "key_id": self.key_id,
            "header": self.header,
            **self.verification.to_dict(),
        }

    def _leaf_ids(self) -> list[str]:
        """The ids of the rows hashed into this prediction's leaf, in order."""
        rows = self.leaf_table if self.leaf_table is not None else self.row
        return [] if rows is None else rows.column("prediction_id").to_pylist()


def normalize_id(prediction_id: str) -> str:
    """Accept ``prediction:<id>`` or the bare id; refuse anything else with the accepted forms."""
    text = str(prediction_id).strip()
    parsed = refs.parse(text if text.startswith("prediction:") else f"prediction:{text}")
    if not isinstance(parsed, refs.PredictionRef):
        raise InvalidInputError(f"{prediction_id!r} is not a prediction id like 01J...XYZ.42.")
    return parsed.prediction_id


def find_prediction(store: Store, prediction_id: str) -> CapturedPrediction:
    """Look a prediction up by id and verify its leaf, proof and the batch signature."""
    wanted = normalize_id(prediction_id)
    for batch in _candidate_batches(store, wanted[: leaves.CALL_LENGTH]):
        rows = store.capture_files.read_prediction_group(batch.path, wanted)
        row = rows.filter(pc.equal(rows.column("prediction_id"), wanted))
        if row.num_rows:
            return _captured(store, batch, row.slice(0, 1), rows)
    raise NotFoundError(
        f"prediction {wanted} was not captured in this store; check the id, or call "
        "client.flush_captures() if it was made moments ago."
    )


@dataclass(frozen=True)
class BatchRecord:
    id: str
    model_version_id: str
    path: str
    file_digest: str
    count: int
    first_call: str
    last_call: str
    merkle_root: str
    signature: str
    key_id: str
    dropped: int
    created_ms: int


def _candidate_batches(store: Store, call: str) -> list[BatchRecord]:
    table = schema.capture_batches
    with store.db.read() as connection:
        rows = connection.execute(
            select(table)
            .where(table.c.first_call <= call, table.c.last_call >= call)
            .order_by(table.c.created_ms)
        )
        return [BatchRecord(**row._mapping) for row in rows]


def all_batches(store: Store) -> list[BatchRecord]:
    table = schema.capture_batches
    with store.db.read() as connection:
        rows = connection.execute(select(table).order_by(table.c.id))
        return [BatchRecord(**row._mapping) for row in rows]


def header_of(table: pa.Table) -> dict[str, Any]:
    """The signed batch header a capture file carries in its Parquet metadata."""
    return json.loads((table.schema.metadata or {}).get(HEADER_KEY, b"{}"))


def signature_of(table: pa.Table) -> str:
    return (table.schema.metadata or {}).get(SIGNATURE_KEY, b"").decode()


def _captured(
    store: Store, batch: BatchRecord, row: pa.Table, around: pa.Table
) -> CapturedPrediction:
    """The prediction in ``row``, checked; ``around`` holds the rows read with it (its row
    group), where the rest of its leaf normally is."""
    values = row.to_pylist()[0]
    header = header_of(row)
    file_signature = signature_of(row)
    leaf_index = int(values["leaf"])
    leaf_table, proof = _leaf_evidence(store, batch, header, around, leaf_index)
    verification = verify_row(
        leaf_table,
        header,
        file_signature,
        proof,
        signing.public_keys(store),
        batch,
        values["prediction_id"],
    )
    time_value = values["time"]
    with store.db.read() as connection:
        label = label_row(connection, values["prediction_id"])
    return CapturedPrediction(
        id=values["prediction_id"],
        time_ms=int(time_value.timestamp() * 1000),
        model=values["model_name"],
        version=int(values["model_version"]),
        model_version_id=batch.model_version_id,
        model_digest=values["model_digest"],
        method=header.get("method", "predict"),
        inputs=values.get("inputs"),
        output=values["output"],
        batch_id=batch.id,
        leaf_index=leaf_index,
        leaf_hash=_leaf_hash_hex(leaf_table),
        proof=proof,
        merkle_root=batch.merkle_root,
        signature=batch.signature,
        key_id=batch.key_id,
        header=header,
        verification=verification,
        label=json.loads(label.label) if label else None,
        labelled=label is not None,
        row=row,
        leaf_table=leaf_table,
    )


def _leaf_evidence(
    store: Store, batch: BatchRecord, header: dict[str, Any], around: pa.Table, leaf_index: int
) -> tuple[pa.Table, list[merkle.ProofStep]]:
    """The rows of the leaf (read from the same file) and the leaf's inclusion proof.

    What cannot be read is left empty or partial: verification then names what is missing
    (with a tampered header the proof may point past the end of the .merkle file).
    """
    files = store.capture_files
    leaf_table = around.filter(pc.equal(around.column("leaf"), leaf_index))
    try:
        leaf_rows = leaf_rows_of(header)
    except ValueError:
        return leaf_table, []
    if leaf_table.num_rows < min(leaf_rows, batch.count - leaf_index * leaf_rows):
        leaf_table = files.read_leaf(batch.path, leaf_index)  # a file rewritten differently
    try:
        proof = files.read_proof(batch.path, leaves.leaf_count(batch.count, leaf_rows), leaf_index)
    except (NotFoundError, ValueError, OSError):
        proof = []
    return leaf_table, proof


def _leaf_hash_hex(leaf_table: pa.Table) -> str:
    try:
        return leaves.leaf_hashes(leaf_table, leaf_rows=max(1, leaf_table.num_rows)).hex()
    except (pa.ArrowException, ValueError, TypeError, NotImplementedError):
        return ""


def verify_row(
    rows: pa.Table,
    header: dict[str, Any],
    signature: str,
    proof: Sequence[merkle.ProofStep],
    public_keys: bytes | Mapping[str, bytes],
    batch: BatchRecord | None = None,
    prediction_id: str | None = None,
) -> Verification:
    """Check one leaf's stored rows with only public keys: leaf → proof → root → signature.

    ``rows`` are all the rows of one Merkle leaf, in file order (the rows whose ``leaf``
    column holds the same number; one row in batches without ``leaf_rows`` in the header).
    ``header`` and ``signature`` come from the Parquet file itself; when the batch's database
    record is given it must agree with them too; when ``prediction_id`` is given it must be
    one of the rows. ``public_keys`` is one public key (PEM) or the store's key history by key
    id (``signing.public_keys``), where the key the header names is looked up.
    """
    if not header or not signature:
        return Verification(False, "the batch file carries no signed header")
    named = header.get("key_id")
    if isinstance(public_keys, bytes):
        public_keys = {signing.key_id(public_keys): public_keys}
    public_key_pem = signing.public_key_for(public_keys, named)
    if public_key_pem is None:
        return Verification(False, _unknown_key(named))
    if not signing.verify(public_key_pem, digests.canonical_json(header), signature):
        return Verification(
            False, f"the batch signature does not verify with the public key of {named}"
        )
    problem = _leaf_problem(rows, header, proof, prediction_id)
    if problem:
        return Verification(False, problem)
    leaf = leaves.leaf_hashes(rows, leaf_rows=rows.num_rows)
    try:
        root = merkle.root_from_proof(leaf, proof)
    except ValueError:
        return Verification(False, "the row's content does not match its inclusion proof")
    if digests.PREFIX + root.hex() != header.get("merkle_root"):
        return Verification(False, "the inclusion proof does not lead to the signed Merkle root")
    if batch is not None and (batch.merkle_root, batch.signature) != (
        header["merkle_root"],
        signature,
    ):
        return Verification(False, "the batch record in the database differs from its file")
    return Verification(True, "leaf, inclusion proof and Ed25519 signature verified")


def _leaf_problem(
    rows: pa.Table,
    header: dict[str, Any],
    proof: Sequence[merkle.ProofStep],
    prediction_id: str | None,
) -> str | None:
    """What makes these rows not one whole leaf of the signed batch, if anything."""
    try:
        leaf_rows = leaf_rows_of(header)
    except ValueError as error:
        return f"the signed batch header is malformed ({error})"
    if not proof:
        return "the inclusion proof is missing (the batch's .merkle file)"
    index = sum(step.position * merkle.ARITY**level for level, step in enumerate(proof))
    count = int(header.get("count", 0))
    expected = min(leaf_rows, count - index * leaf_rows)
    if rows.num_rows != expected:
        return (
            f"leaf {index} holds {expected} rows of the batch but {rows.num_rows} were given; "
            "pass every row whose leaf column equals the prediction's"
        )
    if "leaf" in rows.column_names and set(rows.column("leaf").to_pylist()) != {index}:
        return f"the rows given are not all in leaf {index}, which the inclusion proof is for"
    if prediction_id is not None and prediction_id not in rows.column("prediction_id").to_pylist():
        return f"prediction {prediction_id} is not among the rows of its leaf"
    for column, key in (
        ("model_name", "model"),
        ("model_version", "version"),
        ("model_digest", "model_digest"),
    ):
        if any(value != header.get(key) for value in rows.column(column).to_pylist()):
            return f"the row's {column} differs from the signed batch header"
    return None


# --- whole-batch verification (clew audit verify) ------------------------------------------


@dataclass(frozen=True)
class BatchProblem:
    batch_id: str
    path: str
    reason: str


def verify_batches(store: Store) -> tuple[int, list[BatchProblem]]:
    """Re-check every capture batch: file digest, recomputed Merkle root, signature (with the
    public key of the key id it names, from the store's key history)."""
    public_keys = signing.public_keys(store)
    problems: list[BatchProblem] = []
    batches = all_batches(store)
    for batch in batches:
        reason = _batch_problem(store, batch, public_keys)
        if reason:
            problems.append(BatchProblem(batch.id, batch.path, reason))
    return len(batches), problems


def _unknown_key(named: Any) -> str:
    return (
        f"the batch signature names key {named}, which is not among the store's audited "
        "public keys (`clew keys public --all` lists its key history)"
    )


def _batch_problem(
    store: Store, batch: BatchRecord, public_keys: Mapping[str, bytes]
) -> str | None:
    files = store.capture_files
    try:
        if not files.exists(batch.path):
            return f"capture file {batch.path} is missing"
    except IntegrityError as error:
        return str(error)
    if files.file_digest(batch.path) != batch.file_digest:
        return f"capture file {batch.path} does not match its recorded digest {batch.file_digest}"
    table = files.read_batch(batch.path)
    if table.num_rows != batch.count:
        return f"capture file {batch.path} holds {table.num_rows} rows, not {batch.count}"
    header = header_of(table)
    try:
        leaf_rows = leaf_rows_of(header)
    except ValueError as error:
        return f"the signed header of {batch.path} is malformed ({error})"
    root = merkle.build_levels(leaves.leaf_hashes(table, leaf_rows=leaf_rows))[-1]
    if digests.PREFIX + root.hex() != batch.merkle_root:
        return f"the rows of {batch.path} no longer hash to the recorded Merkle root"
    if header.get("merkle_root") != batch.merkle_root:
        return f"the signed header of {batch.path} names another Merkle root"
    if header.get("key_id") != batch.key_id:
        return f"the signed header of {batch.path} names another key than the batch record"
    public_key = signing.public_key_for(public_keys, batch.key_id)
    if public_key is None:
        return f"batch {batch.id}: {_unknown_key(batch.key_id)}"
    if not signing.verify(public_key, digests.canonical_json(header), batch.signature):
        return f"the signature of batch {batch.id} does not verify with its key {batch.key_id}"
    return None


# --- ground-truth labels ---------------------------------------------------------------


def log_labels(
    store: Store, prediction_ids: Sequence[str], labels: Sequence[Any], actor: str
) -> int:
    """Attach (or correct) ground truth for captured predictions; returns how many."""
    wanted = [normalize_id(pid) for pid in prediction_ids]
    values = list(labels)
    if len(wanted) != len(values):
        raise InvalidInputError(
            f"got {len(wanted)} prediction ids but {len(values)} labels; pass one label per id."
        )
    _require_captured(store, wanted)
    now = time.time_ns() // 1_000_000
    encoded = [_label_text(value) for value in values]
    rows = [
        {"prediction_id": pid, "label": text, "time_ms": now, "actor": actor}
        for pid, text in zip(wanted, encoded, strict=True)
    ]
    table = schema.labels
    with store.db.write() as connection:
        for start in range(0, len(rows), 500):
            chunk = rows[start : start + 500]
            connection.execute(
                delete(table).where(table.c.prediction_id.in_([r["prediction_id"] for r in chunk]))
            )
            connection.execute(table.insert(), chunk)
        audit.append(
            connection,
            actor,
            "labels.log",
            f"prediction:{wanted[0]}" if len(wanted) == 1 else f"labels:{len(wanted)}",
            {"predictions": wanted, "labels": encoded},
        )
    return len(rows)


def _label_text(value: Any) -> str:
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    return json.dumps(value, sort_keys=True, default=str)


def _require_captured(store: Store, wanted: Sequence[str]) -> None:
    by_call: dict[str, set[str]] = {}
    for pid in wanted:
        by_call.setdefault(pid[: leaves.CALL_LENGTH], set()).add(pid)
    seen_files: dict[str, set[str]] = {}
    for call, pids in by_call.items():
        found: set[str] = set()
        for batch in _candidate_batches(store, call):
            if batch.path not in seen_files:
                seen_files[batch.path] = set(store.capture_files.read_ids(batch.path).to_pylist())
            found |= pids & seen_files[batch.path]
        missing = sorted(pids - found)
        if missing:
            raise NotFoundError(
                f"prediction {missing[0]} was not captured in this store; label only ids "
                "returned by predict_with_ids (flush captures first if they are recent)."
            )


def labels_for(store: Store, prediction_ids: Sequence[str]) -> dict[str, Any]:
    wanted = [normalize_id(pid) for pid in prediction_ids]
    table = schema.labels
    found: dict[str, Any] = {}
    with store.db.read() as connection:
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            for row in connection.execute(
                select(table.c.prediction_id, table.c.label).where(table.c.prediction_id.in_(chunk))
            ):
                found[row.prediction_id] = json.loads(row.label)
    return found


def label_row(connection: Connection, prediction_id: str) -> Any | None:
    table = schema.labels
    return connection.execute(select(table).where(table.c.prediction_id == prediction_id)).first()
