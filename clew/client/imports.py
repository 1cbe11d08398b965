"""``client.imports``: bringing history from other tools (MLflow, DVC) into clew.

The other tool's store is read here, in the caller's process, with that tool's own code;
bytes go to clew's blob store as they are read, and each page of runs is recorded by the
import service (embedded, or on the server) in one transaction. Runs already imported are
recognised and left alone, so an interrupted import is finished by running it again.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clew.domain.imports import DvcImportResult, MlflowImportResult

if TYPE_CHECKING:
    from clew.client.client import Client


class Imports:
    def __init__(self, client: Client) -> None:
        self._client = client

    def mlflow(
        self,
        tracking_uri: str,
        *,
        artifacts: bool = True,
        models: bool = True,
        page_runs: int = 500,
    ) -> MlflowImportResult:
        """Import every experiment and run of the MLflow store at ``tracking_uri`` (params,
        tags, full metric histories, artifacts hashed into clew's store), then, with
        ``models``, its logged models and registered models: versions registered (never
        approved) and aliases and stages set where the policy allows (docs/integrations.md).
        Deleted runs and runs or versions whose files are gone are left out, each named in
        ``skipped``; aliases the policy does not let the import set are named in ``notes``."""
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
        if models:
            self._mlflow_models(tracking_uri, total)
        return total

    def _mlflow_models(self, tracking_uri: str, total: MlflowImportResult) -> None:
        """Logged and registered models: each model directory MLflow delivers is stored as a
        clew model (the ``files`` flavor: ``clew.load_model`` gives back its directory)."""
        from clew.client import inputs
        from clew.integrations import flavors
        from clew.integrations.mlflow_store import read_registry

        blobs = self._client.store.blobs

        def prepare(path: Path, name: str) -> dict[str, Any]:
            with tempfile.TemporaryDirectory(prefix="clew-mlflow-model-") as temp:
                directory = Path(temp) / "model"
                directory.mkdir()
                description = flavors.save(path, directory, flavors.get("files"))
                prepared = inputs.prepare(
                    directory,
                    blobs,
                    name=inputs.safe_name(name),
                    type_="model",
                    direction="output",
                    properties={"flavor": description},
                )
            return {
                "name": prepared.name,
                "digest": prepared.digest,
                "size": prepared.size,
                "blobs": {digest: list(entry) for digest, entry in prepared.blobs.items()},
                "properties": prepared.properties,
            }

        service = self._client._service.mlflow_import
        for page in read_registry(tracking_uri, prepare):
            if page.page.get("models") or page.page.get("logged_models"):
                total.add(service.import_models(page.page, self._client.actor))
            total.skipped.extend(page.skipped)

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
