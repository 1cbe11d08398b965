"""``client.imports``: bringing history from other tools (MLflow, DVC) into clew.

The other tool's store is read here, in the caller's process, with that tool's own code;
bytes go to clew's blob store as they are read, and each page of runs is recorded by the
import service (embedded, or on the server) in one transaction. Runs already imported are
recognised and left alone, so an interrupted import is finished by running it again.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from clew.domain.imports import DvcImportResult, MlflowImportResult

if TYPE_CHECKING:
    from clew.client.client import Client


class Imports:
    def __init__(self, client: Client) -> None:
        self._client = client

    def mlflow(
        self, tracking_uri: str, *, artifacts: bool = True, page_runs: int = 500
    ) -> MlflowImportResult:
        """Import every experiment and run of the MLflow store at ``tracking_uri`` (params,
        tags, full metric histories, artifacts hashed into clew's store). Deleted runs and
        runs whose artifact directory is gone are left out, each named in ``skipped``."""
        from clew.integrations.mlflow_store import read_pages

        blobs = self._client.store.blobs

        def put(path: Path) -> tuple[str, int]:
            stored = blobs.put_file(path)
            return stored.digest, stored.size

        service = self._client._service.mlflow_import
        total = MlflowImportResult()
        for page in read_pages(tracking_uri, put, page_runs, artifacts):
            if page.runs:
                total.add(service.import_runs(page.runs, self._client.actor))
            total.skipped.extend(page.skipped)
        return total

    def dvc(self, path: str | Path = ".") -> DvcImportResult:
        """Import the stages of the DVC project at ``path`` as ``dvc.lock`` records them;
        stages imported before (same lock entry) are left alone. Files whose bytes are in
        neither the DVC cache nor the workspace are recorded by reference and named in
        ``notes``."""
        from clew.integrations.dvc_project import read_project

        project = read_project(Path(path))
        service = self._client._service.dvc_import
        result = service.import_stages(project.name, project.stages, self._client.actor)
        result.notes.extend(project.notes)
        return result
