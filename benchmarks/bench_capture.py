"""Prediction capture: throughput to signed Parquet, and the overhead capture adds to predict.

* throughput: ``--rows`` predictions (10 float features, one int output) queued in 10k-row
  calls, timed until all are in signed Parquet batches recorded in the store; by wall clock
  (target 1M/s) and per CPU-second of the process (steadier on a shared machine). Median of
  ``--rounds`` rounds. One untimed 10k-row call is captured first, so the store's signing
  key, the writer thread and pyarrow's compute kernels (~1 s to load on first use) are
  ready: the figure is the steady rate, not a process's first second.
* overhead: a 10,000-row scikit-learn ``predict`` through ``LoadedModel`` against the bare
  model, for a RandomForest(50) (~70 ms) and a LogisticRegression (~0.2 ms), both with the
  default guarded inputs (target ≤ 5%), the latter also with ``copy_inputs=True`` (a private
  copy per call; reported, no target). Plain and captured calls alternate (order flipped every
  pair) and each figure is the median. Batches are written between timed calls, every
  ``WRITE_EVERY`` captured calls (the default batch size), never during one, so this is the
  cost on the caller's thread (the writer's cost is the throughput figure), with memory
  recycled as a running writer recycles it.

No peer tool signs captured predictions, so there is no ratio here; MLflow has no capture.

    uv run --group bench python benchmarks/bench_capture.py [--quick] [--rows N] [--rounds N]
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from typing import Any

import numpy as np
from report import Result, finish, parser
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

import clew
from clew.client.loaded_model import LoadedModel
from clew.domain import ids
from clew.domain.captures import Call

FEATURES = 10
CALL_ROWS = 10_000
TARGET_RATE = 1_000_000
TARGET_OVERHEAD = 5.0
WRITE_EVERY = 100  # captured calls per written batch: the default batch_rows of 1M rows


def loaded(client: clew.Client, model: Any, name: str, **options: Any) -> LoadedModel:
    with client.start_run("bench", f"train-{name}", capture_code=False) as run:
        artifact = run.log_model(model, name=name)
    return LoadedModel(model, client.register_model(artifact, name), client, **options)


def throughput(rows: int) -> tuple[float, float]:
    """Rows per wall second and per CPU-second from the first submit to the last record."""
    rng = np.random.default_rng(0)
    inputs = rng.random((CALL_ROWS, FEATURES))
    outputs = rng.integers(0, 2, CALL_ROWS)
    with tempfile.TemporaryDirectory(prefix="clew-bench-capture-") as home:
        client = clew.connect(home)
        model = loaded(client, LogisticRegression().fit(inputs, outputs), "lr")
        client.configure_capture(batch_rows=rows, max_queued_rows=rows * 2, flush_seconds=600)
        service = client._capture_service()
        target = model._targets["predict"]
        service.submit(
            target, Call(ids.new_id(), time.time_ns() // 1_000_000, CALL_ROWS, outputs, inputs)
        )
        client.flush_captures(timeout=600)
        cpu_before = os.times()
        start = time.perf_counter()
        for _ in range(rows // CALL_ROWS):
            now = time.time_ns() // 1_000_000
            service.submit(target, Call(ids.new_id(), now, CALL_ROWS, outputs, inputs))
        client.flush_captures(timeout=600)
        elapsed = time.perf_counter() - start
        cpu_after = os.times()
        stats = client.capture_stats()
        client.close()
    cpu = sum(cpu_after[:4]) - sum(cpu_before[:4])
    if stats["captured"] < rows + CALL_ROWS or stats["failed"]:
        raise RuntimeError(f"capture lost rows: {stats}")
    return rows / elapsed, rows / cpu


def overhead(
    client: clew.Client, model: LoadedModel, inputs: np.ndarray, pairs: int
) -> tuple[float, float]:
    """Percent the captured call adds to the bare model's median predict time, and that time."""
    raw = model.raw
    for _ in range(5):
        model.predict(inputs)
    client.flush_captures()
    plain: list[float] = []
    captured: list[float] = []
    for index in range(pairs):
        if index and index % WRITE_EVERY == 0:
            client.flush_captures()
        calls = [(raw.predict, plain), (model.predict, captured)]
        for call, timings in calls if index % 2 else reversed(calls):
            start = time.perf_counter()
            call(inputs)
            timings.append(time.perf_counter() - start)
    client.flush_captures()
    base = statistics.median(plain)
    return 100 * (statistics.median(captured) - base) / base, base


def main() -> None:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--rows", type=int, help="rows per throughput round (default 1M)")
    arguments.add_argument("--rounds", type=int, help="throughput rounds (default 3)")
    options = arguments.parse_args()
    rows = options.rows or (200_000 if options.quick else 1_000_000)
    rounds = options.rounds or 3  # a process's first round pays for growing memory pools
    pairs = 60 if options.quick else 300
    figures = [throughput(rows) for _ in range(rounds)]
    rate = statistics.median(f[0] for f in figures)
    per_cpu = statistics.median(f[1] for f in figures)
    common = {"benchmark": "capture", "peer_name": ""}
    results = [
        Result(
            operation="capture to signed Parquet",
            unit="predictions/s",
            higher_is_better=True,
            clew=rate,
            target_value=TARGET_RATE,
            note=f"median of {rounds} rounds of {rows:,} rows × {FEATURES} features in "
            f"{CALL_ROWS:,}-row calls, {os.cpu_count()} cores; per round: "
            + ", ".join(f"{f[0]:,.0f}" for f in figures),
            **common,
        ),
        Result(
            operation="capture per CPU-second",
            unit="predictions/CPU-s",
            higher_is_better=True,
            clew=per_cpu,
            note="user+system CPU of the whole process, so other load on the machine "
            "does not count against it",
            **common,
        ),
    ]
    X, y = make_classification(n_samples=20_000, n_features=FEATURES, random_state=0)
    batch = X[:CALL_ROWS]
    with tempfile.TemporaryDirectory(prefix="clew-bench-capture-") as home:
        client = clew.connect(home)
        client.configure_capture(batch_rows=10**8, max_queued_rows=10**8, flush_seconds=3600)
        forest = RandomForestClassifier(n_estimators=50, n_jobs=1, random_state=0).fit(X, y)
        linear = LogisticRegression(max_iter=500).fit(X, y)
        models = [
            ("RandomForest(50)", loaded(client, forest, "rf"), max(10, pairs // 10)),
            ("LogisticRegression", loaded(client, linear, "lr"), pairs),
            (
                "LogisticRegression copy_inputs=True",
                loaded(client, linear, "lr-copying", copy_inputs=True),
                pairs,
            ),
        ]
        for name, model, count in models:
            percent, base = overhead(client, model, batch, count)
            results.append(
                Result(
                    operation=f"predict overhead, 10k rows, {name}",
                    unit="%",
                    higher_is_better=False,
                    clew=percent,
                    target_value=None if model.copy_inputs else TARGET_OVERHEAD,
                    note=f"bare predict {base * 1e3:.2f} ms (median of {count} interleaved pairs)",
                    **common,
                )
            )
        client.close()
    finish("Prediction capture", results, options.json)


if __name__ == "__main__":
    main()
