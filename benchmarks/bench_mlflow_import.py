"""MLflow import: ``client.imports.mlflow`` beside MLflow's own client reading the same data.

An MLflow store (SQLite backend) with ``--runs`` runs of ``--points`` points of one metric,
plus three params and two tags each, is made with MLflow's client (``log_batch``; not timed).
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
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    uri = f"sqlite:///{directory / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("bench", artifact_location=(directory / "a").as_uri())
    start = 1_760_000_000_000
    for index in range(runs):
        run = client.create_run(experiment, run_name=f"run-{index}", start_time=start + index)
        metrics = [Metric("loss", 1.0 / (s + 1), start + s, s) for s in range(points)]
        params = [Param("alpha", str(index % 7)), Param("depth", "6"), Param("seed", str(index))]
        tags = [RunTag("team", "risk"), RunTag("stage", "bench")]
        client.log_batch(run.info.run_id, metrics=metrics, params=params, tags=tags)
        client.set_terminated(run.info.run_id, "FINISHED", end_time=start + index + 1000)
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
