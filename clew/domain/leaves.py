"""How a captured prediction row becomes the bytes its Merkle leaf hashes.

The encoding works on Arrow columns all at once (no per-row Python except the hash call), and
it reads only what is stored in the Parquet row, so anyone holding the row can recompute it.
Message of row *i* (little-endian throughout)::

    0x00 | call id (26 ASCII bytes) | row number (u32) | time ms (i64)
         | inputs present (u8) | each input field | the output

A fixed-width field (integers, floats, booleans, times, fixed-size lists of those) is a
validity byte followed by its raw bytes, zeroed when null; a variable-width field (text,
bytes, anything else as JSON text) is a u32 length (0xFFFFFFFF when null) and its bytes.
The model name, version and digest are the same for a whole batch and are bound by the
batch's signed header instead of every leaf.

A Merkle leaf covers ``leaf_rows`` consecutive rows (the signed header says how many; the last
leaf of a batch may hold fewer): its hash is ``sha256`` of those rows' messages laid end to
end. Each message starts with 0x00 and is self-delimiting, so with one row per leaf the hash is
exactly ``sha256(message)``, the format of batches written before leaves were grouped. Hashing
a few kilobytes per call instead of ~140 bytes is what lets a writer thread hash a million rows
a second: the per-call cost of ``hashlib`` dominated, and messages of 2 KiB or more are hashed
with the GIL released.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from clew.domain import merkle

CALL_LENGTH = 26
NULL_LENGTH = 0xFFFFFFFF
PREDICTION_COLUMNS = ("prediction_id", "time")
CHUNK_ROWS = 8192
LEAF_ROWS = 32


def leaf_count(rows: int, leaf_rows: int) -> int:
    """How many leaves a batch of ``rows`` rows has at ``leaf_rows`` rows per leaf."""
    return -(-rows // leaf_rows)


def leaf_hashes(
    table: pa.Table, header: np.ndarray | CallHeaders | None = None, leaf_rows: int = 1
) -> bytes:
    """The 32-byte hash of every leaf (``leaf_rows`` consecutive rows), in row order.

    ``header`` may carry the call-id/row/time bytes known to the writer, as a matrix or per
    call (it must equal what ``header_bytes(table)`` derives from the stored columns).
    """
    if leaf_rows < 1:
        raise ValueError(f"a leaf holds at least one row, not {leaf_rows}")
    parts = _parts(table, header_bytes(table) if header is None else header)
    if all(isinstance(part, np.ndarray | CallHeaders) for part in parts):
        return _fixed_leaf_hashes(parts, table.num_rows, leaf_rows)
    binary = [
        _as_binary(part.matrix() if isinstance(part, CallHeaders) else part) for part in parts
    ]
    joined = one_array(pc.binary_join_element_wise(*binary, b""))
    offsets = np.frombuffer(joined.buffers()[1], dtype=np.int32)[
        joined.offset : joined.offset + len(joined) + 1
    ]
    bounds = offsets[::leaf_rows]
    if (len(offsets) - 1) % leaf_rows:
        bounds = np.append(bounds, offsets[-1])
    return merkle.leaf_hashes_variable(joined.buffers()[2].to_pybytes(), bounds.tolist())


def _fixed_leaf_hashes(parts: list[Any], count: int, leaf_rows: int) -> bytes:
    """Pack rows side by side a chunk at a time into one reused buffer, hashing each chunk.

    Packing the whole batch at once would need a fresh (rows x width) matrix: for a million
    rows that is ~140 MB of new pages, which cost more to fault in than the copy itself; a
    chunk of about ``CHUNK_ROWS`` (a whole number of leaves) stays in cache and is reused, so
    only the hashing is left. The buffer is a packed record array with one field per part, so
    each part is copied as whole values (not byte by byte); a part that is one value on every
    row (a broadcast array: the 0x00 prefix, validity flags of columns with no nulls) is
    written once, and the call headers are expanded per chunk, never for the whole batch.
    """
    fields: list[tuple[str, Any]] = []
    for index, part in enumerate(parts):
        if isinstance(part, CallHeaders):
            fields.extend(CallHeaders.FIELDS)
        else:
            fields.append((f"p{index}", np.dtype((part.dtype, part.shape[1:]))))
    layout = np.dtype(fields)
    chunk = max(1, CHUNK_ROWS // leaf_rows) * leaf_rows
    buffer = np.empty(min(chunk, count), dtype=layout)
    flat = buffer.view(np.uint8)
    varying: list[tuple[str, Any]] = []
    for index, part in enumerate(parts):
        if isinstance(part, np.ndarray) and part.strides[:1] == (0,):
            buffer[f"p{index}"] = part[0]
        else:
            varying.append((f"p{index}", part))
    hashes = []
    for low in range(0, count, chunk):
        high = min(low + chunk, count)
        rows = buffer[: high - low]
        for name, part in varying:
            if isinstance(part, CallHeaders):
                part.fill(rows, low, high)
            else:
                rows[name] = part[low:high]
        packed = flat[: (high - low) * layout.itemsize].data
        hashes.append(merkle.leaf_hashes_fixed(packed, layout.itemsize * leaf_rows))
    return b"".join(hashes)


def _bytes_per_row(part: np.ndarray) -> np.ndarray:
    """A fixed-width part as a (rows, bytes) uint8 view (a copy only if it is strided)."""
    return np.ascontiguousarray(part).view(np.uint8).reshape(len(part), -1)


def _constant(value: int, count: int) -> np.ndarray:
    """One byte that is the same on every row, as a broadcast (strides 0) array."""
    return np.broadcast_to(np.uint8(value), (count,))


def _parts(table: pa.Table, header: np.ndarray | CallHeaders) -> list[Any]:
    count = table.num_rows
    parts: list[Any] = [_constant(0, count), header]
    inputs = _column(table, "inputs")
    if inputs is None:
        parts.append(_constant(0, count))
    else:
        present = _validity(inputs)
        parts.append(_constant(1, count) if present is None else present.astype(np.uint8))
        for index in range(inputs.type.num_fields):
            parts.extend(_field(inputs.field(index), present))
    output = _column(table, "output")
    if output is not None:
        parts.extend(_field(output, None))
    return parts


class CallHeaders:
    """The call-id/row/time bytes of a batch's rows, kept per call as the writer knows them:
    leaf hashing expands them a chunk of rows at a time instead of into a (rows x 38) matrix.
    """

    FIELDS = (
        ("c", np.dtype((np.uint8, (CALL_LENGTH,)))),
        ("r", np.dtype("<u4")),
        ("t", np.dtype("<i8")),
    )

    SLICED_CALLS = 16

    def __init__(self, call_ids: list[str], counts: np.ndarray, times_ms: np.ndarray) -> None:
        self.calls = np.frombuffer("".join(call_ids).encode("ascii"), dtype=np.uint8).reshape(
            -1, CALL_LENGTH
        )
        self.starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        self.times = times_ms.astype("<i8")
        self.count = int(np.sum(counts))
        self.ends = (self.starts + counts).tolist()

    def fill(self, rows: np.ndarray, low: int, high: int) -> None:
        """Write rows ``low``..``high`` into the ``c``, ``r`` and ``t`` fields of ``rows``:
        one slice per call when the chunk spans few calls (the usual large calls), else
        gathered per row."""
        first = int(np.searchsorted(self.starts, low, side="right")) - 1
        last = int(np.searchsorted(self.starts, high - 1, side="right")) - 1
        if last - first < self.SLICED_CALLS:
            for call in range(first, last + 1):
                start = max(low, int(self.starts[call]))
                end = min(high, self.ends[call])
                piece = rows[start - low : end - low]
                piece["c"] = self.calls[call]
                piece["r"] = np.arange(start - self.starts[call], end - self.starts[call])
                piece["t"] = self.times[call]
            return
        positions = np.arange(low, high, dtype=np.int64)
        which = np.searchsorted(self.starts, positions, side="right") - 1
        rows["c"] = self.calls[which]
        rows["r"] = positions - self.starts[which]
        rows["t"] = self.times[which]

    def matrix(self) -> np.ndarray:
        """Every row's header bytes as one (rows x 38) matrix."""
        rows = np.empty(self.count, dtype=np.dtype(list(self.FIELDS)))
        self.fill(rows, 0, self.count)
        return rows.view(np.uint8).reshape(self.count, -1)


def header_bytes_for_calls(
    call_ids: list[str], counts: np.ndarray, times_ms: np.ndarray
) -> CallHeaders:
    """The header bytes of every row of these calls, without touching per-row strings."""
    return CallHeaders(call_ids, counts, times_ms)


def _header_matrix(calls: np.ndarray, rows: np.ndarray, times: np.ndarray) -> np.ndarray:
    header = np.empty(
        len(rows), dtype=np.dtype([("c", np.uint8, (CALL_LENGTH,)), ("r", "<u4"), ("t", "<i8")])
    )
    header["c"] = calls
    header["r"] = rows
    header["t"] = times
    return header.view(np.uint8).reshape(len(rows), -1)


def _column(table: pa.Table, name: str) -> pa.Array | None:
    if name not in table.column_names:
        return None
    column = table.column(name)
    return one_array(column)


def one_array(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """The column as one array: its only chunk as is (``combine_chunks`` would copy it)."""
    if not isinstance(column, pa.ChunkedArray):
        return column
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def header_bytes(table: pa.Table) -> np.ndarray:
    """Call id, row number and time of every row, parsed back from the stored columns."""
    ids = _column(table, "prediction_id")
    assert ids is not None
    calls = pc.cast(pc.utf8_slice_codeunits(ids, 0, CALL_LENGTH), pa.binary())
    call_bytes = np.frombuffer(calls.buffers()[2], dtype=np.uint8)[: len(ids) * CALL_LENGTH]
    rows = pc.cast(pc.utf8_slice_codeunits(ids, CALL_LENGTH + 1, 64), pa.uint32())
    time = _column(table, "time")
    assert time is not None
    times = pc.cast(time, pa.int64()).to_numpy(zero_copy_only=False).astype("<i8")
    return _header_matrix(
        call_bytes.reshape(-1, CALL_LENGTH),
        rows.to_numpy(zero_copy_only=False).astype("<u4"),
        times,
    )


def _validity(array: pa.Array) -> np.ndarray | None:
    """Which rows hold a value; None when all of them do."""
    if array.null_count == 0:
        return None
    valid: np.ndarray = array.is_valid().to_numpy(zero_copy_only=False)
    return valid


def _field(array: pa.Array, present: np.ndarray | None) -> list[Any]:
    """One field's bytes for every row; ``present`` is False where the parent row is null
    (None: no parent row is)."""
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    valid = _validity(array)
    if present is not None:
        valid = present if valid is None else valid & present
    fixed = _fixed_values(array)
    if fixed is not None:
        if valid is None:
            return [_constant(1, len(array)), fixed]
        mask = valid if fixed.ndim == 1 else valid.reshape(-1, 1)
        fixed = np.where(mask, fixed, np.zeros((), dtype=fixed.dtype))
        return [valid.astype(np.uint8), fixed]
    text = _as_text(array)
    lengths = pc.fill_null(pc.binary_length(text), 0).to_numpy(zero_copy_only=False).astype("<u4")
    if valid is None:
        return [lengths, text]
    lengths[~valid] = NULL_LENGTH
    values = pc.if_else(pa.array(valid), text, pa.scalar(b"", pa.binary()))
    return [lengths, values]


def _fixed_values(array: pa.Array) -> np.ndarray | None:
    """Raw little-endian bytes per row for fixed-width types, else None."""
    kind = array.type
    if pa.types.is_boolean(kind):
        flags: np.ndarray = pc.fill_null(array, False).to_numpy(zero_copy_only=False)
        return flags.astype(np.uint8)
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return _little_endian(_filled(array))
    if pa.types.is_temporal(kind) and kind.bit_width in (32, 64):
        as_int = pc.cast(array, pa.int64() if kind.bit_width == 64 else pa.int32())
        return _little_endian(_filled(as_int))
    if pa.types.is_fixed_size_list(kind):
        child = array.flatten() if array.null_count == 0 else None
        if child is not None and len(child) == len(array) * kind.list_size:
            values = _fixed_values(child)
            if values is not None:
                return values.reshape(len(array), -1)
    return None


def _filled(array: pa.Array) -> np.ndarray:
    if array.null_count:
        array = pc.fill_null(array, 0)
    values: np.ndarray = array.to_numpy(zero_copy_only=False)
    return values


def _little_endian(values: np.ndarray) -> np.ndarray:
    return values.astype(values.dtype.newbyteorder("<"), copy=False)


def _as_text(array: pa.Array) -> pa.Array:
    kind = array.type
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return pc.cast(array, pa.binary())
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return pc.cast(array, pa.binary())
    return pa.array(
        [None if value is None else _json(value) for value in array.to_pylist()], pa.binary()
    )


def _json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()


def _as_binary(part: np.ndarray | pa.Array) -> pa.Array:
    if isinstance(part, pa.Array):
        return part
    count = len(part)
    part = _bytes_per_row(part)
    width = part.shape[1]
    offsets = np.arange(0, (count + 1) * width, width, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.binary(), count, [None, pa.py_buffer(offsets), pa.py_buffer(part)]
    )
