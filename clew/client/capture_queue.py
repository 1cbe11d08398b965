"""The capture queue: predictions wait in memory while a writer thread hands them on in batches.

It runs in the caller's process, embedded or a client of a server. ``predict`` queues one
``Call`` per call (bounded: what does not fit is dropped and counted, never waited for) and a
background thread groups the calls into batches and hands each to a ``BatchWriter``: the
store's own (clew/service/capture_sealing.py signs and writes it) or a server's
(clew/client/remote_capture.py posts it, and spools what the server does not take). Nothing
the writer does can raise into the caller's ``predict``; failures are counted in ``stats()``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from clew.client import input_guard
from clew.client.copy_arena import CopyArena
from clew.domain.captures import BatchWriter, Call, CaptureTarget, Undelivered
from clew.errors import StoreBusyError, StoreUnavailableError

log = logging.getLogger("clew.capture")


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
class Backlog:
    """What a spooling writer holds for later delivery (``pending``, batches waiting now, an
    earlier process's included) and what it delivered or had refused from there since."""

    pending: int = 0
    pending_batches: int = 0
    delivered: int = 0
    delivered_batches: int = 0
    failed: int = 0
    last_error: str | None = None


@runtime_checkable
class SpoolingWriter(Protocol):
    """A writer that keeps undelivered batches to send later (a client of a server)."""

    def backlog(self) -> Backlog: ...

    def drain(self, timeout: float | None) -> bool:
        """Send what is kept now; True when nothing is left within ``timeout``."""

    def close(self) -> None:
        """Stop sending: what is still kept waits for the next process."""


class CaptureQueue:
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
        _queues.add(self)

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
            if check_inputs(call):
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


_queues: weakref.WeakSet[CaptureQueue] = weakref.WeakSet()


def _forget_threads() -> None:
    """In a forked child: the queues' writer threads stayed in the parent."""
    for queue in list(_queues):
        queue._forget_thread()


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


def check_inputs(call: Call) -> bool:
    """Replace a call's guarded inputs with the writer's own copy, or withhold them if the
    caller changed them after predict; True when it had.

    The copy is checked, not the caller's array: a change made after the check but before
    the batch was built would otherwise be signed unnoticed.
    """
    if call.guard is None or call.inputs is None:
        return False
    copied, guard, call.guard = call.inputs.copy(), call.guard, None
    if input_guard.unchanged(guard, copied):
        call.inputs = copied
        return False
    call.inputs, call.sampled, call.inputs_changed = None, None, True
    return True
