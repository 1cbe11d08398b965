"""Leaf hashes and Merkle trees equal what an auditor recomputes with only hashlib and struct.

The reference below builds each row's message byte by byte from the definition in
docs/predictions.md, one row at a time, and hashes the messages of each leaf's rows laid end
to end; it never calls clew's encoder: if the batched, chunked, grouped encoder ever drifts
from the documented definition, these properties fail.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import struct
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clew.domain import ids, leaves, merkle
from clew.domain.captures import prediction_id_column

# Touches no store: the embedded pass runs it, the backend and remote passes would repeat it.
pytestmark = pytest.mark.backend_independent

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
NULL = 0xFFFFFFFF
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
INPUT_TYPES = {"f0": pa.float64(), "f1": pa.int32(), "f2": pa.string(), "f3": pa.bool_()}
FIXED_FORMATS = {"f0": "<d", "f1": "<i", "f3": "<?"}


def fixed(value: Any, layout: str) -> bytes:
    if value is None:
        return b"\x00" + bytes(struct.calcsize(layout))
    return b"\x01" + struct.pack(layout, value)


def variable(value: str | None) -> bytes:
    if value is None:
        return struct.pack("<I", NULL)
    data = value.encode()
    return struct.pack("<I", len(data)) + data


def reference_message(row: dict[str, Any], output_kind: str) -> bytes:
    """One row's message, straight from the documented layout."""
    call, number = row["prediction_id"].split(".")
    time_ms = (row["time"] - EPOCH) // dt.timedelta(milliseconds=1)
    message = b"\x00" + call.encode("ascii") + struct.pack("<Iq", int(number), time_ms)
    inputs = row.get("inputs", "absent")
    if inputs == "absent":
        message += b"\x00"
    else:
        message += b"\x01" if inputs is not None else b"\x00"
        values = inputs or {}
        for name in INPUT_TYPES:
            value = values.get(name)
            message += variable(value) if name == "f2" else fixed(value, FIXED_FORMATS[name])
    output = row["output"]
    if output_kind == "int":
        message += fixed(output, "<q")
    elif output_kind == "pair":
        message += b"\x01" + struct.pack("<2d", *output)
    else:
        message += variable(output)
    return message


def reference_leaves(messages: list[bytes], leaf_rows: int) -> bytes:
    """Each leaf hashes the messages of its ``leaf_rows`` rows (the last may hold fewer)."""
    return b"".join(
        hashlib.sha256(b"".join(messages[i : i + leaf_rows])).digest()
        for i in range(0, len(messages), leaf_rows)
    )


call_ids = st.text(CROCKFORD, min_size=26, max_size=26)
input_rows = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {
            "f0": st.none() | st.floats(allow_nan=True, allow_infinity=True),
            "f1": st.none() | st.integers(-(2**31), 2**31 - 1),
            "f2": st.none() | st.text(max_size=12),
            "f3": st.none() | st.booleans(),
        }
    ),
)
outputs = {
    "int": st.none() | st.integers(-(2**63), 2**63 - 1),
    "pair": st.tuples(st.floats(width=64), st.floats(width=64)),
    "text": st.none() | st.text(max_size=20),
}


@st.composite
def batches(draw: st.DrawFn) -> tuple[pa.Table, str]:
    count = draw(st.integers(1, 40))
    output_kind = draw(st.sampled_from(sorted(outputs)))
    with_inputs = draw(st.booleans())
    calls = draw(st.lists(call_ids, min_size=1, max_size=4))
    ids = [
        f"{draw(st.sampled_from(calls))}.{draw(st.integers(0, 2**32 - 1))}" for _ in range(count)
    ]
    times = [draw(st.integers(0, 2**41)) for _ in range(count)]
    columns: dict[str, pa.Array] = {
        "prediction_id": pa.array(ids, pa.string()),
        "time": pa.array(times, pa.timestamp("ms", tz="UTC")),
    }
    if with_inputs:
        rows = [draw(input_rows) for _ in range(count)]
        columns["inputs"] = pa.array(rows, pa.struct(list(INPUT_TYPES.items())))
    values = [draw(outputs[output_kind]) for _ in range(count)]
    if output_kind == "pair":
        columns["output"] = pa.array(values, pa.list_(pa.float64(), 2))
    else:
        columns["output"] = pa.array(values, pa.int64() if output_kind == "int" else pa.string())
    return pa.table(columns), output_kind


@settings(max_examples=80, deadline=None)
@given(batches(), st.sampled_from([1, 3, 8192]), st.sampled_from([1, 2, 7, 32]))
def test_batched_leaf_hashes_equal_a_per_row_hashlib_reference(
    batch: tuple[pa.Table, str], chunk_rows: int, leaf_rows: int
) -> None:
    table, output_kind = batch
    original = leaves.CHUNK_ROWS
    leaves.CHUNK_ROWS = chunk_rows  # small chunks cross chunk boundaries inside one batch
    try:
        hashes = leaves.leaf_hashes(table, leaf_rows=leaf_rows)
    finally:
        leaves.CHUNK_ROWS = original
    messages = [reference_message(row, output_kind) for row in table.to_pylist()]
    expected = reference_leaves(messages, leaf_rows)
    assert hashes == expected
    assert len(hashes) == 32 * leaves.leaf_count(table.num_rows, leaf_rows)
    for leaf, start in enumerate(range(0, table.num_rows, leaf_rows)):
        rows = table.slice(start, leaf_rows)
        alone = leaves.leaf_hashes(rows, leaf_rows=rows.num_rows)
        assert alone == expected[32 * leaf : 32 * leaf + 32]


def test_one_row_per_leaf_is_the_per_row_hash_of_earlier_batches() -> None:
    """Batches signed before leaves were grouped hashed ``sha256(message)`` per row."""
    table = pa.table(
        {
            "prediction_id": ["0" * 26 + ".0", "0" * 26 + ".1"],
            "time": pa.array([5, 6], pa.timestamp("ms", tz="UTC")),
            "output": pa.array([1, 2], pa.int64()),
        }
    )
    messages = [reference_message(row, "int") for row in table.to_pylist()]
    assert leaves.leaf_hashes(table) == b"".join(hashlib.sha256(m).digest() for m in messages)
    assert leaves.leaf_hashes(table, leaf_rows=2) == hashlib.sha256(b"".join(messages)).digest()
    with pytest.raises(ValueError, match="at least one row"):
        leaves.leaf_hashes(table, leaf_rows=0)


def test_header_bytes_for_calls_match_what_the_stored_columns_give() -> None:
    calls = ["0" * 25 + "1", "Z" * 26]
    counts = [3, 2]
    table = pa.table(
        {
            "prediction_id": [
                f"{call}.{row}" for call, n in zip(calls, counts, strict=True) for row in range(n)
            ],
            "time": pa.array(
                [dt.datetime(2026, 1, 1, tzinfo=dt.UTC)] * 3
                + [dt.datetime(2030, 5, 6, tzinfo=dt.UTC)] * 2,
                pa.timestamp("ms", tz="UTC"),
            ),
        }
    )
    times = table.column("time").cast(pa.int64()).to_numpy()
    made = leaves.header_bytes_for_calls(calls, np.array(counts), times[[0, 3]])
    assert (made.matrix() == leaves.header_bytes(table)).all()


def reference_root(hashes: list[bytes]) -> bytes:
    level = [
        hashlib.sha256(b"\x01" + b"".join(hashes[i : i + 16])).digest()
        for i in range(0, len(hashes), 16)
    ]
    return level[0] if len(level) == 1 else reference_root(level)


@pytest.mark.parametrize("count", [1, 2, 15, 16, 17, 256, 257, 4097])
def test_every_proof_folds_to_a_root_a_hashlib_verifier_recomputes(count: int) -> None:
    hashes = [
        hashlib.sha256(b"\x00" + index.to_bytes(4, "little")).digest() for index in range(count)
    ]
    levels = merkle.build_levels(b"".join(hashes))
    assert levels[-1] == reference_root(hashes)
    assert [len(level) // 32 for level in levels] == merkle.level_sizes(count)
    for index in {0, count // 2, count - 1}:
        steps = merkle.proof(levels, index)
        assert merkle.root_from_proof(hashes[index], steps) == levels[-1]
        forged = hashlib.sha256(b"forged").digest()
        with pytest.raises(ValueError):
            merkle.root_from_proof(forged, steps)


@given(st.integers(0, 2**48 - 1), st.integers(0, 2**80 - 1))
def test_call_ids_spell_time_and_randomness_in_crockford_base32(time_ms: int, rest: int) -> None:
    """The table-driven encoder gives the ULID digits, five bits each, most significant first."""
    value = time_ms << 80 | rest
    digits = "".join(CROCKFORD[(value >> 5 * (25 - k)) & 31] for k in range(26))
    assert ids._encode(value) == digits
    assert ids.id_time_ms(digits) == time_ms


def test_call_ids_made_in_a_row_are_distinct_and_ordered() -> None:
    made = [ids.new_id() for _ in range(2_000)]
    assert made == sorted(made) and len(set(made)) == len(made)
    assert all(ids.is_id(item) for item in made)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([0, 1, 9, 10, 11, 99, 100, 101, 1_000, 1_234]), max_size=6))
def test_prediction_id_columns_spell_call_dot_row(counts: list[int]) -> None:
    """The id column laid out by numpy equals ``f"{call}.{row}"`` spelt row by row, across
    the widths of the row numbers (9 -> 10, 99 -> 100...) and calls of no rows."""
    calls = [ids.new_id() for _ in counts]
    column = prediction_id_column(calls, counts)
    column.validate(full=True)
    assert column.type == pa.string()
    assert column.to_pylist() == [
        f"{call}.{row}" for call, n in zip(calls, counts, strict=True) for row in range(n)
    ]
