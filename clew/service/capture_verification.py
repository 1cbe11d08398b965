"""Verifying every captured batch of a store (``clew audit verify``).

``verify_batches`` re-checks every recorded batch against its file: digest, recomputed Merkle
root and signature. Checking one prediction with only public keys (``verify_row``) needs no
store and lives in ``domain/capture_proofs.py``.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select

from clew.domain import capture_proofs, digests, leaves, merkle, signatures
from clew.domain.captures import (
    BatchProblem,
    BatchRecord,
    header_of,
    leaf_rows_of,
)
from clew.errors import IntegrityError
from clew.service import signing
from clew.store import schema
from clew.store.location import Store


def all_batches(store: Store) -> list[BatchRecord]:
    table = schema.capture_batches
    with store.db.read() as connection:
        rows = connection.execute(select(table).order_by(table.c.id))
        return [BatchRecord(**row._mapping) for row in rows]


def verify_batches(store: Store) -> tuple[int, list[BatchProblem]]:
    """Re-check every capture batch: file digest, recomputed Merkle root, signature (with the
    public key of the key id it names, from the store's key history)."""
    public_keys = signing.public_keys(store)
    problems: list[BatchProblem] = []
    batches = all_batches(store)
    for batch in batches:
        reason = _batch_problem(store, batch, public_keys)
        if reason:
            problems.append(BatchProblem(batch.id, batch.path, reason))
    return len(batches), problems


def _batch_problem(
    store: Store, batch: BatchRecord, public_keys: Mapping[str, bytes]
) -> str | None:
    files = store.capture_files
    try:
        if not files.exists(batch.path):
            return f"capture file {batch.path} is missing"
    except IntegrityError as error:
        return str(error)
    if files.file_digest(batch.path) != batch.file_digest:
        return f"capture file {batch.path} does not match its recorded digest {batch.file_digest}"
    table = files.read_batch(batch.path)
    if table.num_rows != batch.count:
        return f"capture file {batch.path} holds {table.num_rows} rows, not {batch.count}"
    header = header_of(table)
    try:
        leaf_rows = leaf_rows_of(header)
    except ValueError as error:
        return f"the signed header of {batch.path} is malformed ({error})"
    root = merkle.build_levels(leaves.leaf_hashes(table, leaf_rows=leaf_rows))[-1]
    if digests.PREFIX + root.hex() != batch.merkle_root:
        return f"the rows of {batch.path} no longer hash to the recorded Merkle root"
    if header.get("merkle_root") != batch.merkle_root:
        return f"the signed header of {batch.path} names another Merkle root"
    if header.get("key_id") != batch.key_id:
        return f"the signed header of {batch.path} names another key than the batch record"
    public_key = signatures.public_key_for(public_keys, batch.key_id)
    if public_key is None:
        return f"batch {batch.id}: {capture_proofs.unknown_key(batch.key_id)}"
    if not signatures.verify(public_key, digests.canonical_json(header), batch.signature):
        return f"the signature of batch {batch.id} does not verify with its key {batch.key_id}"
    return None
