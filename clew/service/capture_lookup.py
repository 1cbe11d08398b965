"""Finding one captured prediction by id, with its label and the evidence that it is intact.

A prediction id names its call, and ``capture_batches.first_call/last_call`` name the one file
that can hold a call, so a lookup reads one row group of one file. The prediction comes back
with its leaf, inclusion proof and signature checked (clew/domain/capture_proofs.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Connection, select

from clew.domain import leaves, merkle, refs
from clew.domain.capture_proofs import verify_row
from clew.domain.captures import (
    BatchRecord,
    CapturedPrediction,
    header_of,
    leaf_rows_of,
    signature_of,
)
from clew.errors import InvalidInputError, NotFoundError
from clew.service import signing
from clew.store import schema
from clew.store.location import Store


def normalize_id(prediction_id: str) -> str:
    """Accept ``prediction:<id>`` or the bare id; refuse anything else with the accepted forms."""
    text = str(prediction_id).strip()
    parsed = refs.parse(text if text.startswith("prediction:") else f"prediction:{text}")
    if not isinstance(parsed, refs.PredictionRef):
        raise InvalidInputError(f"{prediction_id!r} is not a prediction id like 01J...XYZ.42.")
    return parsed.prediction_id


def find_prediction(store: Store, prediction_id: str) -> CapturedPrediction:
    """Look a prediction up by id and verify its leaf, proof and the batch signature."""
    wanted = normalize_id(prediction_id)
    for batch in candidate_batches(store, wanted[: leaves.CALL_LENGTH]):
        rows = store.capture_files.read_prediction_group(batch.path, wanted)
        row = rows.filter(pc.equal(rows.column("prediction_id"), wanted))
        if row.num_rows:
            return _captured(store, batch, row.slice(0, 1), rows)
    raise NotFoundError(
        f"prediction {wanted} was not captured in this store; check the id, or call "
        "client.flush_captures() if it was made moments ago."
    )


def candidate_batches(store: Store, call: str) -> list[BatchRecord]:
    table = schema.capture_batches
    with store.db.read() as connection:
        rows = connection.execute(
            select(table)
            .where(table.c.first_call <= call, table.c.last_call >= call)
            .order_by(table.c.created_ms)
        )
        return [BatchRecord(**row._mapping) for row in rows]


def _captured(
    store: Store, batch: BatchRecord, row: pa.Table, around: pa.Table
) -> CapturedPrediction:
    """The prediction in ``row``, checked; ``around`` holds the rows read with it (its row
    group), where the rest of its leaf normally is."""
    values = row.to_pylist()[0]
    header = header_of(row)
    file_signature = signature_of(row)
    leaf_index = int(values["leaf"])
    leaf_table, proof = _leaf_evidence(store, batch, header, around, leaf_index)
    verification = verify_row(
        leaf_table,
        header,
        file_signature,
        proof,
        signing.public_keys(store),
        batch,
        values["prediction_id"],
    )
    time_value = values["time"]
    with store.db.read() as connection:
        label = label_row(connection, values["prediction_id"])
    return CapturedPrediction(
        id=values["prediction_id"],
        time_ms=int(time_value.timestamp() * 1000),
        model=values["model_name"],
        version=int(values["model_version"]),
        model_version_id=batch.model_version_id,
        model_digest=values["model_digest"],
        method=header.get("method", "predict"),
        inputs=values.get("inputs"),
        output=values["output"],
        batch_id=batch.id,
        leaf_index=leaf_index,
        leaf_hash=_leaf_hash_hex(leaf_table),
        proof=proof,
        merkle_root=batch.merkle_root,
        signature=batch.signature,
        key_id=batch.key_id,
        header=header,
        verification=verification,
        label=json.loads(label.label) if label else None,
        labelled=label is not None,
        row=row,
        leaf_table=leaf_table,
    )


def _leaf_evidence(
    store: Store, batch: BatchRecord, header: dict[str, Any], around: pa.Table, leaf_index: int
) -> tuple[pa.Table, list[merkle.ProofStep]]:
    """The rows of the leaf (read from the same file) and the leaf's inclusion proof.

    What cannot be read is left empty or partial: verification then names what is missing
    (with a tampered header the proof may point past the end of the .merkle file).
    """
    files = store.capture_files
    leaf_table = around.filter(pc.equal(around.column("leaf"), leaf_index))
    try:
        leaf_rows = leaf_rows_of(header)
    except ValueError:
        return leaf_table, []
    if leaf_table.num_rows < min(leaf_rows, batch.count - leaf_index * leaf_rows):
        leaf_table = files.read_leaf(batch.path, leaf_index)  # a file rewritten differently
    try:
        proof = files.read_proof(batch.path, leaves.leaf_count(batch.count, leaf_rows), leaf_index)
    except (NotFoundError, ValueError, OSError):
        proof = []
    return leaf_table, proof


def _leaf_hash_hex(leaf_table: pa.Table) -> str:
    try:
        return leaves.leaf_hashes(leaf_table, leaf_rows=max(1, leaf_table.num_rows)).hex()
    except (pa.ArrowException, ValueError, TypeError, NotImplementedError):
        return ""


def models_of(store: Store, prediction_ids: Sequence[str]) -> dict[str, str]:
    """The registered model name of each prediction in ``prediction_ids`` this store captured
    (ids it did not capture are left out, for the caller's own refusal): what a write about a
    prediction, such as its label, must be allowed on. A call's id range can overlap batches of
    several models, so the batch that really holds an id is the one whose file lists it."""
    wanted = {normalize_id(pid) for pid in prediction_ids}
    by_call: dict[str, set[str]] = {}
    for pid in wanted:
        by_call.setdefault(pid[: leaves.CALL_LENGTH], set()).add(pid)
    versions: dict[str, str] = {}
    listed: dict[str, set[str]] = {}
    for call, pids in by_call.items():
        for batch in candidate_batches(store, call):
            if batch.path not in listed:
                listed[batch.path] = set(store.capture_files.read_ids(batch.path).to_pylist())
            for pid in pids & listed[batch.path]:
                versions.setdefault(pid, batch.model_version_id)
    names = _model_names(store, set(versions.values()))
    return {pid: names[version] for pid, version in versions.items()}


def _model_names(store: Store, version_ids: set[str]) -> dict[str, str]:
    """Model version id -> its registered model's name."""
    versions, models = schema.model_versions, schema.models
    query = (
        select(versions.c.id, models.c.name)
        .join(models, models.c.id == versions.c.model_id)
        .where(versions.c.id.in_(sorted(version_ids)))
    )
    with store.db.read() as connection:
        return {version_id: name for version_id, name in connection.execute(query)}


def label_row(connection: Connection, prediction_id: str) -> Any | None:
    table = schema.labels
    return connection.execute(select(table).where(table.c.prediction_id == prediction_id)).first()
