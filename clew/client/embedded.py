"""The in-process backend: the services of one store, called directly (no server)."""

from __future__ import annotations

from clew.service.artifacts import ArtifactService
from clew.service.lineage import LineageService
from clew.service.runs import RunService
from clew.store.location import Store, open_store


class EmbeddedBackend:
    def __init__(self, uri: str | None = None, artifacts: str | None = None) -> None:
        self.store: Store = open_store(uri, artifacts)
        self.runs = RunService(self.store)
        self.artifacts = ArtifactService(self.store)
        self.lineage = LineageService(self.store)

    def close(self) -> None:
        self.store.close()
