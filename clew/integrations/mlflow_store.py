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
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clew.errors import MissingExtraError

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
