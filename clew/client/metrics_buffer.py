"""Background batching of metric points.

``log_metric`` only validates and appends to an in-memory queue; one daemon thread per client
writes queued points in large transactions. A batch whose write fails is kept whole, with the
key it was sent under, and is the next one written, so no acknowledged point is lost and none
is written twice: a server that committed a batch whose answer never arrived recognises the
same key when the batch comes again (a batch re-cut from the queue would carry a new key and
be inserted a second time). ``flush()`` and ``finish()`` (run end, interpreter exit) write
everything still pending in the caller's thread and raise what fails there. A failed
background write is therefore not reported by itself: it is retried, and only a failure that
is still true when the caller writes is raised. (Keeping background errors to re-raise later
made ``end()`` fail after a server blip whose points had since been written, and raise a
failure again that an earlier ``flush()`` had already reported.)
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections import deque
from collections.abc import Callable

Point = tuple[str, float, int, int]
Writer = Callable[[str, list[Point], str], None]
"""Writes ``(run_id, points, key)``; the key is the same every time one batch is retried."""
Finisher = Callable[[list[Point]], None]
FLUSH_INTERVAL_S = 0.25
BATCH_SIZE = 50_000


class MetricBuffer:
    def __init__(self, writer: Writer) -> None:
        self._writer = writer
        self._queues: dict[str, deque[Point]] = {}
        self._unsent: dict[str, tuple[list[Point], str]] = {}
        self._ending: dict[str, list[Point]] = {}  # the points of a run end that failed
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

    def nudge(self) -> None:
        """Ask the writer thread to write now instead of at its next interval."""
        self._wake.set()

    def flush(self, run_id: str) -> None:
        """Write everything queued for ``run_id`` now; raise the error if a write fails."""
        with self._write_lock:
            self._drain_locked(run_id, keep=0)

    def finish(self, run_id: str, finisher: Finisher) -> None:
        """Write the queue, handing the last batch to ``finisher`` (which ends the run with it).

        Ending a run and writing its final points then cost one transaction. If the finisher
        fails, its points are held for the next ``finish`` (not written by the background
        thread meanwhile), so retrying loses nothing and repeats the very same end: a server
        that committed the first one but whose answer was lost replays that answer (the
        request's idempotency key derives from it) instead of refusing a run already ended.
        """
        with self._write_lock:
            self._drain_locked(run_id, keep=BATCH_SIZE)
            queue = self._queues.get(run_id)
            last = self._ending.pop(run_id, []) + (_take(queue, len(queue)) if queue else [])
            try:
                finisher(last)
            except BaseException:
                self._ending[run_id] = last
                raise
            with self._lock:
                self._queues.pop(run_id, None)
                self._unsent.pop(run_id, None)

    def discard(self, run_id: str) -> None:
        """Drop every point still pending for ``run_id`` (a run that can take no more, such as
        one ended elsewhere): the one way points leave the buffer unwritten."""
        with self._write_lock, self._lock:
            self._queues.pop(run_id, None)
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
                    self._drain_locked(run_id, keep=0)

    def _drain_locked(self, run_id: str, keep: int) -> None:
        """Write full batches until at most ``keep`` points remain (caller holds the lock)."""
        queue = self._queues.get(run_id)
        if queue is None:
            return
        unsent = self._unsent.pop(run_id, None)
        if unsent is not None:
            self._send(run_id, *unsent)
        while len(queue) > keep:
            self._send(run_id, _take(queue, min(len(queue), BATCH_SIZE)), uuid.uuid4().hex)

    def _send(self, run_id: str, batch: list[Point], key: str) -> None:
        try:
            self._writer(run_id, batch, key)
        except BaseException:
            self._unsent[run_id] = (batch, key)  # written before anything queued after it
            raise


def _take(queue: deque[Point], count: int) -> list[Point]:
    """Pop ``count`` points from the left; safe while another thread appends on the right."""
    popleft = queue.popleft
    return [popleft() for _ in range(count)]
