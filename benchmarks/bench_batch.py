"""Batch scoring: ``clew.predict_batch`` against calling the model directly on the same file.

A LogisticRegression and a RandomForest (20 trees, depth 8), 10 float64 features each, are
registered and a Parquet file of ``--rows`` rows (default 1M) is scored in 100k-row chunks
two ways in the same process and round:

* **direct** (the peer): what a user writes without clew: pyarrow reads the same chunks, the
  bare scikit-learn model predicts each, a ParquetWriter writes the predictions.
* **clew**: ``clew.predict_batch(ref, input, output)``: the same reading, predicting and
  writing, plus a prediction id per row, every row captured (inputs and outputs, then with
  ``input_sampling=0`` outputs only) (signed Parquet batches, flushed
  inside the timed region), the input hashed and the output stored as lineage datasets, the
  job recorded as a run.

Throughput is rows per CPU-second of the whole process (``resource.getrusage``, every thread:
the capture writer's included), so machine load does not bias the ratio. Rounds alternate the
order; the best round of each is reported. Target: clew ≥ 0.9× direct.

    uv run --group bench python benchmarks/bench_batch.py [--quick] [--rows N] [--rounds N]
"""

from __future__ import annotations

import resource
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from report import Result, finish, parser
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

import clew

FEATURES = 10
CHUNK = 100_000
TARGET = 0.9


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


MODELS = {
    "LogisticRegression": lambda: LogisticRegression(max_iter=200),
    "RandomForest(20)": lambda: RandomForestClassifier(20, max_depth=8, random_state=0),
}


def make_input(path: Path, rows: int) -> tuple[pd.DataFrame, np.ndarray]:
    generator = np.random.default_rng(0)
    features = generator.normal(size=(rows, FEATURES))
    frame = pd.DataFrame(features, columns=[f"f{i}" for i in range(FEATURES)])
    frame.to_parquet(path, index=False)
    target = (features[:, 0] + features[:, 1] > 0).astype(int)
    return frame.head(20_000), target[:20_000]


def direct(model: Any, source: Path, target: Path) -> float:
    started = cpu_seconds()
    reader = pq.ParquetFile(source)
    writer = None
    for chunk in reader.iter_batches(CHUNK):
        table = pa.table({"prediction": model.predict(chunk.to_pandas())})
        writer = writer or pq.ParquetWriter(target, table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()
    return cpu_seconds() - started


def through_clew(ref: str, source: Path, target: Path, sampling: float = 1.0) -> float:
    started = cpu_seconds()
    clew.predict_batch(ref, source, target, chunk_rows=CHUNK, input_sampling=sampling)
    return cpu_seconds() - started


def compare(
    model: Any, ref: str, source: Path, directory: Path, rounds: int, sampling: float
) -> tuple[float, float]:
    """The best CPU seconds of clew and of the direct loop, in alternating order."""
    ours: list[float] = []
    theirs: list[float] = []
    for round_ in range(rounds):
        pair = [
            lambda: theirs.append(direct(model, source, directory / "direct.parquet")),
            lambda: ours.append(
                through_clew(ref, source, directory / f"clew-{len(ours)}.parquet", sampling)
            ),
        ]
        for step in pair if round_ % 2 == 0 else reversed(pair):
            step()
    return min(ours), min(theirs)


def main() -> None:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--rows", type=int, help="rows in the scored file (default 1M)")
    arguments.add_argument("--rounds", type=int, help="rounds (default 3)")
    options = arguments.parse_args()
    rows = options.rows or (200_000 if options.quick else 1_000_000)
    rounds = options.rounds or 3
    results = []
    with tempfile.TemporaryDirectory(prefix="clew-bench-batch-") as scratch:
        directory = Path(scratch)
        client = clew.connect(str(directory / "home"))
        source = directory / "input.parquet"
        sample, target = make_input(source, rows)
        for label, make in MODELS.items():
            model = make().fit(sample, target)
            with client.start_run("bench", "train") as run:
                artifact = run.log_model(model, name="bench-model")
            ref = client.register_model(artifact, "bench").ref
            for sampling in (1.0, 0.0):
                ours, theirs = compare(model, ref, source, directory, rounds, sampling)
                captured = "inputs and outputs" if sampling else "outputs only"
                results.append(
                    Result(
                        "batch",
                        f"score {rows:,} rows with a {label}, {captured} captured",
                        "rows/CPU-s",
                        True,
                        rows / ours,
                        rows / theirs,
                        "the model called directly",
                        target_ratio=TARGET,
                        note=f"best of {rounds}; CPU s clew {ours:.2f}, direct {theirs:.2f}",
                    )
                )
        client.close()
    finish("Batch scoring", results, options.json)


if __name__ == "__main__":
    main()
