"""The shadow beside a champion in ``clew serve --shadow``: a copy of each request, answered
off the request path.

The champion's handler only offers the request to a bounded queue (``put_nowait``): when the
shadow falls behind, requests are dropped and counted rather than queued without bound or
waited for, so the shadow can never slow the champion's answer or grow its memory. A worker
thread predicts with the shadow version (captured like any prediction) and records which
champion call each shadow call answered, in batches, for ``clew shadow report``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

from clew.client.loaded_model import LoadedModel, PredictionIds
from clew.domain.deployments import ShadowPair

log = logging.getLogger("clew.shadow")
MAX_QUEUED = 1000
PAIRS_PER_WRITE = 500
FLUSH_SECONDS = 1.0


@dataclass
class _Request:
    inputs: Any
    proba: bool
    champion: PredictionIds
    request_id: str
    time_ms: int


class ShadowSender:
    """Offers requests to the shadow version; ``stats()`` counts what happened to them."""

    def __init__(
        self,
        model: LoadedModel,
        deployment_id: str,
        *,
        max_queued: int = MAX_QUEUED,
        flush_seconds: float = FLUSH_SECONDS,
    ) -> None:
        self.model = model
        self.deployment_id = deployment_id
        self.flush_seconds = flush_seconds
        self._queue: queue.Queue[_Request | None] = queue.Queue(maxsize=max_queued)
        self._pairs: list[ShadowPair] = []
        self._counts = {"offered": 0, "answered": 0, "dropped": 0, "failed": 0, "recorded": 0}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="clew-shadow", daemon=True)
        self._thread.start()

    def offer(self, inputs: Any, proba: bool, champion: PredictionIds, request_id: str) -> None:
        """Queue a copy of the request for the shadow, or drop and count it: never waits."""
        request = _Request(inputs, proba, champion, request_id, time.time_ns() // 1_000_000)
        try:
            self._queue.put_nowait(request)
            self._count("offered")
        except queue.Full:
            self._count("dropped")

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {**self._counts, "model": self.model.version.ref, "queued": self._queue.qsize()}

    def close(self, timeout: float = 30.0) -> None:
        """Answer what is queued (within ``timeout``), record the pairs, stop the worker."""
        deadline = time.monotonic() + timeout
        while self._thread.is_alive():
            try:
                self._queue.put(None, timeout=0.1)
                break
            except queue.Full:
                if time.monotonic() > deadline:
                    break
        self._thread.join(max(0.0, deadline - time.monotonic()))

    def _count(self, key: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[key] += amount

    def _run(self) -> None:
        last_write = time.monotonic()
        while True:
            try:
                request = self._queue.get(timeout=self.flush_seconds)
            except queue.Empty:
                request = _Request(None, False, PredictionIds("", 0), "", 0)  # a tick: flush
            if request is None:
                self._write()
                return
            if request.inputs is not None:
                self._answer(request)
            due = time.monotonic() - last_write >= self.flush_seconds
            if self._pairs and (due or len(self._pairs) >= PAIRS_PER_WRITE):
                self._write()
                last_write = time.monotonic()

    def _answer(self, request: _Request) -> None:
        try:
            if request.proba:
                _, ids = self.model.predict_proba_with_ids(request.inputs)
            else:
                _, ids = self.model.predict_with_ids(request.inputs)
        except Exception as error:  # the shadow's failure is counted, never the champion's
            self._count("failed")
            log.warning(
                "shadow %s failed on request %s: %s",
                self.model.version.ref,
                request.request_id,
                error,
            )
            return
        self._count("answered")
        self._pairs.append(
            ShadowPair(
                request.champion.call, ids.call, len(ids), request.request_id, request.time_ms
            )
        )

    def _write(self) -> None:
        if not self._pairs:
            return
        pairs, self._pairs = self._pairs, []
        client = self.model._client
        try:
            client._service.shadows.record_pairs(self.deployment_id, pairs, client.actor)
            self._count("recorded", len(pairs))
        except Exception as error:
            self._count("failed", len(pairs))
            log.warning("recording %d shadow pairs failed: %s", len(pairs), error)
