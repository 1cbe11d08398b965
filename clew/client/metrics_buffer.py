"""Background batching of a run's metric points, params and tags.

``log_metric``, ``log_params`` and ``set_tags`` only validate and queue; one daemon thread per
client writes what is queued in large transactions, and a run's end writes the rest with the
end itself, so a short run costs two commits (start and end) whatever it logged. A batch of
points whose write fails is kept whole, with the key it was sent under, and is the next one
written, so no acknowledged point is lost and none is written twice: a server that committed
a batch whose answer never arrived recognises the same key when the batch comes again (a
batch re-cut from the queue would carry a new key and be inserted a second time). Params and
tags need no key: writing the same ones again changes nothing. ``flush()`` and ``finish()``
(run end, interpreter exit) write everything still pending in the caller's thread and raise
what fails there. A failed background write is therefore not reported by itself: it is
retried, and only a failure that is still true when the caller writes is raised. (Keeping
background errors to re-raise later made ``end()`` fail after a server blip whose points had
since been written, and raise a failure again that an earlier ``flush()`` had already
reported.)
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from clew.errors import ConflictError

Point = tuple[str, float, int, int]
Writer = Callable[[str, list[Point], str], None]
"""Writes ``(run_id, points, key)``; the key is the same every time one batch is retried."""
Fields = tuple[dict[str, Any], dict[str, Any]]
"""A run's queued ``(params, tags)``, already validated."""
FieldWriter = Callable[[str, dict[str, Any], dict[str, Any]], None]
"""Writes ``(run_id, params, tags)``; writing the same params and tags again changes nothing."""
Finisher = Callable[[list[Point], dict[str, Any], dict[str, Any]], None]
FLUSH_INTERVAL_S = 0.25
BATCH_SIZE = 50_000


class MetricBuffer:
    def __init__(self, writer: Writer, field_writer: FieldWriter) -> None:
        self._writer = writer
        self._field_writer = field_writer
        self._queues: dict[str, deque[Point]] = {}
        self._fields: dict[str, Fields] = {}
        self._unsent: dict[str, tuple[list[Point], str]] = {}
        self._ending: dict[str, tuple[list[Point], Fields]] = {}  # a run end that failed
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def queue_for(self, run_id: str) -> deque[Point]:
        with self._lock:
            queue = self._queues.setdefault(run_id, deque())
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="clew-metrics", daemon=True)
                self._thread.start()
            return queue

    def add_fields(
        self, run_id: str, params: dict[str, Any] | None = None, tags: dict[str, Any] | None = None
    ) -> None:
        """Queue params and tags (a later tag value replaces an earlier queued one)."""
        with self._lock:
            queued = self._fields.setdefault(run_id, ({}, {}))
            queued[0].update(params or {})
            queued[1].update(tags or {})

    def nudge(self) -> None:
        """Ask the writer thread to write now instead of at its next interval."""
        self._wake.set()

    def flush(self, run_id: str) -> None:
        """Write everything queued for ``run_id`` now; raise the error if a write fails."""
        with self._write_lock:
            self._drain_locked(run_id, keep=0)

    def finish(self, run_id: str, finisher: Finisher) -> None:
        """Write the queue, handing the last batch, params and tags to ``finisher`` (which ends
        the run with them).

        Ending a run and writing what it logged last then cost one transaction. If the
        finisher fails, what it was given is held for the next ``finish`` (not written by the
        background thread meanwhile), so retrying loses nothing and repeats the very same end:
        a server that committed the first one but whose answer was lost replays that answer
        (the request's idempotency key derives from it) instead of refusing a run already
        ended. A param conflict is the exception: it can never be written, so it is dropped
        once raised and the next ``finish`` ends the run with the rest.
        """
        with self._write_lock:
            self._drain_locked(run_id, keep=BATCH_SIZE, fields=False)
            queue = self._queues.get(run_id)
            points, (params, tags) = self._ending.pop(run_id, ([], ({}, {})))
            points += _take(queue, len(queue)) if queue else []
            queued = self._take_fields(run_id)
            params, tags = {**params, **queued[0]}, {**tags, **queued[1]}
            try:
                finisher(points, params, tags)
            except BaseException as error:
                self._ending[run_id] = (points, ({} if _param_conflict(error) else params, tags))
                raise
            with self._lock:
                self._queues.pop(run_id, None)
                self._unsent.pop(run_id, None)

    def discard(self, run_id: str) -> None:
        """Drop every point still pending for ``run_id`` (a run that can take no more, such as
        one ended elsewhere): the one way points leave the buffer unwritten."""
        with self._write_lock, self._lock:
            self._queues.pop(run_id, None)
            self._fields.pop(run_id, None)
            self._unsent.pop(run_id, None)
            self._ending.pop(run_id, None)

    def close(self) -> None:
        self._stopping = True
        self._wake.set()
        for run_id in list(self._queues):
            self.flush(run_id)

    def _loop(self) -> None:
        while not self._stopping:
            self._wake.wait(FLUSH_INTERVAL_S)
            self._wake.clear()
            for run_id in list(self._queues):
                # A failed batch is back in its queue: the next interval, flush() or finish()
                # writes it again, and flush()/finish() raise if it still fails then.
                with contextlib.suppress(Exception), self._write_lock:
                    self._drain_locked(run_id, keep=0, background=True)

    def _drain_locked(
        self, run_id: str, keep: int, fields: bool = True, background: bool = False
    ) -> None:
        """Write queued params and tags (unless ``fields`` is false), then full batches of
        points until at most ``keep`` remain (caller holds the write lock)."""
        queue = self._queues.get(run_id)
        if queue is None:
            return
        if fields:
            self._send_fields(run_id, background)
        unsent = self._unsent.pop(run_id, None)
        if unsent is not None:
            self._send(run_id, *unsent)
        while len(queue) > keep:
            self._send(run_id, _take(queue, min(len(queue), BATCH_SIZE)), uuid.uuid4().hex)

    def _take_fields(self, run_id: str) -> Fields:
        with self._lock:
            return self._fields.pop(run_id, None) or ({}, {})

    def _send_fields(self, run_id: str, background: bool) -> None:
        """Write the queued params and tags; on failure they are queued again under anything
        queued since. A param conflict can never be written: it is dropped once it is raised
        in the caller's thread, and kept until then, so the caller always hears of it."""
        params, tags = self._take_fields(run_id)
        if not params and not tags:
            return
        try:
            self._field_writer(run_id, params, tags)
        except BaseException as error:
            kept = {} if _param_conflict(error) and not background else params
            with self._lock:
                newer = self._fields.get(run_id, ({}, {}))
                self._fields[run_id] = ({**kept, **newer[0]}, {**tags, **newer[1]})
            raise

    def _send(self, run_id: str, batch: list[Point], key: str) -> None:
        try:
            self._writer(run_id, batch, key)
        except BaseException:
            self._unsent[run_id] = (batch, key)  # written before anything queued after it
            raise


def _param_conflict(error: BaseException) -> bool:
    """A param the run already has with another value: a write that can never succeed (a
    run ended elsewhere, a ``RunFinishedError``, is a conflict too but must not drop them)."""
    return type(error) is ConflictError


def _take(queue: deque[Point], count: int) -> list[Point]:
    """Pop ``count`` points from the left; safe while another thread appends on the right."""
    popleft = queue.popleft
    return [popleft() for _ in range(count)]
