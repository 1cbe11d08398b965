"""Capture throughput (rows/s to signed Parquet) and predict overhead on a 10k-row batch.

    uv run python benchmarks/bench_capture.py

Prints: rows per second from queue to signed Parquet + recorded batch (by wall clock, and per
CPU-second of this process plus its leaf-hashing helpers, which is steadier on a shared
machine), and the overhead that capture adds to ``predict`` on 10,000 rows for two
scikit-learn models (median of interleaved calls). No peer tool signs
captured predictions, so there is no ratio here; MLflow has no capture at all.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

import numpy as np
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

import clew
from clew.client.loaded_model import LoadedModel
from clew.service.registry import RegistryService

ROWS = 1_000_000
FEATURES = 10


def loaded(client: clew.Client, model: object, name: str) -> LoadedModel:
    with client.start_run("bench", f"train-{name}", capture_code=False) as run:
        artifact = run.log_model(model, name=name)
    version = RegistryService(client.store).register(name, f"artifact:{artifact.id}", "bench")
    return LoadedModel(model, version, client)


def throughput(client: clew.Client, model: LoadedModel) -> tuple[float, float]:
    """Submit ROWS predictions in 10k-row calls, then time until all are signed and recorded.

    Returns rows per wall second and rows per CPU-second (this process and its helpers, which
    ``close`` waits for, so their CPU time is counted).
    """
    rng = np.random.default_rng(0)
    inputs = rng.random((10_000, FEATURES))
    outputs = rng.integers(0, 2, 10_000)
    client.configure_capture(batch_rows=ROWS, max_queued_rows=ROWS * 2, flush_seconds=600)
    service = client._capture_service()
    from clew.service.capture import Call

    target = model._targets["predict"]
    cpu_before = os.times()
    start = time.perf_counter()
    for _ in range(ROWS // 10_000):
        call = Call(clew.domain.ids.new_id(), time.time_ns() // 1_000_000, 10_000, outputs, inputs)
        service.submit(target, call)
    client.flush_captures(timeout=600)
    elapsed = time.perf_counter() - start
    stats = client.capture_stats()
    client.close()
    cpu_after = os.times()
    cpu = sum(cpu_after[:4]) - sum(cpu_before[:4])
    assert stats["captured"] >= ROWS and stats["failed"] == 0, stats
    return ROWS / elapsed, ROWS / cpu


def overhead(model: LoadedModel, inputs: np.ndarray, repeats: int = 100) -> tuple[float, float]:
    raw = model.raw
    plain, captured = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        raw.predict(inputs)
        plain.append(time.perf_counter() - start)
        start = time.perf_counter()
        model.predict(inputs)
        captured.append(time.perf_counter() - start)
    return statistics.median(plain), statistics.median(captured)


def main() -> None:
    X, y = make_classification(n_samples=20_000, n_features=FEATURES, random_state=0)
    with tempfile.TemporaryDirectory() as home:
        client = clew.connect(home)
        forest_model = RandomForestClassifier(n_estimators=50, n_jobs=1, random_state=0).fit(X, y)
        rate, per_cpu = throughput(client, loaded(client, forest_model, "rf"))
        print(
            f"capture: {rate:,.0f} predictions/s to signed Parquet, {per_cpu:,.0f} per CPU-second "
            f"({ROWS:,} rows, {FEATURES} features, {os.cpu_count()} cores)"
        )
        client = clew.connect(home)
        forest = loaded(client, forest_model, "rf")
        linear = loaded(client, LogisticRegression(max_iter=500).fit(X, y), "lr")
        trusting = LoadedModel(linear.raw, linear.version, client, copy_inputs=False)
        batch = X[:10_000]
        for name, model in (
            ("RandomForest(50)", forest),
            ("LogisticRegression", linear),
            ("LogisticRegression copy_inputs=False", trusting),
        ):
            plain, captured = overhead(model, batch)
            print(
                f"predict 10k rows {name}: {plain * 1e3:.2f} ms plain, {captured * 1e3:.2f} ms "
                f"captured, overhead {100 * (captured - plain) / plain:+.1f}%"
            )
        client.flush_captures()
        client.close()


if __name__ == "__main__":
    main()
