"""Captured predictions as plain values: targets, calls, stored rows and their evidence.

These are the records both sides of capture share: the client's queue (clew/client/
capture_queue.py) hands ``Call`` objects for a ``CaptureTarget`` to a writer; the service seals
them into signed batches (clew/service/capture_sealing.py) laid out by ``build_table``, and
lookup returns a ``CapturedPrediction`` with its ``Verification``. Nothing here does I/O.

A prediction id is ``<call ULID>.<row>``: one id per predict call, so ids cost nothing per row,
and ``capture_batches.first_call/last_call`` find the one file that holds a given call.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from clew.domain import ids, leaves, merkle
from clew.domain.records import ms_to_iso
from clew.errors import InvalidInputError

HEADER_KEY = b"clew.capture.batch"
SIGNATURE_KEY = b"clew.capture.signature"
BATCH_KIND = "clew.capture.batch/v1"
CHANGED_KEY = b"clew.capture.inputs_changed"
REMOTE_COLUMNS = ("prediction_id", "time", "inputs", "output")

# What an input guard keeps of an array (shape, dtype, sampled positions, sampled elements);
# made and checked in the client's process by clew/client/input_guard.py.
InputGuard = tuple[tuple[int, ...], np.dtype[Any], np.ndarray, np.ndarray]


@dataclass(frozen=True)
class CaptureTarget:
    """The model version (and method) a batch of predictions belongs to."""

    version_id: str
    name: str
    version: int
    digest: str
    method: str = "predict"


@dataclass(slots=True)
class Call:
    """One predict call: its id, time, outputs and the sampled inputs (``rows`` of them).

    ``predict`` queues its id as an ``ids.PendingId``; the client's writer thread writes it
    out (``CaptureQueue._write``) before any ``BatchWriter`` sees the call.
    """

    call_id: str | ids.PendingId
    time_ms: int
    rows: int
    outputs: Any
    inputs: Any | None
    sampled: np.ndarray | None = None
    guard: InputGuard | None = None
    inputs_changed: bool = False


def changed_call_ids(calls: Sequence[Call]) -> list[str]:
    """The ids of the calls whose inputs were withheld, for the batch header (``CHANGED_KEY``)."""
    return [str(call.call_id) for call in calls if call.inputs_changed]


@dataclass
class Verification:
    verified: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"verified": self.verified, "reason": self.reason}


@dataclass
class CapturedPrediction:
    """One captured prediction as stored, with the evidence to check it.

    ``leaf_table`` holds every row of the prediction's Merkle leaf (``leaf_index``) in file
    order: those rows hash together, so all of them are needed to check this one.
    """

    id: str
    time_ms: int
    model: str
    version: int
    model_version_id: str
    model_digest: str
    method: str
    inputs: dict[str, Any] | None
    output: Any
    batch_id: str
    leaf_index: int
    leaf_hash: str
    proof: list[merkle.ProofStep]
    merkle_root: str
    signature: str
    key_id: str
    header: dict[str, Any]
    verification: Verification
    label: Any = None
    labelled: bool = False
    row: pa.Table | None = field(default=None, repr=False)
    leaf_table: pa.Table | None = field(default=None, repr=False)

    @property
    def verified(self) -> bool:
        return self.verification.verified

    @property
    def inputs_withheld(self) -> bool:
        """Whether the batch's signed header says the caller changed this call's input array
        after predict, so its inputs were not captured (see ``input_guard``)."""
        return self.id[: leaves.CALL_LENGTH] in self.header.get("inputs_changed", [])

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": ms_to_iso(self.time_ms),
            "model": self.model,
            "version": self.version,
            "model_digest": self.model_digest,
            "method": self.method,
            "inputs": self.inputs,
            "inputs_withheld": self.inputs_withheld,
            "output": self.output,
            "label": self.label if self.labelled else None,
            "batch": self.batch_id,
            "leaf": {
                "index": self.leaf_index,
                "hash": self.leaf_hash,
                "prediction_ids": self._leaf_ids(),
            },
            "proof": [step.to_dict() for step in self.proof],
            "merkle_root": self.merkle_root,
            "signature": self.signature,
            "key_id": self.key_id,
            "header": self.header,
            **self.verification.to_dict(),
        }

    def _leaf_ids(self) -> list[str]:
        """The ids of the rows hashed into this prediction's leaf, in order."""
        rows = self.leaf_table if self.leaf_table is not None else self.row
        return [] if rows is None else rows.column("prediction_id").to_pylist()


@dataclass(frozen=True)
class BatchRecord:
    id: str
    model_version_id: str
    path: str
    file_digest: str
    count: int
    first_call: str
    last_call: str
    merkle_root: str
    signature: str
    key_id: str
    dropped: int
    created_ms: int


@dataclass(frozen=True)
class BatchProblem:
    batch_id: str
    path: str
    reason: str


def header_of(table: pa.Table) -> dict[str, Any]:
    """The signed batch header a capture file carries in its Parquet metadata."""
    header: dict[str, Any] = json.loads((table.schema.metadata or {}).get(HEADER_KEY, b"{}"))
    return header


def signature_of(table: pa.Table) -> str:
    signature: bytes = (table.schema.metadata or {}).get(SIGNATURE_KEY, b"")
    return signature.decode()


def leaf_rows_of(header: dict[str, Any]) -> int:
    """Rows per leaf as the signed header states it; headers from before grouping have one."""
    value = header.get("leaf_rows", 1)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"leaf_rows {value!r} is not a positive whole number")
    return value


# --- the stored column layout of a batch --------------------------------------------------


def build_table(target: CaptureTarget, calls: Sequence[Call]) -> pa.Table:
    """The batch's rows as Arrow columns, built per column (no per-row Python)."""
    counts = np.array([call.rows for call in calls], dtype=np.int64)
    count = int(counts.sum())
    times = np.repeat(np.array([call.time_ms for call in calls], dtype=np.int64), counts)
    columns: dict[str, pa.Array] = {
        "prediction_id": prediction_id_column([str(call.call_id) for call in calls], counts),
        "time": pa.array(times, pa.timestamp("ms", tz="UTC")),
        "model_name": constant_column(target.name, count),
        "model_version": pa.array(np.full(count, target.version, dtype=np.int32)),
        "model_digest": constant_column(target.digest, count),
    }
    inputs = _inputs_column(calls, count)
    if inputs is not None:
        columns["inputs"] = inputs
    columns["output"] = _outputs_column(calls)
    return pa.table(columns)


def prediction_id_column(call_ids: Sequence[str], counts: Sequence[int] | np.ndarray) -> pa.Array:
    """``f"{call}.{row}"`` for every row of these calls, in order, as one Arrow string array.

    The ids are laid out as bytes by numpy: the decimal text of the row numbers is made once
    per process (``_row_numbers``), and a call's ids are that text behind the call's
    ``<ULID>.`` prefix, copied a block of equally wide numbers (0-9, 10-99, ...) at a time.
    Arrow's string kernels (gather the call ids, cast the rows, join) took ~0.1 CPU-s per
    million rows; this takes ~0.03.
    """
    sizes = [int(count) for count in counts]
    offsets_text, text = _row_numbers(max(sizes, default=0))
    prefixes = [f"{call}.".encode("ascii") for call in call_ids]
    lengths = [
        int(offsets_text[size]) + len(prefix) * size
        for prefix, size in zip(prefixes, sizes, strict=True)
    ]
    if sum(lengths) > np.iinfo(np.int32).max:
        raise InvalidInputError(
            f"a capture batch of {sum(sizes):,} rows has more id text than one Arrow array "
            "holds; lower the capture batch_rows."
        )
    data = np.empty(sum(lengths), dtype=np.uint8)
    offsets = np.empty(sum(sizes) + 1, dtype=np.int32)
    offsets[0] = row = start = 0
    for prefix, size, length in zip(prefixes, sizes, lengths, strict=True):
        ends = offsets_text[1 : size + 1] + np.arange(1, size + 1, dtype=np.int32) * len(prefix)
        offsets[row + 1 : row + size + 1] = ends + start
        _fill_ids(data[start : start + length], prefix, size, offsets_text, text)
        row, start = row + size, start + length
    return pa.Array.from_buffers(
        pa.string(), len(offsets) - 1, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )


def _fill_ids(
    out: np.ndarray, prefix: bytes, rows: int, offsets_text: np.ndarray, text: np.ndarray
) -> None:
    """Write ``prefix + str(i)`` for ``i < rows`` end to end into ``out``, one (rows x width)
    block per width of ``i``."""
    head = np.frombuffer(prefix, dtype=np.uint8)
    low, digits, position = 0, 1, 0
    while low < rows:
        high = min(rows, 10**digits)
        block = out[position : position + (high - low) * (len(prefix) + digits)]
        block = block.reshape(high - low, len(prefix) + digits)
        block[:, : len(prefix)] = head
        block[:, len(prefix) :] = text[offsets_text[low] : offsets_text[high]].reshape(
            high - low, digits
        )
        position += block.size
        low, digits = high, digits + 1


_numbers: tuple[np.ndarray, np.ndarray] = (np.zeros(1, dtype=np.int32), np.zeros(0, np.uint8))


def _row_numbers(rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and bytes of ``str(i)`` for every ``i < rows`` (at least), kept for reuse: the
    same numbers start every call's ids."""
    global _numbers
    offsets, text = _numbers
    if len(offsets) - 1 < rows:
        numbers = pc.cast(pa.array(np.arange(max(rows, 2 * (len(offsets) - 1)))), pa.string())
        offsets = np.frombuffer(numbers.buffers()[1], dtype=np.int32)[: len(numbers) + 1]
        text = np.frombuffer(numbers.buffers()[2], dtype=np.uint8)[: offsets[-1]]
        _numbers = offsets, text
    return offsets, text


def constant_column(value: str, count: int) -> pa.Array:
    return pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(count, dtype=np.int32)), pa.array([value], pa.string())
    )


def _inputs_column(calls: Sequence[Call], count: int) -> pa.Array | None:
    children = _uniform_columns(calls, count)
    if children is not None:
        return pa.StructArray.from_arrays(children, names=[f"f{j}" for j in range(len(children))])
    tables: list[pa.Table] = []
    positions: list[np.ndarray] = []
    base = 0
    for call in calls:
        if call.inputs is None:
            positions.append(np.full(call.rows, -1, dtype=np.int64))
            continue
        table = inputs_table(call.inputs)
        tables.append(table)
        local = np.full(call.rows, -1, dtype=np.int64)
        taken = np.arange(call.rows) if call.sampled is None else call.sampled
        local[taken] = base + np.arange(len(taken))
        positions.append(local)
        base += table.num_rows
    if not tables:
        return None
    combined = pa.concat_tables(tables, promote_options="permissive").combine_chunks()
    index = np.concatenate(positions)
    present = index >= 0
    if not present.all() or not np.array_equal(index, np.arange(count)):
        combined = combined.take(pa.array(index, mask=~present))
    children = [leaves.one_array(column) for column in combined.columns]
    mask = None if present.all() else pa.array(~present)
    return pa.StructArray.from_arrays(children, names=combined.column_names, mask=mask)


def _uniform_columns(calls: Sequence[Call], count: int) -> list[pa.Array] | None:
    """One array per feature when every call kept every row of a numeric array of the same
    width and dtype: the common case. Each feature is gathered straight from the calls' rows
    (one strided copy per call), so no whole-batch matrix or transposed copy is made."""
    arrays = [
        call.inputs
        for call in calls
        if isinstance(call.inputs, np.ndarray)
        and call.inputs.ndim in (1, 2)
        and call.inputs.dtype.kind in "biuf"
    ]
    if len(arrays) != len(calls) or any(call.sampled is not None for call in calls):
        return None
    shaped = [a.reshape(-1, 1) if a.ndim == 1 else a for a in arrays]
    if len({(a.shape[1], a.dtype) for a in shaped}) != 1:
        return None
    columns = np.empty((shaped[0].shape[1], count), dtype=shaped[0].dtype)
    start = 0
    for array in shaped:
        columns[:, start : start + len(array)] = array.T
        start += len(array)
    return [pa.array(column) for column in columns]


def inputs_table(inputs: Any) -> pa.Table:
    """Model inputs as Arrow columns: DataFrame columns keep their names, arrays get f0, f1..."""
    if isinstance(inputs, pa.Table):
        return inputs
    if type(inputs).__name__ == "DataFrame" and hasattr(inputs, "columns"):
        frame = inputs.rename(columns=str)
        return pa.Table.from_pandas(frame, preserve_index=False)
    if isinstance(inputs, list) and inputs and isinstance(inputs[0], dict):
        return pa.Table.from_pylist(inputs)
    array = np.asarray(inputs)
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2:
        raise InvalidInputError(f"inputs of shape {array.shape} cannot be captured as rows.")
    columns = np.ascontiguousarray(array.T)
    return pa.table({f"f{j}": columns[j] for j in range(columns.shape[0])})


def _outputs_column(calls: Sequence[Call]) -> pa.Array:
    arrays = [np.asarray(call.outputs) for call in calls]
    if all(a.ndim == 1 for a in arrays):
        return pa.array(np.concatenate(arrays))
    if all(a.ndim == 2 for a in arrays) and len({a.shape[1] for a in arrays}) == 1:
        joined = np.concatenate(arrays)
        return pa.FixedSizeListArray.from_arrays(pa.array(joined.ravel()), joined.shape[1])
    return pa.array([json.dumps(row.tolist()) for a in arrays for row in a])


@dataclass(frozen=True)
class Undelivered:
    """Rows of a batch a writer did not deliver now: kept to send later, or with no room."""

    spooled: int = 0
    dropped: int = 0


class BatchWriter(Protocol):
    """Where the writer thread hands each batch: the store itself, or a clew server."""

    def write(self, target: CaptureTarget, calls: list[Call], dropped: int) -> Undelivered | None:
        """Deliver the batch; None, or what could not be delivered now (rows it kept for
        later, rows it had no room for)."""
