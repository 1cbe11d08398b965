"""Grouped Merkle leaves on real stores: a leaf hashes ``leaf_rows`` consecutive rows, so a
prediction verifies with the rows of its leaf; an altered row fails every prediction of its
leaf (and only those); batches signed with one row per leaf (before grouping) still verify;
the header's ``leaf_rows`` is covered by the signature."""

from __future__ import annotations

import hashlib
import json
import struct
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from capture_support import editable_batch, iris, register_iris

import clew
from clew.domain import digests, ids, leaves, merkle
from clew.domain.captures import (
    BATCH_KIND,
    HEADER_KEY,
    SIGNATURE_KEY,
    Call,
    CaptureTarget,
    build_table,
    header_of,
)
from clew.service import audit, capture_verification, signing
from clew.store import captures, schema


@pytest.fixture
def predicted(client: clew.Client) -> list[str]:
    """150 iris predictions in one batch: leaves of 32 rows, 0-31 in leaf 0, 32-63 in leaf 1..."""
    model = register_iris(client)
    _, prediction_ids = model.predict_with_ids(iris()[0])
    client.flush_captures()
    return list(prediction_ids)


def _rewrite(client: clew.Client, change: Callable[[pa.Table], pa.Table]) -> None:
    with editable_batch(client) as path:
        table = pq.read_table(path)
        pq.write_table(change(table), path)


def _with_output(table: pa.Table, row: int) -> pa.Table:
    outputs = table.column("output").to_pylist()
    outputs[row] = (outputs[row] + 1) % 3
    index = table.column_names.index("output")
    return table.set_column(index, "output", pa.array(outputs, table.schema.field("output").type))


def test_a_prediction_carries_its_leaf_and_verifies(client: clew.Client, predicted) -> None:
    found = client.get_prediction(predicted[70])
    assert found.verified, found.verification.reason
    assert found.leaf_index == 2 and found.leaf_table is not None
    assert found.leaf_table.column("prediction_id").to_pylist() == predicted[64:96]
    bundle = found.to_dict()
    assert bundle["leaf"]["index"] == 2 and bundle["leaf"]["prediction_ids"] == predicted[64:96]
    rows = found.leaf_table
    assert bundle["leaf"]["hash"] == leaves.leaf_hashes(rows, leaf_rows=rows.num_rows).hex()
    last = client.get_prediction(predicted[149])  # the last leaf holds 150 - 4 * 32 = 22 rows
    assert last.verified and last.leaf_table.num_rows == 22


def test_an_altered_row_fails_its_whole_leaf_and_only_that_leaf(
    client: clew.Client, predicted
) -> None:
    _rewrite(client, lambda table: _with_output(table, 40))
    altered = client.get_prediction(predicted[40])
    assert not altered.verified
    assert altered.verification.reason == "the row's content does not match its inclusion proof"
    # row 33 was not touched, but it hashes together with row 40 (leaf 1 = rows 32-63)
    neighbour = client.get_prediction(predicted[33])
    assert not neighbour.verified and neighbour.verification == altered.verification
    for untouched in (31, 64, 149):
        assert client.get_prediction(predicted[untouched]).verified
    _, problems = capture_verification.verify_batches(client.store)
    assert len(problems) == 1 and "digest" in problems[0].reason


def test_a_tampered_leaf_rows_in_the_header_breaks_the_signature(
    client: clew.Client, predicted
) -> None:
    def regroup(table: pa.Table) -> pa.Table:
        header = {**header_of(table), "leaf_rows": 1}
        metadata = {**table.schema.metadata, HEADER_KEY: digests.canonical_json(header)}
        return table.replace_schema_metadata(metadata)

    _rewrite(client, regroup)
    found = client.get_prediction(predicted[0])
    assert not found.verified
    assert "signature does not verify" in found.verification.reason


def test_a_batch_signed_one_row_per_leaf_still_verifies(client: clew.Client) -> None:
    """The format before grouping: no ``leaf_rows`` in the header, ``leaf`` = row number and
    a per-row ``leaf_hash`` column; get_prediction, trace and audit verify still accept it."""
    model = register_iris(client)
    features, _ = iris()
    call = Call(
        ids.new_id(), time.time_ns() // 1_000_000, 150, model.raw.predict(features), features
    )
    target = model._targets["predict"]
    batch_id = _write_unit_leaf_batch(client, target, call)
    found = client.get_prediction(f"{call.call_id}.77")
    assert found.verified, found.verification.reason
    assert found.batch_id == batch_id and "leaf_rows" not in found.header
    assert found.leaf_table.num_rows == 1 and found.leaf_index == 77
    assert clew.trace(f"{call.call_id}.77").step("prediction").verified
    assert capture_verification.verify_batches(client.store) == (1, [])


def _write_unit_leaf_batch(client: clew.Client, target: CaptureTarget, call: Call) -> str:
    """What write_sealed did before leaves were grouped, step by step."""
    store = client.store
    signer = signing.Signer(store)
    table = build_table(target, [call])
    levels = merkle.build_levels(leaves.leaf_hashes(table))
    batch_id = ids.new_id()
    header = {
        "kind": BATCH_KIND,
        "batch": batch_id,
        "model": target.name,
        "version": target.version,
        "model_version_id": target.version_id,
        "model_digest": target.digest,
        "method": target.method,
        "count": table.num_rows,
        "first_call": call.call_id,
        "last_call": call.call_id,
        "merkle_root": digests.PREFIX + levels[-1].hex(),
        "key_id": signer.key_id,
    }
    signature = signer.sign(digests.canonical_json(header))
    count = table.num_rows
    hashes = pa.Array.from_buffers(pa.binary(32), count, [None, pa.py_buffer(levels[0])])
    table = table.append_column("leaf", pa.array(range(count), pa.int32()))
    table = table.append_column("leaf_hash", hashes)
    relative = captures.batch_relative_path(target.name, target.version, "2026-01-01", batch_id)
    metadata = {
        HEADER_KEY: digests.canonical_json(header),
        SIGNATURE_KEY: signature.encode(),
    }
    file_digest = store.capture_files.write_sealing(relative, table, lambda: (levels, metadata))
    row = {
        "id": batch_id,
        "model_version_id": target.version_id,
        "path": relative,
        "file_digest": file_digest,
        "count": count,
        "first_call": call.call_id,
        "last_call": call.call_id,
        "merkle_root": header["merkle_root"],
        "signature": signature,
        "key_id": signer.key_id,
        "dropped": 0,
        "created_ms": time.time_ns() // 1_000_000,
    }
    with store.db.write() as connection:
        connection.execute(schema.capture_batches.insert().values(**row))
        audit.stage(connection, schema.capture_batches, row)
        audit.append(connection, "alice", "capture.batch", f"{target.name}/1", row)
    return batch_id


def test_rows_are_encoded_while_sealing_and_a_failed_seal_leaves_no_file(
    client: clew.Client,
) -> None:
    """write_sealing encodes the rows on a second thread while ``seal`` runs: the footer gets
    the metadata seal returns (types kept), the digest it returns (hashed while writing) is
    the stored file's, and a seal that raises leaves nothing stored."""
    files = client.store.capture_files
    table = pa.table(
        {
            "prediction_id": ["0" * 26 + ".0", "0" * 26 + ".1"],
            "output": pa.FixedSizeListArray.from_arrays(pa.array([0.25, 0.75, 0.5, 0.5]), 2),
            "leaf": pa.array([0, 0], pa.int32()),
        }
    )
    relative = captures.batch_relative_path("m", 1, "2026-01-01", ids.new_id())
    levels = merkle.build_levels(bytes(32))
    digest = files.write_sealing(relative, table, lambda: (levels, {HEADER_KEY: b'{"a":1}'}))
    assert digest == files.file_digest(relative)  # hashed as written = the stored bytes' digest
    stored = files.read_batch(relative)
    assert stored.schema.metadata == {HEADER_KEY: b'{"a":1}'}
    assert stored.schema.field("output").type == table.schema.field("output").type
    assert stored.to_pylist() == table.to_pylist()
    assert files.read_levels(relative, 1) == levels

    def failing() -> tuple[list[bytes], dict[bytes, bytes]]:
        raise RuntimeError("hashing failed")

    other = captures.batch_relative_path("m", 1, "2026-01-01", ids.new_id())
    with pytest.raises(RuntimeError, match="hashing failed"):
        files.write_sealing(other, table, failing)
    assert not files.exists(other) and not files.exists(captures.merkle_name(other))
    assert {stored.relative for stored in files.list_files()} == {
        relative,
        captures.merkle_name(relative),
    }


def test_an_outside_auditor_reproduces_the_root_from_the_documented_format(
    client: clew.Client, predicted
) -> None:
    """hashlib, struct and cryptography only, following docs/predictions.md: encode each row
    of the leaf, hash them together, fold the proof, check the signed header."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    found = client.get_prediction(predicted[100])
    rows = found.leaf_table.to_pylist()
    messages = b""
    for row in rows:
        call, number = row["prediction_id"].split(".")
        time_ms = int(row["time"].timestamp() * 1000)
        messages += b"\x00" + call.encode("ascii") + struct.pack("<Iq", int(number), time_ms)
        messages += b"\x01" + b"".join(
            b"\x01" + struct.pack("<d", row["inputs"][f"f{j}"]) for j in range(4)
        )
        messages += b"\x01" + struct.pack("<q", row["output"])
    current = hashlib.sha256(messages).digest()
    for step in found.to_dict()["proof"]:
        group = [bytes.fromhex(item) for item in step["group"]]
        assert group[step["position"]] == current
        current = hashlib.sha256(b"\x01" + b"".join(group)).digest()
    header = found.header
    assert header["leaf_rows"] == 32 and len(rows) == 32
    assert "sha256:" + current.hex() == header["merkle_root"]
    canonical = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    public_key = load_pem_public_key(client.public_key().encode())
    public_key.verify(bytes.fromhex(found.signature), canonical)  # raises when it does not


@pytest.mark.backend_independent
@pytest.mark.parametrize(
    ("counts", "chunk_rows"),
    [([1] * 40, 7), ([2] * 40, 64), ([3, 2 * 64 + 5, 1, 70], 64), ([1_000] * 3, 8192), ([5], 1)],
)
def test_the_writers_call_headers_hash_like_the_stored_columns(
    counts: list[int], chunk_rows: int
) -> None:
    """The writer expands call ids, row numbers and times a chunk at a time from its calls;
    what it hashes must equal what a verifier derives from the stored Parquet columns, with
    calls of one row, calls crossing chunk boundaries and nulls in the inputs."""
    rng = np.random.default_rng(7)
    calls = []
    for index, count in enumerate(counts):
        inputs = rng.random((count, 3))
        if index % 2:
            inputs[0, 1] = np.nan
        outputs = rng.integers(0, 3, count)
        calls.append(Call(ids.new_id(), 1_700_000_000_000 + index, count, outputs, inputs))
    calls[-1].inputs = None  # withheld inputs: the struct column gets null rows
    table = build_table(CaptureTarget("v", "m", 1, "sha256:" + "0" * 64), calls)
    headers = leaves.header_bytes_for_calls(
        [str(call.call_id) for call in calls],
        np.array(counts),
        np.array([call.time_ms for call in calls]),
    )
    original = leaves.CHUNK_ROWS
    leaves.CHUNK_ROWS = chunk_rows
    try:
        for leaf_rows in (1, 3, 32):
            written = leaves.leaf_hashes(table, headers, leaf_rows)
            assert written == leaves.leaf_hashes(table, leaf_rows=leaf_rows)
    finally:
        leaves.CHUNK_ROWS = original
