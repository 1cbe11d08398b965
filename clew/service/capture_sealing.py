"""Sealing a batch of predictions: Arrow columns, a Merkle tree, an Ed25519 signature, files.

A batch's rows are hashed into a 16-ary Merkle tree, the root is signed with the store's key,
Parquet and the tree are written, and the batch is recorded (with an audit entry) in one
transaction. ``StoreWriter`` is the capture queue's writer for a store opened in this process;
a server seals the batches its clients post the same way (clew/service/capture_acceptance.py).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from clew.domain import digests, ids, leaves, merkle
from clew.domain.captures import (
    BATCH_KIND,
    HEADER_KEY,
    SIGNATURE_KEY,
    Call,
    CaptureTarget,
    build_table,
    changed_call_ids,
)
from clew.service import audit, signing
from clew.store import captures, schema
from clew.store.location import Store


class StoreWriter:
    """Signs and writes batches into a store opened in this process."""

    def __init__(self, store: Store, actor: str) -> None:
        self.store = store
        self.actor = actor
        self._signer: signing.Signer | None = None

    def write(self, target: CaptureTarget, calls: list[Call], dropped: int) -> None:
        self._signer = signing.current_signer(self.store, self._signer)
        write_batch(self.store, self._signer, self.actor, target, calls, dropped)


def write_batch(
    store: Store,
    signer: signing.Signer,
    actor: str,
    target: CaptureTarget,
    calls: Sequence[Call],
    dropped: int = 0,
) -> str:
    """Write one signed batch of in-process calls and record it; returns the batch id."""
    table = build_table(target, calls)
    call_ids = [str(call.call_id) for call in calls]

    def hash_leaves() -> bytes:
        header = leaves.header_bytes_for_calls(
            call_ids,
            np.array([call.rows for call in calls]),
            np.array([call.time_ms for call in calls]),
        )
        return leaves.leaf_hashes(table, header, leaves.LEAF_ROWS)

    changed = tuple(changed_call_ids(calls))
    sealed = SealedBatch(
        ids.new_id(), target, table, hash_leaves, leaves.LEAF_ROWS, dropped, changed
    )
    # threads may queue a later call id first, so the range comes from the ids themselves
    return write_sealed(store, signer, actor, sealed, min(call_ids), max(call_ids))


@dataclass(frozen=True)
class SealedBatch:
    """A batch's rows and how to hash them (``leaf_rows`` rows per leaf), ready for a tree,
    a signature and files. Hashing is deferred so that it runs while the rows are encoded."""

    batch_id: str
    target: CaptureTarget
    table: pa.Table
    hash_leaves: Callable[[], bytes]
    leaf_rows: int
    dropped: int = 0
    inputs_changed: tuple[str, ...] = ()  # calls whose inputs were withheld (``InputGuard``)
    # A client-chosen batch id may be posted twice at once (a retry through another replica);
    # each attempt then writes files of its own name, so the losing attempt can never overwrite
    # the files the recorded row names (its own are orphans ``clew gc`` sweeps).
    file_name: str | None = None


def write_sealed(
    store: Store,
    signer: signing.Signer,
    actor: str,
    batch: SealedBatch,
    first_call: str,
    last_call: str,
) -> str:
    """Hash the rows, build the tree, sign its root and write the files, then record the batch
    (and audit it).

    The rows are encoded to Parquet on a second thread while this one hashes them (see
    ``CaptureFiles.write_sealing``). The database row is inserted only after both files are
    complete, and readers only open files a row names, so no reader sees a batch half-written,
    on disk or in an object store. Callers pass a current signer (``signing.current_signer``);
    one whose key was rotated out meanwhile is refused when the row is recorded.
    """
    target, count = batch.target, batch.table.num_rows
    header: dict[str, Any] = {
        "kind": BATCH_KIND,
        "batch": batch.batch_id,
        "model": target.name,
        "version": target.version,
        "model_version_id": target.version_id,
        "model_digest": target.digest,
        "method": target.method,
        "count": count,
        "leaf_rows": batch.leaf_rows,
        "first_call": first_call,
        "last_call": last_call,
        "key_id": signer.key_id,
    }
    if batch.inputs_changed:
        header["inputs_changed"] = sorted(batch.inputs_changed)

    signature = ""

    def seal() -> tuple[list[bytes], dict[bytes, bytes]]:
        nonlocal signature
        levels = merkle.build_levels(batch.hash_leaves())
        header["merkle_root"] = digests.PREFIX + levels[-1].hex()
        signature = signer.sign(digests.canonical_json(header))
        return levels, {
            HEADER_KEY: digests.canonical_json(header),
            SIGNATURE_KEY: signature.encode(),
        }

    table = batch.table.append_column("leaf", _leaf_column(count, batch.leaf_rows))
    first_ms = pc.min(table.column("time")).value
    date = dt.datetime.fromtimestamp(first_ms / 1000, tz=dt.UTC).date().isoformat()
    name = batch.file_name or batch.batch_id
    relative = captures.batch_relative_path(target.name, target.version, date, name)
    file_digest = store.capture_files.write_sealing(relative, table, seal)
    row = {
        "id": batch.batch_id,
        "model_version_id": target.version_id,
        "path": relative,
        "file_digest": file_digest,
        "count": count,
        "first_call": first_call,
        "last_call": last_call,
        "merkle_root": header["merkle_root"],
        "signature": signature,
        "key_id": signer.key_id,
        "dropped": batch.dropped,
        "created_ms": time.time_ns() // 1_000_000,
    }
    with store.db.write() as connection:
        signer.require_current(connection)
        connection.execute(schema.capture_batches.insert().values(**row))
        audit.stage(connection, schema.capture_batches, row)
        audit.append(connection, actor, "capture.batch", f"{target.name}/{target.version}", row)
    return batch.batch_id


def _leaf_column(count: int, leaf_rows: int) -> pa.Array:
    """Which leaf each row belongs to: how a verifier finds the rows that hash together."""
    return pa.array(np.arange(count, dtype=np.int32) // leaf_rows)
