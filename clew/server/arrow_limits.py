"""What an Arrow IPC stream will cost to decode, read from its message headers alone.

pyarrow decompresses a whole record batch before anything can look at its size, so a 35 KB
zstd body that declares a gigabyte of zeros is a gigabyte of server memory by the time its
``nbytes`` is known. Every batch's header (a flatbuffer) already states its row count, the
length of every array in it, and where each buffer lies in the body; a compressed buffer starts
with its decompressed length, which is exactly what pyarrow allocates (and it refuses data that
decompresses to anything else). Summing those numbers before any batch is read bounds the
decoded size, rows and values while decoding costs nothing yet. Only the few fields needed are
read, following the Arrow columnar format's Message.fbs and Schema.fbs.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import pyarrow as pa

DICTIONARY_BATCH, RECORD_BATCH = 2, 3  # MessageHeader union tags
UNCOMPRESSED = -1  # a compressed buffer's length prefix when it was stored as is


@dataclass(frozen=True)
class Cost:
    """What decoding a stream allocates: rows of its record batches, values of all its arrays
    (nested children and dictionaries included) and bytes of decompressed buffers."""

    rows: int = 0
    values: int = 0
    decoded_bytes: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            self.rows + other.rows,
            self.values + other.values,
            self.decoded_bytes + other.decoded_bytes,
        )


class _Table:
    """One flatbuffer table: field ``i``'s position, or None when the field is absent."""

    def __init__(self, data: bytes, position: int) -> None:
        self.data, self.position = data, position
        vtable = position - _i32(data, position)
        self.vtable_size = _u16(data, vtable)
        self.vtable = vtable

    def field(self, index: int) -> int | None:
        slot = 4 + 2 * index
        if slot >= self.vtable_size:
            return None
        offset = _u16(self.data, self.vtable + slot)
        return self.position + offset if offset else None

    def scalar(self, index: int, fmt: str, default: int = 0) -> int:
        where = self.field(index)
        return default if where is None else struct.unpack_from("<" + fmt, self.data, where)[0]

    def table(self, index: int) -> _Table | None:
        where = self.field(index)
        return None if where is None else _Table(self.data, where + _u32(self.data, where))

    def structs(self, index: int, size: int) -> list[int]:
        """The positions of a vector of fixed-size structs."""
        where = self.field(index)
        if where is None:
            return []
        start = where + _u32(self.data, where)
        return [start + 4 + size * item for item in range(_u32(self.data, start))]


def message_cost(message: pa.ipc.Message) -> Cost:
    """The cost of decoding one message; schema messages cost nothing."""
    data = message.metadata.to_pybytes()
    try:
        root = _Table(data, _u32(data, 0))
        kind = root.scalar(1, "B")
        header = root.table(2)
        if header is not None and kind == DICTIONARY_BATCH:
            batch = header.table(1)
            return Cost() if batch is None else _batch_cost(batch, message.body, rows=False)
        if header is not None and kind == RECORD_BATCH:
            return _batch_cost(header, message.body, rows=True)
        return Cost()
    except (struct.error, IndexError) as error:
        raise ValueError(f"a message header is malformed ({error})") from error


def _batch_cost(batch: _Table, body: pa.Buffer | None, *, rows: bool) -> Cost:
    length = batch.scalar(0, "q")
    nodes = [struct.unpack_from("<q", batch.data, at)[0] for at in batch.structs(1, 16)]
    compressed = batch.field(3) is not None
    sizes = []
    for at in batch.structs(2, 16):
        offset, size = struct.unpack_from("<qq", batch.data, at)
        sizes.append(_decoded_size(body, offset, size) if compressed and size else size)
    if min([length, *nodes, *sizes]) < 0:
        raise ValueError("a message header declares a negative length")
    return Cost(length if rows else 0, sum(nodes), sum(sizes))


def _decoded_size(body: pa.Buffer | None, offset: int, size: int) -> int:
    """A compressed buffer's decompressed length: the int64 its body bytes start with."""
    if body is None or size < 8 or not 0 <= offset <= body.size - 8:
        raise ValueError("a compressed buffer lies outside the message body")
    declared = struct.unpack("<q", body.slice(offset, 8).to_pybytes())[0]
    return size - 8 if declared == UNCOMPRESSED else declared


def _u16(data: bytes, at: int) -> int:
    value: int = struct.unpack_from("<H", data, at)[0]
    return value


def _u32(data: bytes, at: int) -> int:
    value: int = struct.unpack_from("<I", data, at)[0]
    return value


def _i32(data: bytes, at: int) -> int:
    value: int = struct.unpack_from("<i", data, at)[0]
    return value
