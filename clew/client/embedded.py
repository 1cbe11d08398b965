"""The in-process backend: the services of one store, called directly (no server).

``RemoteBackend`` (clew/client/remote_backend.py) has the same attributes with the same
signatures, so ``Client`` and its mixins only ever call ``self._service.<service>``. The
services themselves come from ``ServiceContainer``, which the server and the web UI build the
same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from clew.client.audit import EmbeddedAudit
from clew.domain.keys import RotationRequest, SigningKey
from clew.domain.records import RunPage, RunRecord
from clew.domain.run_fields import warn_unknown_keys
from clew.service import reads, signing
from clew.service.container import ServiceContainer
from clew.service.identity import current_actor
from clew.service.runs import search_run_page, unknown_keys
from clew.store.location import Store, open_store

if TYPE_CHECKING:  # captures and traces bring numpy and pyarrow: imported where they are used
    from clew.domain.captures import CapturedPrediction
    from clew.domain.trace import Trace
    from clew.service.capture_sealing import StoreWriter


class EmbeddedPredictions:
    """Capture, lookup, trace, labels and the signing key of one store, shaped like
    ``RemotePredictions``."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def trace(self, prediction_id: str) -> Trace:
        from clew.service.trace import trace_prediction

        return trace_prediction(self.store, prediction_id)

    def log_labels(self, prediction_ids: Sequence[str], labels: Sequence[Any], actor: str) -> int:
        from clew.service import ground_truth

        return ground_truth.log_labels(self.store, list(prediction_ids), list(labels), actor)

    def labels_for(self, prediction_ids: Sequence[str]) -> dict[str, Any]:
        from clew.service import ground_truth

        return ground_truth.labels_for(self.store, list(prediction_ids))

    def public_key(self) -> str:
        return signing.store_public_key(self.store).decode()

    def signing_keys(self) -> list[SigningKey]:
        return signing.key_history(self.store)

    def rotate_signing_key(self, request: RotationRequest, actor: str) -> SigningKey:
        return signing.rotate(self.store, request, actor)

    def get_prediction(self, prediction_id: str) -> CapturedPrediction:
        from clew.service import capture_lookup

        return capture_lookup.find_prediction(self.store, prediction_id)

    def capture_writer(self, actor: str) -> StoreWriter:
        from clew.service.capture_sealing import StoreWriter

        return StoreWriter(self.store, actor)


class EmbeddedBackend(ServiceContainer):
    """The store's services (``ServiceContainer``) plus this process's predictions and audit."""

    def __init__(
        self, uri: str | None = None, artifacts: str | None = None, create: bool = False
    ) -> None:
        super().__init__(open_store(uri, artifacts, create=create))
        self.predictions = EmbeddedPredictions(self.store)
        self.audit = EmbeddedAudit(self.store)

    @property
    def actor(self) -> str:
        """Who this process's writes are attributed to: ``CLEW_USER`` or the OS user."""
        return current_actor()

    def record_read(self, digest: str, actor: str) -> None:
        """Audit this process reading ``digest`` straight from the store (if it is governed)."""
        reads.record_read(self.store, actor, digest, reads.ReadHow.EMBEDDED)

    def search_runs(
        self,
        filter_text: str | None = None,
        order_by: Sequence[str] | None = None,
        max_results: int = 1000,
        experiments: Sequence[str] | None = None,
    ) -> list[RunRecord]:
        return self.search_run_page(filter_text, order_by, max_results, experiments).runs

    def search_run_page(
        self,
        filter_text: str | None = None,
        order_by: Sequence[str] | None = None,
        max_results: int = 1000,
        experiments: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> RunPage:
        page = search_run_page(
            self.store, filter_text, order_by, max_results, experiments, page_token
        )
        warn_unknown_keys(unknown_keys(self.store, filter_text))
        return page
