"""Run creation: start a run, log 10 params and 5 metrics, end it — clew vs MLflow on SQLite.

Both sides log params in one call and metrics in one call (MLflow's ``log_params`` and
``log_metrics`` are its batched forms), and both are warmed up with one untimed run so
one-time work (clew's code/environment capture, MLflow's experiment lookup) is excluded.
clew queues a run's params, tags and metrics and writes them with its end, so a run is two
commits (start and end). clew is timed under both SQLite sync settings
(``CLEW_SQLITE_SYNC=normal``, the default, durable against a killed process; ``full``, also
durable against power loss like MLflow's SQLite commits), ``--rounds`` times interleaved with
MLflow, each figure a median of rounds. The target is held on ``full``, MLflow's durability.
Beside the wall-clock rates, each note gives both sides' CPU time per run from the same
round (``time.process_time``): on a loaded machine that ratio is the steadier one.

    uv run --group bench python benchmarks/bench_runs.py [--runs N] [--mlflow-runs N]
        [--rounds N] [--quick]
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from mlflow_peer import open_mlflow
from report import Result, finish, fsync_ms, parser, sqlite_sync, stopwatch

import clew

TARGET_RATIO = 20.0
PARAMS = {f"param_{i}": f"value_{i}" for i in range(10)}


def metrics_for(index: int) -> dict[str, float]:
    return {f"metric_{i}": (index + i) / 100 for i in range(5)}


def clew_runs_per_s(directory: Path, runs: int, sync: str) -> tuple[float, float]:
    """(runs/s wall clock, CPU ms per run: the part fsync waits and other load do not explain)."""
    with sqlite_sync(sync):
        client = clew.Client(str(directory / f"clew-{sync}"))

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


def mlflow_runs_per_s(directory: Path, runs: int) -> tuple[float, float]:
    """(runs/s wall clock, CPU ms per run), as for clew."""
    import mlflow

    open_mlflow(directory / "mlflow")

    def one(index: int) -> None:
        with mlflow.start_run(run_name=f"run-{index}"):
            mlflow.log_params(PARAMS)
            mlflow.log_metrics(metrics_for(index))

    one(-1)
    cpu_start = time.process_time()
    with stopwatch() as elapsed:
        for index in range(runs):
            one(index)
    return runs / elapsed[0], (time.process_time() - cpu_start) * 1000 / runs


def main() -> None:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--runs", type=int, help="clew runs per setting (default 1,000)")
    arguments.add_argument("--mlflow-runs", type=int, help="MLflow runs (default 100)")
    arguments.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    options = arguments.parse_args()
    runs = options.runs or (200 if options.quick else 1_000)
    mlflow_runs = options.mlflow_runs or (30 if options.quick else 100)
    clew_rounds: dict[str, list[tuple[float, float]]] = {"normal": [], "full": []}
    mlflow_rates, fsyncs = [], []
    for _ in range(options.rounds):
        with tempfile.TemporaryDirectory(prefix="clew-bench-runs-") as temp:
            fsyncs.append(fsync_ms(Path(temp)))
            for sync, figures in clew_rounds.items():
                figures.append(clew_runs_per_s(Path(temp), runs, sync))
            mlflow_rates.append(mlflow_runs_per_s(Path(temp), mlflow_runs))
    mlflow_rate = statistics.median(rate for rate, _ in mlflow_rates)
    mlflow_cpu = statistics.median(cpu for _, cpu in mlflow_rates)
    sampled = f"median of {options.rounds} rounds: clew {runs:,} runs, MLflow {mlflow_runs:,} runs"
    results = []
    for sync, figures in clew_rounds.items():
        cpu_ms = statistics.median(cpu for _, cpu in figures)
        durability = (
            "no fsync per commit, durable against kill -9, the last commits may roll back on "
            "power loss"
            if sync == "normal"
            else f"fsync per commit, power-loss durable like MLflow's SQLite; one 4 KiB "
            f"write+fsync takes {statistics.median(fsyncs):.2f} ms here (median)"
        )
        cpu = (
            f"CPU per run: clew {cpu_ms:.2f} ms, MLflow {mlflow_cpu:.2f} ms "
            f"({mlflow_cpu / cpu_ms:.1f}×)"
        )
        results.append(
            Result(
                benchmark="runs",
                operation=f"start + 10 params + 5 metrics + end (sync={sync}"
                + (", default)" if sync == "normal" else ")"),
                unit="runs/s",
                higher_is_better=True,
                clew=statistics.median(rate for rate, _ in figures),
                peer=mlflow_rate,
                peer_name="MLflow",
                target_ratio=TARGET_RATIO if sync == "full" else None,
                note=f"{sampled}; {cpu}; {durability}",
            )
        )
    finish("Run creation (SQLite stores)", results, options.json)


if __name__ == "__main__":
    main()
