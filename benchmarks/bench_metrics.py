"""Metric logging: clew ``run.log_metric`` one point at a time vs MLflow on SQLite.

clew is timed from the first ``log_metric`` to the end of ``run.end()``, so the final flush of
the background batcher is included: every point is in the database when the clock stops.
MLflow is timed one point per ``log_metric`` call (its per-call round trip makes it slow, so
it gets fewer points; throughput is what is compared) and with ``log_batch`` in batches of
1,000 (MLflow's per-request limit).

    uv run --group bench python benchmarks/bench_metrics.py [--points N] [--quick]
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from mlflow_peer import open_mlflow
from report import Result, finish, parser, stopwatch

import clew

TARGET_POINTS_PER_S = 100_000
MLFLOW_BATCH = 1_000


def clew_points_per_s(directory: Path, points: int) -> tuple[float, float, float]:
    """Sustained points/s including the final flush, log_metric calls/s before the flush,
    and points per CPU-second of this process (all threads): the rate a quiet machine allows.
    """
    client = clew.Client(str(directory / "clew"))
    run = client.start_run(experiment="bench", name="metrics")
    cpu_start = time.process_time()
    with stopwatch() as total:
        with stopwatch() as calls:
            for step in range(points):
                run.log_metric("loss", 1.0 / (step + 1), step=step)
        run.end()
    cpu = time.process_time() - cpu_start
    history = client.metric_history(run.id, "loss")
    if len(history) != points:
        raise RuntimeError(f"clew stored {len(history)} of {points} points")
    client.close()
    return points / total[0], points / calls[0], points / cpu


def mlflow_one_by_one(directory: Path, points: int) -> float:
    import mlflow

    open_mlflow(directory / "one")
    with mlflow.start_run(), stopwatch() as elapsed:
        for step in range(points):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
    return points / elapsed[0]


def mlflow_batched(directory: Path, points: int) -> float:
    from mlflow.entities import Metric

    client, experiment_id = open_mlflow(directory / "batch")
    run_id = client.create_run(experiment_id).info.run_id
    with stopwatch() as elapsed:
        for first in range(0, points, MLFLOW_BATCH):
            stamp = int(time.time() * 1000)
            batch = [
                Metric("loss", 1.0 / (step + 1), stamp, step)
                for step in range(first, min(first + MLFLOW_BATCH, points))
            ]
            client.log_batch(run_id, metrics=batch)
    client.set_terminated(run_id)
    return points / elapsed[0]


def main() -> None:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--points", type=int, help="clew points (default 1,000,000)")
    arguments.add_argument("--mlflow-points", type=int, help="MLflow log_metric points")
    arguments.add_argument("--mlflow-batch-points", type=int, help="MLflow log_batch points")
    options = arguments.parse_args()
    points = options.points or (100_000 if options.quick else 1_000_000)
    single = options.mlflow_points or (200 if options.quick else 1_000)
    batched = options.mlflow_batch_points or (10_000 if options.quick else 100_000)
    with tempfile.TemporaryDirectory(prefix="clew-bench-metrics-") as temp:
        directory = Path(temp)
        sustained, calls, per_cpu = clew_points_per_s(directory, points)
        one = mlflow_one_by_one(directory, single)
        batch = mlflow_batched(directory, batched)
    common = {"benchmark": "metrics", "unit": "points/s", "higher_is_better": True}
    results = [
        Result(
            operation="log_metric one by one, incl. final flush",
            clew=sustained,
            peer=one,
            peer_name="MLflow log_metric",
            target_value=TARGET_POINTS_PER_S,
            note=f"clew {points:,} points ({calls:,.0f} log_metric calls/s before the flush; "
            f"{per_cpu:,.0f} points per CPU-second); MLflow {single:,} points",
            **common,
        ),
        Result(
            operation="vs MLflow log_batch (1,000 per batch)",
            clew=sustained,
            peer=batch,
            peer_name="MLflow log_batch",
            target_value=TARGET_POINTS_PER_S,
            note=f"MLflow {batched:,} points",
            **common,
        ),
    ]
    finish("Metric logging (SQLite stores)", results, options.json)


if __name__ == "__main__":
    main()
