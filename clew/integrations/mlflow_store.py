"""Reading an MLflow tracking store with MLflow's own client, page by page, as plain values.

Whatever MLflow can open (a SQLite or PostgreSQL backend, a file store, a tracking server)
clew can import: experiments, runs with params, tags and full metric histories (on MLflow's
SQL stores a page's histories come from one query of MLflow's own ``metrics`` table), and run
artifacts, whose bytes are handed to ``put`` (clew's blob store) as they are downloaded so the
page that names them can be recorded. Runs MLflow has deleted, and runs with an artifact
MLflow lists but cannot deliver, are not imported; each becomes one sentence in ``skipped``
(a later import brings them once they are restored).
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from clew.errors import InvalidInputError, MissingExtraError

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Experiment, Run

PAGE_RUNS = 500
Put = Callable[[Path], tuple[str, int]]
"""Store a file's bytes; return its digest and size."""


class MissingArtifact(Exception):
    """An artifact MLflow lists but cannot deliver."""

    def __init__(self, path: str, why: str) -> None:
        super().__init__(path)
        self.path = path
        self.why = why


def require_store(tracking_uri: str) -> None:
    """Refuse a local tracking URI that names no store: MLflow's client would create an empty
    one there (a SQLite file, an ``mlruns`` directory), and a mistyped path would import
    nothing and report success."""
    local = _local_path(tracking_uri)
    if local is not None and not local.exists():
        raise InvalidInputError(
            f"no MLflow store at {local}; pass the tracking URI of an existing MLflow store "
            "(sqlite:///path/to/mlflow.db, a directory of runs, or http://host:5000)."
        )


# Tracking URIs MLflow takes without "://" that name a service, not a path.
_REMOTE_NAMES = frozenset({"databricks", "databricks-uc", "uc"})


def _local_path(tracking_uri: str) -> Path | None:
    """The file or directory a SQLite, ``file:`` or plain-path tracking URI names."""
    scheme, found, rest = tracking_uri.partition("://")
    if not found:
        if tracking_uri in _REMOTE_NAMES:
            return None
        return Path(tracking_uri).expanduser()
    if scheme == "file":
        return Path(unquote(urlsplit(tracking_uri).path))
    if scheme == "sqlite" and rest.startswith("/") and len(rest) > 1:
        return Path(rest[1:].partition("?")[0])
    return None


@dataclass
class Page:
    """One page of runs, ready for ``MlflowImportService.import_runs``."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def read_pages(
    tracking_uri: str, put: Put, page_runs: int = PAGE_RUNS, artifacts: bool = True
) -> Iterator[Page]:
    """Every run of every experiment, ``page_runs`` at a time."""
    if importlib.util.find_spec("mlflow") is None:
        raise MissingExtraError(
            "importing from MLflow reads the store with MLflow's own client; install it in "
            "this environment first: pip install mlflow"
        )
    require_store(tracking_uri)
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient(tracking_uri=tracking_uri)
    batch: list[tuple[Experiment, Run]] = []
    skipped: list[str] = []
    for experiment in client.search_experiments(view_type=ViewType.ALL):
        for run in _runs(client, experiment.experiment_id):
            problem = _skip_reason(experiment, run)
            if problem:
                skipped.append(problem)
                continue
            batch.append((experiment, run))
            if len(batch) >= page_runs:
                yield _page(client, batch, put if artifacts else None, skipped)
                batch, skipped = [], []
    if batch or skipped:
        yield _page(client, batch, put if artifacts else None, skipped)


def _page(
    client: MlflowClient, batch: list[tuple[Experiment, Run]], put: Put | None, skipped: list[str]
) -> Page:
    """A page of runs with their full metric histories (read in bulk where MLflow's store
    can, one history per run and key where it cannot) and their artifacts."""
    histories = _histories(client, [run for _, run in batch])
    page = Page(skipped=skipped)
    for experiment, run in batch:
        try:
            page.runs.append(_run(client, experiment, run, histories, put))
        except MissingArtifact as missing:
            page.skipped.append(
                f"MLflow run {run.info.run_id} ({run.info.run_name}) has artifacts under "
                f"{missing.path!r} that MLflow cannot read ({missing.why}), so the run was "
                "not imported; restore the files and import again."
            )
    return page


History = dict[tuple[str, str], list[list[Any]]]


def _runs(client: MlflowClient, experiment_id: str) -> Iterator[Run]:
    from mlflow.entities import ViewType

    token = None
    while True:
        found = client.search_runs(
            [experiment_id], run_view_type=ViewType.ALL, max_results=1000, page_token=token
        )
        yield from found
        token = found.token
        if not token:
            return


def _histories(client: MlflowClient, runs: list[Run]) -> History:
    """Every point of every metric of ``runs``: one query for the page on MLflow's SQL stores
    (its own ``metrics`` table, read without building an ORM object per point), else one
    history per run and key through the client."""
    store = client._tracking_client.store
    engine = getattr(store, "engine", None)
    if engine is not None:
        return _sql_histories(engine, [run.info.run_id for run in runs])
    found: History = {}
    for run in runs:
        for key in run.data.metrics:
            history = client.get_metric_history(run.info.run_id, key)
            found[(run.info.run_id, key)] = [[key, m.value, m.step, m.timestamp] for m in history]
    return found


def _sql_histories(engine: Any, run_ids: list[str]) -> History:
    from mlflow.store.tracking.dbmodels.models import SqlMetric
    from sqlalchemy import select

    table = SqlMetric.__table__
    query = select(
        table.c.run_uuid,
        table.c.key,
        table.c.value,
        table.c.step,
        table.c.timestamp,
        table.c.is_nan,
    ).where(table.c.run_uuid.in_(run_ids))
    found: History = {}
    with engine.connect() as connection:
        for run_id, key, value, step, stamp, is_nan in connection.execute(query):
            point = [key, float("nan") if is_nan else value, step, stamp]
            found.setdefault((run_id, key), []).append(point)
    return found


def _skip_reason(experiment: Experiment, run: Run) -> str | None:
    info = run.info
    if info.lifecycle_stage == "deleted" or experiment.lifecycle_stage == "deleted":
        return (
            f"MLflow run {info.run_id} ({info.run_name}) is deleted in MLflow, so it was not "
            "imported; restore it there (mlflow runs restore) and import again to bring it."
        )
    return None


def _run(
    client: MlflowClient, experiment: Experiment, run: Run, histories: History, put: Put | None
) -> dict[str, Any]:
    info, data = run.info, run.data
    points = [point for key in data.metrics for point in histories.get((info.run_id, key), [])]
    return {
        "run_id": info.run_id,
        "experiment": experiment.name,
        "experiment_id": experiment.experiment_id,
        "name": info.run_name or info.run_id,
        "status": info.status,
        "start_ms": info.start_time or 0,
        "end_ms": info.end_time,
        "user": info.user_id or "",
        "params": dict(data.params),
        "tags": {k: v for k, v in data.tags.items() if k != "mlflow.runName"},
        "metrics": points,
        "artifacts": [] if put is None else _artifacts(client, info.run_id, put),
    }


def _artifacts(client: MlflowClient, run_id: str, put: Put) -> list[dict[str, Any]]:
    """Every artifact file of a run, downloaded once and put in clew's blob store."""
    from mlflow.exceptions import MlflowException

    found = []
    with tempfile.TemporaryDirectory(prefix="clew-mlflow-") as scratch:
        for path in _files(client, run_id, None):
            try:
                local = Path(client.download_artifacts(run_id, path, scratch))
            except (OSError, MlflowException) as error:
                raise MissingArtifact(path, str(error).splitlines()[0][:200]) from None
            digest, size = put(local)
            found.append({"path": path, "digest": digest, "size": size})
            local.unlink()
    return found


def _files(client: MlflowClient, run_id: str, path: str | None) -> Iterator[str]:
    from mlflow.exceptions import MlflowException

    try:
        listed = client.list_artifacts(run_id, path)
    except (OSError, MlflowException) as error:
        raise MissingArtifact(path or ".", str(error).splitlines()[0][:200]) from None
    for info in listed:
        if info.is_dir:
            yield from _files(client, run_id, info.path)
        else:
            yield info.path


# --- the model registry and logged models -------------------------------------------------

PAGE_VERSIONS = 200
Prepare = Callable[[Path, str], dict[str, Any]]
"""Store a downloaded model directory as a clew model named ``name``; return its artifact
value for the import service (name, digest, size, blobs, properties)."""


@dataclass
class RegistryPage:
    """Logged models, or one registered model with a share of its versions, ready for
    ``MlflowImportService.import_models``; what could not be read is named in ``skipped``."""

    page: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def read_registry(
    tracking_uri: str, prepare: Prepare, page_versions: int = PAGE_VERSIONS
) -> Iterator[RegistryPage]:
    """MLflow 3 logged models first (so a version made from one shares its clew artifact),
    then each registered model with its versions, ``page_versions`` at a time; a model's
    aliases travel with its last page, once every version they may name has been sent."""
    from mlflow import MlflowClient

    require_store(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    with tempfile.TemporaryDirectory(prefix="clew-mlflow-models-") as scratch:
        logged = RegistryPage({"logged_models": []})
        for model in _logged_models(client):
            try:
                logged.page["logged_models"].append(
                    _logged(
                        model,
                        _download(
                            tracking_uri, model.artifact_location, scratch, prepare, model.name
                        ),
                    )
                )
            except MissingArtifact as missing:
                logged.skipped.append(
                    f"MLflow logged model {model.model_id} ({model.name}) has no readable files "
                    f"at {missing.path!r} ({missing.why}), so it was not imported; restore the "
                    "files and import again."
                )
        if logged.page["logged_models"] or logged.skipped:
            yield logged
        for registered in _registered_models(client):
            yield from _model_pages(
                client, tracking_uri, registered, scratch, prepare, page_versions
            )


def _logged_models(client: MlflowClient) -> Iterator[Any]:
    """Every logged model of every experiment (none on an MLflow without them)."""
    from mlflow.entities import ViewType

    search = getattr(client, "search_logged_models", None)
    if search is None:
        return
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    if not experiments:
        return
    token = None
    while True:
        found = search(experiment_ids=experiments, max_results=100, page_token=token)
        yield from found
        token = found.token
        if not token:
            return


def _registered_models(client: MlflowClient) -> Iterator[Any]:
    token = None
    while True:
        found = client.search_registered_models(max_results=100, page_token=token)
        yield from found
        token = found.token
        if not token:
            return


def _model_pages(
    client: MlflowClient,
    tracking_uri: str,
    registered: Any,
    scratch: str,
    prepare: Prepare,
    page_versions: int,
) -> Iterator[RegistryPage]:
    quoted = registered.name.replace("'", "\\'")
    versions = sorted(
        client.search_model_versions(f"name = '{quoted}'"), key=lambda found: int(found.version)
    )
    aliases = {alias: int(number) for alias, number in (registered.aliases or {}).items()}
    for start in range(0, max(len(versions), 1), page_versions):
        chunk = versions[start : start + page_versions]
        last = start + page_versions >= len(versions)
        page = RegistryPage()
        values = []
        for version in chunk:
            try:
                values.append(_version(client, tracking_uri, version, scratch, prepare))
            except MissingArtifact as missing:
                page.skipped.append(
                    f"MLflow model {registered.name} version {version.version} has no readable "
                    f"model at {missing.path!r} ({missing.why}), so it was not registered; "
                    "restore the files and import again."
                )
        page.page["models"] = [
            {
                "name": registered.name,
                "description": registered.description or "",
                "tags": dict(registered.tags or {}),
                "aliases": aliases if last else {},
                "versions": values,
            }
        ]
        yield page


def _version(
    client: MlflowClient, tracking_uri: str, version: Any, scratch: str, prepare: Prepare
) -> dict[str, Any]:
    number = int(version.version)
    location = client.get_model_version_download_uri(version.name, str(number))
    name = _model_name(client, version)
    return {
        "version": number,
        "run_id": version.run_id or None,
        "model_id": getattr(version, "model_id", None),
        "source": str(version.source or ""),
        "created_ms": int(version.creation_timestamp or 0),
        "user_id": version.user_id or None,
        "description": version.description or "",
        "status": str(version.status or ""),
        "stage": str(version.current_stage or "None"),
        "aliases": list(version.aliases or []),
        "tags": dict(version.tags or {}),
        "artifact": _download(tracking_uri, location, scratch, prepare, name),
    }


def _model_name(client: MlflowClient, version: Any) -> str:
    """The name of a version's model: its logged model's (MLflow 3, so both share one clew
    artifact), else the last part of its source (``runs:/<id>/model`` -> ``model``)."""
    from mlflow.exceptions import MlflowException

    parts = Path(str(version.source or "model").rstrip("/")).parts
    model_id = getattr(version, "model_id", None)
    if not model_id and len(parts) >= 2 and parts[-1] == "artifacts" and parts[-2][:2] == "m-":
        model_id = parts[-2]
    if model_id:
        try:
            return str(client.get_logged_model(model_id).name)
        except MlflowException:
            pass
    return parts[-1] if parts else "model"


def _logged(model: Any, artifact: dict[str, Any]) -> dict[str, Any]:
    return {
        "model_id": model.model_id,
        "name": model.name,
        "run_id": model.source_run_id or None,
        "source": str(model.model_uri or model.artifact_location),
        "created_ms": int(model.creation_timestamp or 0),
        "status": str(getattr(model.status, "name", model.status) or ""),
        "tags": dict(model.tags or {}),
        "params": dict(model.params or {}),
        "artifact": artifact,
    }


def _download(
    tracking_uri: str, location: str, scratch: str, prepare: Prepare, name: str
) -> dict[str, Any]:
    """The model's directory, downloaded with MLflow's own code and handed to ``prepare`` as
    ``model/`` whatever MLflow called it (so the same files are the same clew digest); a
    location MLflow cannot read, or one holding no file, is a ``MissingArtifact``."""
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    target = Path(tempfile.mkdtemp(dir=scratch))
    try:
        local = Path(
            download_artifacts(
                artifact_uri=location, dst_path=str(target), tracking_uri=tracking_uri
            )
        )
    except (OSError, MlflowException) as error:
        raise MissingArtifact(location, str(error).splitlines()[0][:200]) from None
    if not local.exists() or (local.is_dir() and not any(p.is_file() for p in local.rglob("*"))):
        raise MissingArtifact(location, "no files there")
    named = local.rename(target / "model") if local.is_dir() and local.name != "model" else local
    try:
        return prepare(named, name)
    finally:
        shutil.rmtree(target, ignore_errors=True)
