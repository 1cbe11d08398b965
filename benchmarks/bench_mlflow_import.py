"""MLflow import: ``client.imports.mlflow`` beside MLflow's own client reading the same data.

An MLflow store (SQLite backend) with ``--runs`` runs of ``--points`` points of one metric,
plus three params and two tags each, is made by MLflow (its schema and experiment through its
client, the runs in bulk through its own table definitions; not timed).
Then, in one process, each in turn:

* **MLflow reads it**: ``search_runs`` page by page and ``get_metric_history`` for every
  metric of every run: what any reader of the store has to do to see the full histories;
* **clew imports it**: ``client.imports.mlflow(uri, artifacts=False)`` into a fresh embedded
  store: the same reading through MLflow's client, then every page recorded (runs, params,
  tags, every point, audit images) in its own transaction.

The import includes the read, so its ratio to the read is what clew's own recording costs on
top. Both are reported in wall seconds and CPU seconds of this process (``time.process_time``),
the figure that stays meaningful on a busy machine. Target: the whole import under 60 s for
10,000 runs × 100 points.

    uv run --group bench python benchmarks/bench_mlflow_import.py [--quick] [--runs N]
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from report import Result, finish, parser, stopwatch

import clew

TARGET_S = 60.0


def make_store(directory: Path, runs: int, points: int) -> str:
    """MLflow creates the store and the experiment; the runs are written in bulk through
    MLflow's own table definitions (logging 10,000 runs one call at a time through its client
    takes hours on a shared machine), exactly the rows its client would have written."""
    import uuid

    from mlflow import MlflowClient
    from mlflow.store.tracking.dbmodels.models import (
        SqlLatestMetric,
        SqlMetric,
        SqlParam,
        SqlRun,
        SqlTag,
    )

    uri = f"sqlite:///{directory / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("bench", artifact_location=(directory / "a").as_uri())
    engine = client._tracking_client.store.engine
    start = 1_760_000_000_000
    with engine.begin() as connection:
        for first in range(0, runs, 500):
            ids = [uuid.uuid4().hex for _ in range(first, min(first + 500, runs))]
            rows = {table: [] for table in (SqlRun, SqlMetric, SqlLatestMetric, SqlParam, SqlTag)}
            for offset, run_id in enumerate(ids):
                index = first + offset
                rows[SqlRun].append(
                    {
                        "run_uuid": run_id,
                        "name": f"run-{index}",
                        "source_type": "LOCAL",
                        "user_id": "bench",
                        "status": "FINISHED",
                        "start_time": start + index,
                        "end_time": start + index + 1000,
                        "lifecycle_stage": "active",
                        "artifact_uri": (directory / "a" / run_id / "artifacts").as_uri(),
                        "experiment_id": int(experiment),
                    }
                )
                rows[SqlMetric].extend(
                    {
                        "key": "loss",
                        "value": 1.0 / (s + 1),
                        "timestamp": start + s,
                        "step": s,
                        "is_nan": False,
                        "run_uuid": run_id,
                    }
                    for s in range(points)
                )
                if points:
                    rows[SqlLatestMetric].append(dict(rows[SqlMetric][-1]))
                params = {"alpha": str(index % 7), "depth": "6", "seed": str(index)}
                rows[SqlParam].extend(
                    {"key": k, "value": v, "run_uuid": run_id} for k, v in params.items()
                )
                tags = {"team": "risk", "stage": "bench", "mlflow.runName": f"run-{index}"}
                rows[SqlTag].extend(
                    {"key": k, "value": v, "run_uuid": run_id} for k, v in tags.items()
                )
            for table, found in rows.items():
                if found:
                    connection.execute(table.__table__.insert(), found)
    return uri


def mlflow_read(uri: str) -> int:
    """Every run and every metric's full history through MLflow's client; points read."""
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient(tracking_uri=uri)
    total = 0
    for experiment in client.search_experiments(view_type=ViewType.ALL):
        token = None
        while True:
            page = client.search_runs(
                [experiment.experiment_id],
                run_view_type=ViewType.ALL,
                max_results=1000,
                page_token=token,
            )
            for run in page:
                for key in run.data.metrics:
                    total += len(client.get_metric_history(run.info.run_id, key))
            token = page.token
            if not token:
                break
    return total


def timed(action: object) -> tuple[float, float, object]:
    cpu = time.process_time()
    with stopwatch() as elapsed:
        value = action()  # type: ignore[operator]
    return elapsed[0], time.process_time() - cpu, value


def main() -> None:
    arguments = parser(__doc__ or "")
    arguments.add_argument("--runs", type=int, default=10_000)
    arguments.add_argument("--points", type=int, default=100)
    options = arguments.parse_args()
    runs = 300 if options.quick else options.runs
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        print(f"making an MLflow store of {runs:,} runs × {options.points} points...", flush=True)
        uri = make_store(directory, runs, options.points)
        read_s, read_cpu, points = timed(lambda: mlflow_read(uri))
        client = clew.Client(str(directory / "clew"), create=True)
        import_s, import_cpu, result = timed(lambda: client.imports.mlflow(uri, artifacts=False))
        client.close()
    imported = result.metric_points  # type: ignore[attr-defined]
    if imported != points:
        raise RuntimeError(f"clew imported {imported} points, MLflow read {points}")
    note = (
        f"{runs:,} runs × {options.points} points; MLflow read {read_s:.1f} s wall, "
        f"{read_cpu:.1f} s CPU; clew import {import_s:.1f} s wall, {import_cpu:.1f} s CPU "
        f"(import/read CPU {import_cpu / read_cpu:.2f}×)"
    )
    results = [
        Result(
            "mlflow_import",
            f"import {runs:,} runs × {options.points} points",
            "s",
            False,
            import_s,
            read_s,
            "MLflow client read",
            target_value=TARGET_S,
            note=note,
        ),
        Result(
            "mlflow_import",
            "import CPU",
            "s CPU",
            False,
            import_cpu,
            read_cpu,
            "MLflow client read",
        ),
    ]
    finish("MLflow import", results, options.json)


if __name__ == "__main__":
    main()
