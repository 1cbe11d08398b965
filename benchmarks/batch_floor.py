"""What sealing a batch job's capture costs beside the floor under it: hashlib, Parquet, sha256.

``bench_batch.py`` prices the whole job; this prices its parts on the same data (1M rows, 10
float64 features, 100k-row calls), each clew step beside the least any code could spend on the
same bytes, in this process's CPU seconds (best of ``--rounds``):

* the prediction-id column (``prediction_id_column``) beside Arrow's own kernels (cast the row
  numbers, join them to the call id), which clew used before;
* Merkle leaf hashing (``leaves.leaf_hashes``, 32 rows per leaf) beside ``hashlib.sha256`` over
  the very leaf messages, once in one call and once per leaf: the message bytes are the floor,
  the per-leaf calls are what a leaf per 32 rows adds to it;
* the Parquet encoding of the capture file (zstd level 1, as ``CaptureFiles`` writes it) beside
  the same columns written uncompressed;
* hashing the input file (what recording it in lineage must do) and copying it into the blob
  store (``LocalBlobStore.put_file``).

Rows of 10 features are hashed with inputs (``input_sampling=1``) and without (``0``).

    uv run --frozen python benchmarks/batch_floor.py [--rows N] [--rounds N]
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clew.domain import digests, ids, leaves, merkle
from clew.domain.captures import Call, CaptureTarget, build_table, prediction_id_column
from clew.store.blobs import LocalBlobStore

CALL_ROWS = 100_000
FEATURES = 10


def best(rounds: int, work: Callable[[], Any]) -> float:
    """The least CPU seconds ``work`` took in ``rounds`` tries."""
    spent = []
    for _ in range(rounds):
        started = time.process_time()
        work()
        spent.append(time.process_time() - started)
    return min(spent)


def calls_of(rows: int, with_inputs: bool) -> list[Call]:
    generator = np.random.default_rng(0)
    calls = []
    for start in range(0, rows, CALL_ROWS):
        count = min(CALL_ROWS, rows - start)
        features = generator.normal(size=(count, FEATURES))
        outputs = (features[:, 0] > 0).astype(np.int64)
        inputs = features if with_inputs else None
        calls.append(Call(ids.new_id(), 1_700_000_000_000 + start, count, outputs, inputs))
    return calls


def arrow_ids(calls: list[Call]) -> pa.Array:
    """The id column as clew built it before: Arrow's cast and join kernels per call."""
    numbers = pc.cast(pa.array(np.arange(CALL_ROWS)), pa.string())
    joined = [
        pc.binary_join_element_wise(pa.scalar(f"{call.call_id}."), numbers[: call.rows], "")
        for call in calls
    ]
    return pa.chunked_array(joined).combine_chunks()


def leaf_messages(table: pa.Table, calls: list[Call]) -> tuple[bytes, int]:
    """Every row's leaf message end to end, and one row's width (the rows are fixed width)."""
    header = leaves.header_bytes_for_calls(
        [str(call.call_id) for call in calls],
        np.array([call.rows for call in calls]),
        np.array([call.time_ms for call in calls]),
    )
    parts = leaves._parts(table, header)
    matrices = [
        part.matrix() if isinstance(part, leaves.CallHeaders) else leaves._bytes_per_row(part)
        for part in parts
    ]
    rows = np.hstack([np.broadcast_to(m, (table.num_rows, m.shape[1])) for m in matrices])
    return np.ascontiguousarray(rows).tobytes(), rows.shape[1]


def sealing_rows(rows: int, rounds: int, with_inputs: bool, scratch: Path) -> list[str]:
    calls = calls_of(rows, with_inputs)
    target = CaptureTarget("version", "bench", 1, digests.PREFIX + "0" * 64)
    table = build_table(target, calls)
    messages, width = leaf_messages(table, calls)
    leaf_width = width * leaves.LEAF_ROWS
    call_ids = [str(call.call_id) for call in calls]
    counts = np.array([call.rows for call in calls])
    times = np.array([call.time_ms for call in calls])

    def clew_leaves() -> bytes:
        header = leaves.header_bytes_for_calls(call_ids, counts, times)
        return leaves.leaf_hashes(table, header, leaves.LEAF_ROWS)

    def encode(compression: str) -> Callable[[], None]:
        level = 1 if compression == "zstd" else None
        return lambda: pq.write_table(
            table,
            scratch / "capture.parquet",
            compression=compression,
            compression_level=level,
            use_dictionary=["model_name", "model_digest"],
            write_statistics=["prediction_id"],
            row_group_size=65_536,
        )

    assert merkle.leaf_hashes_fixed(messages, leaf_width) == clew_leaves()  # the same bytes
    captured = "inputs and outputs" if with_inputs else "outputs only"
    return [
        f"{captured}: {width} bytes per leaf message, {len(messages) / 1e6:.0f} MB",
        row(
            "prediction ids",
            best(rounds, lambda: prediction_id_column(call_ids, counts)),
            best(rounds, lambda: arrow_ids(calls)),
            "before: Arrow's cast + join",
        ),
        row(
            "leaf hashes, 32 rows per leaf",
            best(rounds, clew_leaves),
            best(rounds, lambda: hashlib.sha256(messages).digest()),
            "floor: hashlib, one call",
        ),
        row(
            "",
            None,
            best(rounds, lambda: merkle.leaf_hashes_fixed(messages, leaf_width)),
            "floor: hashlib per leaf",
        ),
        row(
            "capture Parquet, zstd 1",
            best(rounds, encode("zstd")),
            best(rounds, encode("none")),
            "floor: uncompressed",
        ),
    ]


def input_rows(rows: int, rounds: int, scratch: Path) -> list[str]:
    generator = np.random.default_rng(0)
    frame = pd.DataFrame(generator.normal(size=(rows, FEATURES)))
    frame.columns = [f"f{i}" for i in range(FEATURES)]
    source = scratch / "input.parquet"
    frame.to_parquet(source, index=False)
    blobs = LocalBlobStore(scratch / "blobs")

    def fresh_copy() -> None:
        blobs.put_file(source)
        for stored in (scratch / "blobs" / "sha256").rglob("*"):
            if stored.is_file():
                stored.unlink()

    size = source.stat().st_size / 1e6
    return [
        f"input file: {size:.0f} MB",
        row(
            "into the blob store",
            best(rounds, fresh_copy),
            best(rounds, lambda: digests.digest_file(source)),
            "floor: sha256 of the file",
        ),
    ]


def row(step: str, ours: float | None, other: float, what: str) -> str:
    """clew's figure for a step beside another way over the same bytes (a floor, or before)."""
    shown = "" if ours is None else f"{ours:.3f}"
    return f"  {step:32s} clew {shown:>6s}   beside {other:.3f} ({what})"


def main() -> None:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--rows", type=int, default=1_000_000)
    arguments.add_argument("--rounds", type=int, default=3)
    options = arguments.parse_args()
    print(f"CPU seconds for {options.rows:,} rows, best of {options.rounds}")
    with tempfile.TemporaryDirectory(prefix="clew-batch-floor-") as scratch:
        for with_inputs in (False, True):
            print("\n".join(sealing_rows(options.rows, options.rounds, with_inputs, Path(scratch))))
        print("\n".join(input_rows(options.rows, options.rounds, Path(scratch))))


if __name__ == "__main__":
    main()
