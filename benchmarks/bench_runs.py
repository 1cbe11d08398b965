"""Run creation: start a run, log 10 params and 5 metrics, end it — clew vs MLflow on SQLite.

Both sides log params in one call and metrics in one call (MLflow's ``log_params`` and
``log_metrics`` are its batched forms), and both are warmed up with one untimed run so
one-time work (clew's code/environment capture, MLflow's experiment lookup) is excluded.

    uv run --group bench python benchmarks/bench_runs.py [--runs N] [--mlflow-runs N] [--quick]
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from mlflow_peer import open_mlflow
from report import Result, finish, fsync_ms, parser, stopwatch

import clew

TARGET_RATIO = 20.0
PARAMS = {f"param_{i}": f"value_{i}" for i in range(10)}


def metrics_for(index: int) -> dict[str, float]:
    return {f"metric_{i}": (index + i) / 100 for i in range(5)}


def clew_runs_per_s(directory: Path, runs: int) -> tuple[float, float]:
    """(runs/s wall clock, CPU ms per run: the part fsync waits and other load do not explain)."""
    client = clew.Client(str(directory / "clew"))

    def one(index: int) -> None:
        with client.start_run(experiment="bench", name=f"run-{index}") as run:
            run.log_params(PARAMS)
            run.log_metrics(metrics_for(index))

    one(-1)
    cpu_start = time.process_time()
    with stopwatch() as elapsed:
        for index in range(runs):
            one(index)
    cpu_ms = (time.process_time() - cpu_start) * 1000 / runs
    found = client.search_runs("params.param_0 = 'value_0'", max_results=runs + 1)
    if len(found) != runs + 1:
        raise RuntimeError(f"clew search found {len(found)} of {runs + 1} runs")
    client.close()
    return runs / elapsed[0], cpu_ms


def mlflow_runs_per_s(directory: Path, runs: int) -> float:
    import mlflow

    open_mlflow(directory / "mlflow")

    def one(index: int) -> None:
        with mlflow.start_run(run_name=f"run-{index}"):
            mlflow.log_params(PARAMS)
            mlflow.log_metrics(metrics_for(index))

    one(-1)
    with stopwatch() as elapsed:
        for index in range(runs):
            one(index)
    return runs / elapsed[0]


def main() -> None:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--runs", type=int, help="clew runs (default 1,000)")
    arguments.add_argument("--mlflow-runs", type=int, help="MLflow runs (default 100)")
    options = arguments.parse_args()
    runs = options.runs or (200 if options.quick else 1_000)
    mlflow_runs = options.mlflow_runs or (30 if options.quick else 100)
    with tempfile.TemporaryDirectory(prefix="clew-bench-runs-") as temp:
        fsync = fsync_ms(Path(temp))
        clew_rate, clew_cpu_ms = clew_runs_per_s(Path(temp), runs)
        mlflow_rate = mlflow_runs_per_s(Path(temp), mlflow_runs)
    result = Result(
        benchmark="runs",
        operation="start + 10 params + 5 metrics + end",
        unit="runs/s",
        higher_is_better=True,
        clew=clew_rate,
        peer=mlflow_rate,
        peer_name="MLflow",
        target_ratio=TARGET_RATIO,
        note=f"clew {runs:,} runs ({clew_cpu_ms:.2f} CPU-ms per run), MLflow {mlflow_runs:,} "
        f"runs; one 4 KiB write+fsync takes {fsync:.2f} ms here (median)",
    )
    finish("Run creation (SQLite stores)", [result], options.json)


if __name__ == "__main__":
    main()
