"""The in-process backend: the services of one store, called directly (no server).

``RemoteBackend`` (clew/client/http.py) has the same attributes with the same signatures, so
``Client`` and its mixins only ever call ``self._service.<service>``.
"""

from __future__ import annotations

from collections.abc import Sequence

from clew.domain.records import RunRecord
from clew.service.approvals import ApprovalService
from clew.service.artifacts import ArtifactService
from clew.service.lineage import LineageService
from clew.service.policy import PolicyService
from clew.service.promotion import PromotionService
from clew.service.registry import RegistryService
from clew.service.runs import RunService, search_runs
from clew.store.location import Store, open_store


class EmbeddedBackend:
    def __init__(self, uri: str | None = None, artifacts: str | None = None) -> None:
        self.store: Store = open_store(uri, artifacts)
        self.runs = RunService(self.store)
        self.artifacts = ArtifactService(self.store)
        self.lineage = LineageService(self.store)
        self.registry = RegistryService(self.store)
        self.approvals = ApprovalService(self.store)
        self.promotion = PromotionService(self.store)
        self.policies = PolicyService(self.store)

    def search_runs(
        self,
        filter_text: str | None = None,
        order_by: Sequence[str] | None = None,
        max_results: int = 1000,
        experiments: Sequence[str] | None = None,
    ) -> list[RunRecord]:
        return search_runs(self.store, filter_text, order_by, max_results, experiments)

    def close(self) -> None:
        self.store.close()
