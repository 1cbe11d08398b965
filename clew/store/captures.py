"""Captured predictions on disk: one Parquet file and one Merkle file per batch.

Files live under ``<store>/captures/model=<name>/version=<n>/date=<YYYY-MM-DD>/`` so DuckDB
(or Spark) can prune by partition. Each batch is ``<batch id>.parquet`` (the rows) and
``<batch id>.merkle`` (every level of the batch's Merkle tree, leaves first, 32 bytes per
hash), which turns an inclusion proof into a handful of small reads. Both are written to a
temporary name, flushed and renamed, so readers never see half a batch.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from clew.domain import digests, merkle
from clew.errors import IntegrityError, NotFoundError

ROW_GROUP_ROWS = 65_536
CHUNK = 4 * 1024 * 1024


def batch_relative_path(model: str, version: int, date: str, batch_id: str) -> str:
    return f"model={model}/version={version}/date={date}/{batch_id}.parquet"


def resolve(root: Path, relative: str) -> Path:
    """The absolute path of a recorded batch file; refuses anything outside the captures root."""
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()):
        raise IntegrityError(f"capture path {relative!r} points outside {root}.")
    return path


def merkle_path(parquet_path: Path) -> Path:
    return parquet_path.with_suffix(".merkle")


def write_batch(
    root: Path, relative: str, table: pa.Table, levels: Sequence[bytes], metadata: dict[str, str]
) -> str:
    """Write the rows and the tree; returns the Parquet file's digest."""
    path = resolve(root, relative)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    digest = _atomic_write(path, lambda target: _write_parquet(table, target))
    _atomic_write(merkle_path(path), lambda target: target.write_bytes(b"".join(levels)))
    return digest


def _write_parquet(table: pa.Table, target: Path) -> None:
    pq.write_table(
        table,
        target,
        row_group_size=ROW_GROUP_ROWS,
        compression="zstd",
        compression_level=1,
        use_dictionary=["model_name", "model_digest"],
        write_statistics=["prediction_id"],
    )


def _atomic_write(path: Path, write) -> str:  # type: ignore[no-untyped-def]
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
    os.close(descriptor)
    temp = Path(name)
    try:
        write(temp)
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
        digest = file_digest(temp)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return digest


def file_digest(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as reader:
        while chunk := reader.read(CHUNK):
            hasher.update(chunk)
    return digests.PREFIX + hasher.hexdigest()


def read_prediction(root: Path, relative: str, prediction_id: str) -> pa.Table:
    """The stored row(s) with this id (row-group statistics keep this to one group)."""
    path = _existing(root, relative)
    return pq.read_table(path, filters=[("prediction_id", "=", prediction_id)])


def read_ids(root: Path, relative: str) -> pa.Array:
    return pq.read_table(_existing(root, relative), columns=["prediction_id"]).column(0)


def read_batch(root: Path, relative: str) -> pa.Table:
    return pq.read_table(_existing(root, relative))


def read_proof(root: Path, relative: str, count: int, index: int) -> list[merkle.ProofStep]:
    """The inclusion proof of leaf ``index`` read from the batch's Merkle file."""
    path = merkle_path(_existing(root, relative))
    if not path.exists():
        raise NotFoundError(f"the Merkle file of capture batch {relative} is missing.")
    sizes = merkle.level_sizes(count)
    starts = [sum(sizes[:level]) for level in range(len(sizes))]
    steps = []
    with open(path, "rb") as reader:
        for level, first, length in merkle.proof_positions(count, index):
            reader.seek((starts[level] + first) * merkle.HASH_SIZE)
            data = reader.read(length * merkle.HASH_SIZE)
            group = tuple(
                data[k * merkle.HASH_SIZE : (k + 1) * merkle.HASH_SIZE] for k in range(length)
            )
            steps.append(merkle.ProofStep(index % merkle.ARITY, group))
            index //= merkle.ARITY
    return steps


def read_levels(root: Path, relative: str, count: int) -> list[bytes]:
    data = merkle_path(_existing(root, relative)).read_bytes()
    levels, offset = [], 0
    for size in merkle.level_sizes(count):
        levels.append(data[offset : offset + size * merkle.HASH_SIZE])
        offset += size * merkle.HASH_SIZE
    return levels


def _existing(root: Path, relative: str) -> Path:
    path = resolve(root, relative)
    if not path.exists():
        raise NotFoundError(f"capture batch file {relative} is missing from {root}.")
    return path
