"""Prediction capture, whole: what ``load_model(...).predict`` costs with the writer running.

* whole cost: a registered LogisticRegression is loaded with ``client.load_model`` and called
  ``--rows / 10,000`` times on 10,000-row float64 arrays (10 features) with the default
  capture settings, the writer thread running as it does in production (batches of up to 1M
  rows, or whatever is queued after a second); the round ends when ``flush_captures()`` has
  every row in a signed Parquet batch recorded in the store, inside the timed region. CPU is
  the whole process's user+system time (``resource.getrusage``: every thread, the writer's
  included). In the same round the bare model is called on the same arrays (the model's own
  CPU, subtracted to get capture's share) and the **yardstick** writes the same rows — the
  same columns built from the same arrays, the same Parquet settings (zstd level 1,
  dictionary-encoded model columns, statistics on ``prediction_id``), fsynced — with pyarrow
  alone. Capture's CPU per row ÷ the yardstick's is the ratio the target (≤ 2×) is held to.
  The first round is cold (the process's first batch: signing key, writer thread, pyarrow's
  kernels, memory pools); the best of the others is reported beside it.
* caller latency: the same calls' median wall time per 10k-row ``predict``, captured and bare.
* predict overhead: a 10,000-row ``predict`` through ``load_model`` against the bare model,
  for a RandomForest(50) (~70 ms) and a LogisticRegression (~0.2 ms) with the default guarded
  inputs (target ≤ 5%), the latter also with ``copy_inputs=True`` (a private copy per call;
  reported, no target). Plain and captured calls alternate (order flipped every pair), the
  writer running with the default settings, and each figure is the median of the pairs.

No peer tool signs captured predictions, so the yardstick is pyarrow writing the same Parquet;
MLflow has no capture.

    uv run --group bench python benchmarks/bench_capture.py [--quick] [--rows N] [--rounds N]
"""

from __future__ import annotations

import os
import resource
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from report import Result, finish, parser
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

import clew
from clew.domain import ids

FEATURES = 10
CALL_ROWS = 10_000
TARGET_RATE = 1_000_000
TARGET_YARDSTICK = 2.0
TARGET_OVERHEAD = 5.0


def cpu_seconds() -> float:
    """User+system CPU of the whole process, every thread included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class Round:
    """One round of ``rows`` predictions: wall and CPU seconds of each contender."""

    rows: int
    captured_wall: float
    captured_cpu: float
    bare_cpu: float
    yardstick_cpu: float
    captured_call_ms: float
    bare_call_ms: float

    @property
    def rate(self) -> float:
        return self.rows / self.captured_wall

    @property
    def per_cpu(self) -> float:
        return self.rows / self.captured_cpu

    @property
    def capture_ns(self) -> float:
        return 1e9 * (self.captured_cpu - self.bare_cpu) / self.rows

    @property
    def yardstick_ns(self) -> float:
        return 1e9 * self.yardstick_cpu / self.rows

    @property
    def ratio(self) -> float:
        return self.capture_ns / self.yardstick_ns


def registered(client: clew.Client, model: Any, name: str) -> str:
    """Log and register ``model``; the ref ``load_model`` takes."""
    with client.start_run("bench", f"train-{name}", capture_code=False) as run:
        artifact = run.log_model(model, name=name)
    version = client.register_model(artifact, name)
    return f"{name}/{version.version}"


def timed_calls(predict: Any, arrays: list[np.ndarray]) -> tuple[float, float, list[float]]:
    """Wall and CPU seconds of calling ``predict`` on every array, and each call's wall time."""
    calls = []
    cpu, start = cpu_seconds(), time.perf_counter()
    for array in arrays:
        began = time.perf_counter()
        predict(array)
        calls.append(time.perf_counter() - began)
    return time.perf_counter() - start, cpu_seconds() - cpu, calls


def whole_round(client: clew.Client, model: Any, arrays: list[np.ndarray], scratch: Path) -> Round:
    """One round: the bare model, the captured model flushed to signed Parquet, the yardstick."""
    rows = CALL_ROWS * len(arrays)
    before = client.capture_stats()["captured"]
    _, bare_cpu, bare_calls = timed_calls(model.raw.predict, arrays)
    cpu, start = cpu_seconds(), time.perf_counter()
    _, _, captured_calls = timed_calls(model.predict, arrays)
    flushed = client.flush_captures(timeout=600)
    captured_wall, captured_cpu = time.perf_counter() - start, cpu_seconds() - cpu
    if not flushed.complete or flushed["captured"] - before != rows or flushed["failed"]:
        raise RuntimeError(f"capture lost rows: {dict(flushed)}")
    outputs = [model.raw.predict(array) for array in arrays]
    cpu = cpu_seconds()
    yardstick(model.version, arrays, outputs, scratch / "yardstick.parquet")
    return Round(
        rows,
        captured_wall,
        captured_cpu,
        bare_cpu,
        cpu_seconds() - cpu,
        1e3 * statistics.median(captured_calls),
        1e3 * statistics.median(bare_calls),
    )


def yardstick(
    version: Any, arrays: list[np.ndarray], outputs: list[np.ndarray], path: Path
) -> None:
    """The same rows written with pyarrow alone: the columns clew stores (but its Merkle leaf
    number) built from the same arrays, written with the same Parquet settings, fsynced."""
    count = sum(len(array) for array in arrays)
    call_ids = pa.array([ids.new_id() for _ in arrays], pa.string())
    which = pa.array(np.repeat(np.arange(len(arrays), dtype=np.int32), CALL_ROWS))
    rows = pa.array(np.tile(np.arange(CALL_ROWS, dtype=np.int64), len(arrays)))
    now = time.time_ns() // 1_000_000
    features = np.concatenate(arrays).T
    table = pa.table(
        {
            "prediction_id": pc.binary_join_element_wise(
                call_ids.take(which), pc.cast(rows, pa.string()), "."
            ),
            "time": pa.array(np.full(count, now, dtype=np.int64), pa.timestamp("ms", tz="UTC")),
            "model_name": pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(count, dtype=np.int32)), pa.array([version.name])
            ),
            "model_version": pa.array(np.full(count, version.version, dtype=np.int32)),
            "model_digest": pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(count, dtype=np.int32)), pa.array([version.digest])
            ),
            "inputs": pa.StructArray.from_arrays(
                [pa.array(column) for column in features],
                names=[f"f{j}" for j in range(FEATURES)],
            ),
            "output": pa.array(np.concatenate(outputs)),
        }
    )
    pq.write_table(
        table,
        path,
        row_group_size=65_536,
        compression="zstd",
        compression_level=1,
        use_dictionary=["model_name", "model_digest"],
        write_statistics=["prediction_id"],
    )
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def whole_cost(rows: int, rounds: int) -> list[Round]:
    """``rounds`` rounds of ``rows`` predictions in one fresh process-wide store."""
    X, y = make_classification(n_samples=20_000, n_features=FEATURES, random_state=0)
    rng = np.random.default_rng(0)
    arrays = [rng.random((CALL_ROWS, FEATURES)) for _ in range(rows // CALL_ROWS)]
    with tempfile.TemporaryDirectory(prefix="clew-bench-capture-") as home:
        client = clew.connect(home)
        model = client.load_model(registered(client, LogisticRegression().fit(X, y), "lr"))
        figures = [whole_round(client, model, arrays, Path(home)) for _ in range(rounds)]
        client.close()
    return figures


def overhead(
    client: clew.Client, model: Any, inputs: np.ndarray, pairs: int
) -> tuple[float, float]:
    """Percent the captured call adds to the bare model's median predict time, and that time;
    the writer runs with the default settings, between and during the timed calls."""
    raw = model.raw
    for _ in range(5):
        model.predict(inputs)
    plain: list[float] = []
    captured: list[float] = []
    for index in range(pairs):
        calls = [(raw.predict, plain), (model.predict, captured)]
        for call, timings in calls if index % 2 else reversed(calls):
            start = time.perf_counter()
            call(inputs)
            timings.append(time.perf_counter() - start)
    client.flush_captures()
    base = statistics.median(plain)
    return 100 * (statistics.median(captured) - base) / base, base


def whole_results(figures: list[Round]) -> list[Result]:
    cold, rest = figures[0], figures[1:] or figures
    best = min(rest, key=lambda f: f.captured_cpu)
    capture_ns = min(f.capture_ns for f in rest)
    yardstick_ns = min(f.yardstick_ns for f in rest)
    common = {"benchmark": "capture"}
    shape = (
        f"{cold.rows:,} rows × {FEATURES} float64 features in {CALL_ROWS:,}-row "
        f"load_model(...).predict calls, writer running, flush_captures() timed; "
        f"{len(figures)} rounds"
    )
    return [
        Result(
            operation="capture through predict, whole process CPU (best; cold round)",
            unit="predictions/CPU-s",
            higher_is_better=True,
            clew=best.per_cpu,
            target_value=TARGET_RATE,
            peer_name="",
            note=f"{shape}; user+system CPU of every thread, the model's own predict included; "
            f"cold round {cold.per_cpu:,.0f}; all rounds: "
            + ", ".join(f"{f.per_cpu:,.0f}" for f in figures),
            **common,
        ),
        Result(
            operation="capture CPU per row ÷ pyarrow writing the same Parquet (best ÷ best)",
            unit="×",
            higher_is_better=False,
            clew=capture_ns / yardstick_ns,
            target_value=TARGET_YARDSTICK,
            peer_name="",
            note=f"capture = a round's CPU minus the bare model's on the same arrays; best "
            f"{capture_ns:,.0f} ns/row against pyarrow alone's best {yardstick_ns:,.0f} ns/row; "
            f"cold round {cold.capture_ns:,.0f} vs {cold.yardstick_ns:,.0f} ns/row "
            f"({cold.ratio:.2f}×); per round: " + ", ".join(f"{f.ratio:.2f}" for f in figures),
            **common,
        ),
        Result(
            operation="capture to signed Parquet, wall clock (best; cold round)",
            unit="predictions/s",
            higher_is_better=True,
            clew=max(f.rate for f in rest),
            peer_name="",
            note=f"first predict to flush_captures() returning; cold round {cold.rate:,.0f}; "
            f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}",
            **common,
        ),
        Result(
            operation="caller latency per 10k-row predict, captured (bare)",
            unit="ms",
            higher_is_better=False,
            clew=statistics.median(f.captured_call_ms for f in rest),
            peer=statistics.median(f.bare_call_ms for f in rest),
            peer_name="bare model",
            note="median wall time of one call in the rounds above (the writer busy meanwhile); "
            f"cold round {cold.captured_call_ms:.3f} ms ({cold.bare_call_ms:.3f} bare)",
            **common,
        ),
    ]


def overhead_results(pairs: int) -> list[Result]:
    X, y = make_classification(n_samples=20_000, n_features=FEATURES, random_state=0)
    batch = X[:CALL_ROWS]
    results = []
    with tempfile.TemporaryDirectory(prefix="clew-bench-capture-") as home:
        client = clew.connect(home)
        forest = RandomForestClassifier(n_estimators=50, n_jobs=1, random_state=0).fit(X, y)
        linear = LogisticRegression(max_iter=500).fit(X, y)
        models = [
            ("RandomForest(50)", client.load_model(registered(client, forest, "rf")), pairs // 10),
            ("LogisticRegression", client.load_model(registered(client, linear, "lr")), pairs),
        ]
        copying = client.load_model("lr/1")
        copying.copy_inputs = True
        models.append(("LogisticRegression copy_inputs=True", copying, pairs))
        for name, model, count in models:
            percent, base = overhead(client, model, batch, max(10, count))
            results.append(
                Result(
                    benchmark="capture",
                    operation=f"predict overhead, 10k rows, {name}",
                    unit="%",
                    higher_is_better=False,
                    clew=percent,
                    target_value=None if model.copy_inputs else TARGET_OVERHEAD,
                    note=f"bare predict {base * 1e3:.3f} ms (median of {max(10, count)} "
                    "interleaved pairs, writer running)",
                )
            )
        client.close()
    return results


def main() -> None:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--rows", type=int, help="rows per whole-cost round (default 1M)")
    arguments.add_argument("--rounds", type=int, help="whole-cost rounds, cold one included")
    options = arguments.parse_args()
    rows = options.rows or (200_000 if options.quick else 1_000_000)
    rounds = options.rounds or 4
    results = whole_results(whole_cost(rows, rounds))
    results += overhead_results(60 if options.quick else 300)
    finish("Prediction capture, whole cost", results, options.json)


if __name__ == "__main__":
    main()
