"""Prediction capture and tracing methods of ``Client``: stats, labels, lookup, trace.

``PredictionsMixin`` is mixed into ``Client``; the module functions below call the default
client and are re-exported by ``clew``. Everything goes through the backend, so it works
the same on a server: an embedded client signs and writes capture batches itself; a client of
a server queues the same calls and posts them, and the server signs and writes them (see
clew/client/remote_capture.py). ``get_prediction`` re-verifies what a server returns with the
store's public key.
"""

from __future__ import annotations

import atexit
import dataclasses
import sys
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from clew.client.embedded import EmbeddedBackend
from clew.domain.keys import SigningKey
from clew.domain.records import ms_to_iso
from clew.domain.trace import Trace
from clew.errors import InvalidInputError
from clew.service import signing
from clew.service.identity import current_actor

if TYPE_CHECKING:  # the capture machinery (numpy, pyarrow) is imported with the first capture
    from clew.client.capture_queue import CaptureQueue, CaptureSettings, CaptureStats
    from clew.client.capture_spool import SpoolSettings
    from clew.client.client import Client
    from clew.client.remote_predictions import RemotePredictions
    from clew.domain.captures import BatchWriter, CapturedPrediction
    from clew.service.protocols import Backend

__all__ = [
    "capture_stats",
    "flush_captures",
    "get_prediction",
    "log_labels",
    "public_key",
    "rotate_signing_key",
    "signing_keys",
    "trace",
]

_with_capture: weakref.WeakSet[PredictionsMixin] = weakref.WeakSet()
_capture_lock = threading.Lock()


@dataclass(frozen=True)
class FlushResult(Mapping[str, Any]):
    """What ``flush_captures`` left undone: rows still ``queued`` in this process and rows
    ``pending`` in the capture spool (a server that did not take them yet); ``complete`` when
    both are 0. Read as a mapping it is ``capture_stats()`` taken after the flush."""

    complete: bool
    queued: int
    pending: int
    pending_batches: int
    stats: CaptureStats

    def __getitem__(self, key: str) -> Any:
        return self.stats.to_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.stats.to_dict())

    def __len__(self) -> int:
        return len(self.stats.to_dict())


class PredictionsMixin:
    """Signed prediction capture, ground-truth labels and ``trace`` (see docs/predictions.md)."""

    _service: Backend
    if TYPE_CHECKING:

        @property
        def actor(self) -> str: ...

    _capture: CaptureQueue | None = None
    _capture_settings: CaptureSettings | None = None
    _spool_settings: SpoolSettings | None = None

    def configure_capture(
        self,
        *,
        batch_rows: int | None = None,
        flush_seconds: float | None = None,
        max_queued_rows: int | None = None,
        spool: str | Path | None = None,
        spool_max_bytes: int | None = None,
        spool_max_batches: int | None = None,
        retry_seconds: float | None = None,
    ) -> CaptureSettings:
        """Tune batching: rows per signed batch, seconds before a partial batch is written,
        and how many rows may wait in memory before new ones are dropped (and counted).

        On a client of a server, also the capture spool that keeps what the server did not
        take: its directory (default ``CLEW_CAPTURE_SPOOL`` or ``~/.local/state/clew/
        capture-spool``), its bounds, and the longest pause between re-sending attempts.
        Set these before the first prediction: the spool is opened with the writer."""
        from clew.client.capture_queue import CaptureSettings
        from clew.client.capture_spool import SpoolSettings

        spooling = (spool, spool_max_bytes, spool_max_batches, retry_seconds)
        if self._capture is not None and self._spools() and any(o is not None for o in spooling):
            raise InvalidInputError(
                "the capture spool of this client is already open; set spool options with "
                "configure_capture() before its first prediction, flush or capture_stats(), "
                "or connect a new client."
            )
        settings = self._capture_settings or CaptureSettings()
        if batch_rows is not None:
            settings.batch_rows = _positive(batch_rows, "batch_rows")
        if flush_seconds is not None:
            settings.flush_seconds = _positive(flush_seconds, "flush_seconds")
        if max_queued_rows is not None:
            settings.max_queued_rows = _positive(max_queued_rows, "max_queued_rows")
        self._spool_settings = _spool_settings(
            self._spool_settings or SpoolSettings(),
            spool,
            spool_max_bytes,
            spool_max_batches,
            retry_seconds,
        )
        self._capture_settings = settings
        if self._capture is not None:
            self._capture.settings = settings
        return settings

    def capture_stats(self) -> dict[str, Any]:
        """Rows submitted, captured (delivered), dropped (queue or spool full), failed (writer
        errors, refusals), queued (not yet written) and pending (spooled until a server takes
        them; batches an earlier process left included)."""
        return self._capture_stats().to_dict()

    def flush_captures(self, timeout: float | None = 60.0) -> FlushResult:
        """Write every queued prediction now and send what the capture spool holds; what is
        still undone after ``timeout`` seconds is in the result (``complete`` when nothing)."""
        complete = True
        if self._capture is not None or self._spools():
            complete = self._capture_service().flush(timeout)
        stats = self._capture_stats()
        return FlushResult(
            complete and stats.queued == 0 and stats.pending == 0,
            stats.queued,
            stats.pending,
            stats.pending_batches,
            stats,
        )

    def _capture_stats(self) -> CaptureStats:
        from clew.client.capture_queue import CaptureStats

        if self._capture is None and not self._spools():
            return CaptureStats()
        return self._capture_service().stats()

    def _spools(self) -> bool:
        """A client of a server: its capture spool may hold an earlier process's batches."""
        return not isinstance(self._service, EmbeddedBackend)

    def get_prediction(self, prediction_id: str) -> CapturedPrediction:
        """A captured prediction as stored, with its proof, label and verification result."""
        self.flush_captures()
        return self._service.predictions.get_prediction(prediction_id)

    def log_labels(self, prediction_ids: Sequence[str], labels: Sequence[Any]) -> int:
        """Attach ground truth to captured predictions (a later label replaces an earlier one)."""
        self.flush_captures()
        return self._service.predictions.log_labels(list(prediction_ids), list(labels), self.actor)

    def get_labels(self, prediction_ids: Sequence[str]) -> dict[str, Any]:
        return self._service.predictions.labels_for(list(prediction_ids))

    def trace(self, prediction_id: str) -> Trace:
        """The whole thread from one prediction back to its model, approvals, run and data."""
        self.flush_captures()
        return self._service.predictions.trace(prediction_id)

    def public_key(self) -> str:
        """The store's Ed25519 public key (PEM): all an auditor needs to verify captures."""
        return self._service.predictions.public_key()

    def signing_keys(self) -> list[dict[str, Any]]:
        """Every key the store has signed captures with, oldest first (the last is current):
        key id, public key (PEM), who made it current, when, and the key it replaced."""
        return [_key_dict(key) for key in self._service.predictions.signing_keys()]

    def rotate_signing_key(self, new_key_file: str | Path) -> dict[str, Any]:
        """Make the private key in ``new_key_file`` (from ``clew keys create``) the store's
        signing key; batches signed before still verify with the key they name. Only its public
        half and a signature proving possession leave this process. On a server: admins only."""
        predictions = self._service.predictions
        history = predictions.signing_keys()
        current = history[-1].key_id if history else None
        request = signing.rotation_request(Path(new_key_file).expanduser(), current)
        return _key_dict(predictions.rotate_signing_key(request, self.actor))

    # --- used by LoadedModel ----------------------------------------------------------

    def _capture_service(self) -> CaptureQueue:
        from clew.client.capture_queue import CaptureQueue

        if self._capture is None:
            with _capture_lock:
                if self._capture is None:
                    self._capture = CaptureQueue(self._writer(), self._capture_settings)
                    _with_capture.add(self)
        return self._capture

    def _writer(self) -> BatchWriter:
        if isinstance(self._service, EmbeddedBackend):
            return self._service.predictions.capture_writer(current_actor())
        from clew.client.capture_spool import SpoolSettings

        spool = self._spool_settings or SpoolSettings()
        remote = cast("RemotePredictions", self._service.predictions)  # not embedded: a server's
        return remote.capture_writer(current_actor(), spool)

    def _capture_failed(self, rows: int, error: Exception) -> None:
        self._capture_service().record_failure(rows, error)

    def _close_captures(self) -> None:
        if self._capture is not None:
            self._capture.close()


def _key_dict(key: SigningKey) -> dict[str, Any]:
    return {**key.to_dict(), "created_at": ms_to_iso(key.created_ms)}


def _spool_settings(
    current: SpoolSettings,
    directory: str | Path | None,
    max_bytes: int | None,
    max_batches: int | None,
    retry_seconds: float | None,
) -> SpoolSettings:
    changes: dict[str, Any] = {}
    if directory is not None:
        changes["directory"] = Path(directory).expanduser()
    if max_bytes is not None:
        changes["max_bytes"] = _positive(max_bytes, "spool_max_bytes")
    if max_batches is not None:
        changes["max_batches"] = _positive(max_batches, "spool_max_batches")
    if retry_seconds is not None:
        changes["retry_seconds"] = _positive(retry_seconds, "retry_seconds")
    return dataclasses.replace(current, **changes)


def _positive(value: Any, name: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise InvalidInputError(f"{name} {value!r} must be a positive number.")
    return value


@atexit.register
def _flush_at_exit() -> None:
    """Write queued predictions before the interpreter exits."""
    for client in list(_with_capture):
        try:
            client._close_captures()
        except Exception as error:  # the interpreter is exiting: report, do not raise
            print(f"clew: could not write captured predictions: {error}", file=sys.stderr)


def _client() -> Client:
    from clew.client.default import get_client

    return get_client()


def capture_stats() -> dict[str, Any]:
    return _client().capture_stats()


def flush_captures(timeout: float | None = 60.0) -> FlushResult:
    return _client().flush_captures(timeout)


def get_prediction(prediction_id: str) -> CapturedPrediction:
    return _client().get_prediction(prediction_id)


def log_labels(prediction_ids: Sequence[str], labels: Sequence[Any]) -> int:
    return _client().log_labels(prediction_ids, labels)


def public_key() -> str:
    return _client().public_key()


def signing_keys() -> list[dict[str, Any]]:
    return _client().signing_keys()


def rotate_signing_key(new_key_file: str | Path) -> dict[str, Any]:
    return _client().rotate_signing_key(new_key_file)


def trace(prediction_id: str) -> Trace:
    return _client().trace(prediction_id)
