"""Background batching of metric points.

``log_metric`` only validates and appends to an in-memory queue; one daemon thread per client
writes queued points in large transactions. ``flush()`` and ``finish()`` (run end, interpreter
exit) write everything still queued and re-raise any write error, so no acknowledged point is
silently lost: a batch whose write fails goes back to the front of its queue.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

Point = tuple[str, float, int, int]
Writer = Callable[[str, list[Point]], None]
Finisher = Callable[[list[Point]], None]
FLUSH_INTERVAL_S = 0.25
BATCH_SIZE = 50_000


class MetricBuffer:
    def __init__(self, writer: Writer) -> None:
        self._writer = writer
        self._queues: dict[str, deque[Point]] = {}
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._errors: dict[str, BaseException] = {}
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
        """Write everything queued for ``run_id`` now; raise the first error seen for it."""
        with self._write_lock:
            self._raise_kept_error(run_id)
            self._drain_locked(run_id, keep=0)

    def finish(self, run_id: str, finisher: Finisher) -> None:
        """Write the queue, handing the last batch to ``finisher`` (which ends the run with it).

        Ending a run and writing its final points then cost one transaction. If the finisher
        fails, its points go back into the queue, so retrying loses nothing.
        """
        with self._write_lock:
            self._raise_kept_error(run_id)
            self._drain_locked(run_id, keep=BATCH_SIZE)
            queue = self._queues.get(run_id)
            last = _take(queue, len(queue)) if queue else []
            try:
                finisher(last)
            except BaseException:
                if queue is not None:
                    queue.extendleft(reversed(last))
                raise
            with self._lock:
                self._queues.pop(run_id, None)

    def close(self) -> None:
        self._stopping = True
        self._wake.set()
        for run_id in list(self._queues):
            self.flush(run_id)

    def _raise_kept_error(self, run_id: str) -> None:
        error = self._errors.pop(run_id, None)
        if error is not None:
            raise error

    def _loop(self) -> None:
        while not self._stopping:
            self._wake.wait(FLUSH_INTERVAL_S)
            self._wake.clear()
            for run_id in list(self._queues):
                try:
                    with self._write_lock:
                        self._drain_locked(run_id, keep=0)
                except BaseException as error:  # kept and re-raised by flush()/finish()
                    self._errors.setdefault(run_id, error)

    def _drain_locked(self, run_id: str, keep: int) -> None:
        """Write full batches until at most ``keep`` points remain (caller holds the lock)."""
        queue = self._queues.get(run_id)
        if queue is None:
            return
        while len(queue) > keep:
            batch = _take(queue, min(len(queue), BATCH_SIZE))
            try:
                self._writer(run_id, batch)
            except BaseException:
                queue.extendleft(reversed(batch))  # keep them for the next attempt
                raise


def _take(queue: deque[Point], count: int) -> list[Point]:
    """Pop ``count`` points from the left; safe while another thread appends on the right."""
    popleft = queue.popleft
    return [popleft() for _ in range(count)]
