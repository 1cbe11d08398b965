"""The shadow beside a champion in ``clew serve --shadow``: a copy of each request, answered
in another process.

The champion's handler only offers the request to a bounded queue (``put_nowait``): when the
shadow falls behind, requests are dropped and counted rather than queued without bound or
waited for. The shadow version runs in its own process (loaded there, its digests checked
there), so its predicting, capturing and recording never hold this process's GIL or CPU while
the champion answers; a thread would, and the champion's p99 would pay for every shadow call.
The shadow process captures its predictions like any client and records which champion call
each of its calls answered, in batches, for ``clew shadow report``.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import time
from dataclasses import dataclass
from typing import Any

from clew.client.loaded_model import LoadedModel, PredictionIds
from clew.domain.deployments import ShadowPair

log = logging.getLogger("clew.shadow")
MAX_QUEUED = 1000
PAIRS_PER_WRITE = 500
FLUSH_SECONDS = 1.0
_ANSWERED, _FAILED, _RECORDED = range(3)


@dataclass
class _Request:
    inputs: Any
    proba: bool
    champion_call: str
    rows: int
    request_id: str
    time_ms: int


class ShadowSender:
    """Offers requests to the shadow version's process; ``stats()`` counts what happened."""

    def __init__(
        self,
        model: LoadedModel,
        deployment_id: str,
        *,
        max_queued: int = MAX_QUEUED,
        flush_seconds: float = FLUSH_SECONDS,
    ) -> None:
        self.ref = model.version.ref
        self.deployment_id = deployment_id
        context = multiprocessing.get_context("spawn")
        self._queue: Any = context.Queue(maxsize=max_queued)
        self._counts: Any = context.Array("q", 3)
        self._offered = self._dropped = 0
        self._process = context.Process(
            target=_serve_shadow,
            args=(model._client.uri, self.ref, deployment_id, self._queue, self._counts),
            kwargs={"flush_seconds": flush_seconds},
            name="clew-shadow",
            daemon=True,
        )
        self._process.start()

    def offer(self, inputs: Any, proba: bool, champion: PredictionIds, request_id: str) -> None:
        """Queue a copy of the request for the shadow, or drop and count it: never waits."""
        request = _Request(
            inputs, proba, champion.call, len(champion), request_id, time.time_ns() // 1_000_000
        )
        try:
            self._queue.put_nowait(request)
            self._offered += 1
        except queue.Full:
            self._dropped += 1

    def stats(self) -> dict[str, Any]:
        counts = list(self._counts)
        return {
            "model": self.ref,
            "offered": self._offered,
            "dropped": self._dropped,
            "answered": counts[_ANSWERED],
            "failed": counts[_FAILED],
            "recorded": counts[_RECORDED],
            "running": self._process.is_alive(),
        }

    def close(self, timeout: float = 120.0) -> None:
        """Let the shadow answer what is queued (within ``timeout``), record, and stop."""
        deadline = time.monotonic() + timeout
        while self._process.is_alive() and time.monotonic() < deadline:
            try:
                self._queue.put(None, timeout=0.1)
                break
            except queue.Full:
                continue
        self._process.join(max(0.0, deadline - time.monotonic()))
        if self._process.is_alive():
            log.warning("the shadow %s did not stop in %.0f s; ending it", self.ref, timeout)
            self._process.terminate()
            self._process.join(5)
        self._queue.close()


def _serve_shadow(
    uri: str,
    ref: str,
    deployment_id: str,
    requests: Any,
    counts: Any,
    *,
    flush_seconds: float,
) -> None:
    """The shadow process: load the version, answer requests until told to stop."""
    from clew.client.default import connect

    client = connect(uri)
    try:
        worker = _Worker(client.load_model(ref), deployment_id, counts)
        worker.run(requests, flush_seconds)
    finally:
        client.flush_captures()
        client.close()


class _Worker:
    """Predicts each request with the shadow version and records the call pairs."""

    def __init__(self, model: LoadedModel, deployment_id: str, counts: Any) -> None:
        self.model = model
        self.deployment_id = deployment_id
        self.counts = counts
        self.pairs: list[ShadowPair] = []

    def run(self, requests: Any, flush_seconds: float) -> None:
        last_write = time.monotonic()
        while True:
            try:
                request = requests.get(timeout=flush_seconds)
            except queue.Empty:
                request = False  # a tick: write what waits
            if request is None:
                self.write()
                return
            if request:
                self.answer(request)
            due = time.monotonic() - last_write >= flush_seconds
            if self.pairs and (due or len(self.pairs) >= PAIRS_PER_WRITE):
                self.write()
                last_write = time.monotonic()

    def answer(self, request: _Request) -> None:
        try:
            if request.proba:
                _, ids = self.model.predict_proba_with_ids(request.inputs)
            else:
                _, ids = self.model.predict_with_ids(request.inputs)
        except Exception as error:  # the shadow's failure is counted, never the champion's
            self._count(_FAILED)
            log.warning(
                "shadow %s failed on request %s: %s",
                self.model.version.ref,
                request.request_id,
                error,
            )
            return
        self._count(_ANSWERED)
        rows = min(request.rows, len(ids))
        self.pairs.append(
            ShadowPair(request.champion_call, ids.call, rows, request.request_id, request.time_ms)
        )

    def write(self) -> None:
        if not self.pairs:
            return
        pairs, self.pairs = self.pairs, []
        client = self.model._client
        try:
            client._service.shadows.record_pairs(self.deployment_id, pairs, client.actor)
            self._count(_RECORDED, len(pairs))
        except Exception as error:
            self._count(_FAILED, len(pairs))
            log.warning("recording %d shadow pairs failed: %s", len(pairs), error)

    def _count(self, index: int, amount: int = 1) -> None:
        with self.counts.get_lock():
            self.counts[index] += amount
