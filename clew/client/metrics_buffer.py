"""Background batching of metric points.

``log_metric`` only validates and appends to an in-memory queue; one daemon thread per client
writes queued points in large transactions. ``flush()`` (called at run end and at interpreter
exit) writes everything still queued and re-raises any write error, so no acknowledged point
is silently lost.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

Point = tuple[str, float, int, int]
Writer = Callable[[str, list[Point]], None]
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
        self._wake.set()

    def flush(self, run_id: str) -> None:
        """Write everything queued for ``run_id`` now; raise the first error seen for it."""
        self._drain(run_id)
        error = self._errors.pop(run_id, None)
        if error is not None:
            raise error

    def forget(self, run_id: str) -> None:
        with self._lock:
            self._queues.pop(run_id, None)

    def close(self) -> None:
        self._stopping = True
        self._wake.set()
        for run_id in list(self._queues):
            self._drain(run_id)

    def _loop(self) -> None:
        while not self._stopping:
            self._wake.wait(FLUSH_INTERVAL_S)
            self._wake.clear()
            for run_id in list(self._queues):
                try:
                    self._drain(run_id)
                except BaseException as error:  # kept and re-raised by flush()
                    self._errors.setdefault(run_id, error)

    def _drain(self, run_id: str) -> None:
        queue = self._queues.get(run_id)
        if queue is None:
            return
        with self._write_lock:
            while queue:
                batch: list[Point] = []
                try:
                    while len(batch) < BATCH_SIZE:
                        batch.append(queue.popleft())
                except IndexError:
                    pass
                try:
                    self._writer(run_id, batch)
                except BaseException:
                    queue.extendleft(reversed(batch))  # keep them for the next attempt
                    raise
