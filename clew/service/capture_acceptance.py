"""Accepting the batches a remote client sends: checked, completed, sealed and signed here.

The client sends only ids, times, inputs and outputs; the model columns come from the
registry, and the tree and signature are made by the server, so the signing key never leaves
it. A batch id is recorded once: a retried post is acknowledged again, never written twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy.exc
from sqlalchemy import select

from clew.domain import ids, leaves
from clew.domain.captures import CHANGED_KEY, REMOTE_COLUMNS, CaptureTarget, constant_column
from clew.errors import ConflictError, InvalidInputError
from clew.service import signing
from clew.service.capture_sealing import SealedBatch, write_sealed
from clew.store import schema
from clew.store.location import Store

MAX_REMOTE_ROWS = 1_000_000
_PREDICTION_ID = r"^[0-9A-HJKMNP-TV-Z]{26}\.(0|[1-9][0-9]{0,8})$"


@dataclass(frozen=True)
class AcceptedBatch:
    batch_id: str
    count: int
    duplicate: bool

    def to_dict(self) -> dict[str, Any]:
        return {"batch": self.batch_id, "count": self.count, "duplicate": self.duplicate}


def accept_batch(
    store: Store,
    signer: signing.Signer,
    actor: str,
    target: CaptureTarget,
    batch_id: str,
    rows: pa.Table,
    dropped: int = 0,
) -> AcceptedBatch:
    """Seal, sign and write a batch of rows a remote client predicted.

    The client sends only ids, times, inputs and outputs; the model columns come from the
    registry here, and the tree and signature are made here, so the signing key never leaves
    the server. A batch id already recorded for this version is acknowledged again without
    writing anything: a retried post never makes two batches.
    """
    if not ids.is_id(batch_id):
        raise InvalidInputError(f"batch id {batch_id!r} is not a ULID like 01J...; send a new id.")
    existing = _recorded(store, batch_id, target)
    if existing is not None:
        return existing
    table = remote_table(target, rows)
    calls = pc.utf8_slice_codeunits(table.column("prediction_id"), 0, leaves.CALL_LENGTH)
    try:  # hashed before any file is written: rows clew cannot hash leave nothing behind
        hashes = leaves.leaf_hashes(table, leaf_rows=leaves.LEAF_ROWS)
    except (pa.ArrowException, ValueError, TypeError, NotImplementedError) as error:
        raise InvalidInputError(
            f"capture batch {batch_id} has columns clew cannot hash ({error}); send numbers, "
            "text, booleans or fixed-size lists of them."
        ) from error
    changed = _changed_calls(rows.schema.metadata, table, calls, batch_id)
    sealed = SealedBatch(
        batch_id,
        target,
        table,
        lambda: hashes,
        leaves.LEAF_ROWS,
        dropped,
        changed,
        file_name=f"{batch_id}-{ids.new_id()}",
    )
    first, last = pc.min(calls).as_py(), pc.max(calls).as_py()
    try:
        write_sealed(store, signer, actor, sealed, first, last)
    except sqlalchemy.exc.IntegrityError:
        existing = _recorded(store, batch_id, target)
        if existing is None:
            raise
        return existing
    return AcceptedBatch(batch_id, table.num_rows, duplicate=False)


def _changed_calls(
    metadata: dict[bytes, bytes] | None, table: pa.Table, calls: pa.ChunkedArray, batch_id: str
) -> tuple[str, ...]:
    """The calls a client withheld changed inputs of (``CHANGED_KEY`` in the schema metadata):
    a JSON list of call ids of this batch (``calls`` names each row's) with null inputs."""
    text = (metadata or {}).get(CHANGED_KEY)
    if text is None:
        return ()
    try:
        changed = json.loads(text)
    except ValueError:
        changed = None
    if (
        not isinstance(changed, list)
        or not all(isinstance(call, str) for call in changed)
        or not set(changed) <= set(pc.unique(calls).to_pylist())
    ):
        raise InvalidInputError(
            f"capture batch {batch_id} metadata {CHANGED_KEY.decode()} must be a JSON list of "
            "call ids of its own rows."
        )
    if changed and "inputs" in table.column_names:
        sent = pc.filter(table.column("inputs"), pc.is_in(calls, pa.array(changed, pa.string())))
        if sent.null_count != len(sent):
            raise InvalidInputError(
                f"capture batch {batch_id} metadata {CHANGED_KEY.decode()} lists calls whose "
                "inputs it sends; send their rows with null inputs."
            )
    return tuple(sorted(set(changed)))


def _recorded(store: Store, batch_id: str, target: CaptureTarget) -> AcceptedBatch | None:
    table = schema.capture_batches
    with store.db.read() as connection:
        row = connection.execute(
            select(table.c.model_version_id, table.c.count).where(table.c.id == batch_id)
        ).first()
    if row is None:
        return None
    version_id, count = row
    if version_id != target.version_id:
        raise ConflictError(
            f"capture batch {batch_id} was already recorded for another model version; send "
            "each batch with a new id."
        )
    return AcceptedBatch(batch_id, int(count), duplicate=True)


def remote_table(target: CaptureTarget, rows: pa.Table) -> pa.Table:
    """A client's rows checked and completed into the stored column layout.

    Columns must be ``prediction_id`` (``<ULID>.<row>``, unique), ``time`` (a timestamp),
    ``output`` and optionally ``inputs`` (a struct); anything else is refused by name.
    """
    names = rows.column_names
    unknown = [name for name in names if name not in REMOTE_COLUMNS]
    missing = [name for name in ("prediction_id", "time", "output") if name not in names]
    if unknown or missing or len(set(names)) != len(names):
        raise InvalidInputError(
            f"a capture batch has columns prediction_id, time, output and optionally inputs; "
            f"got {names}."
        )
    unions = [name for name in names if _has_union(rows.schema.field(name).type)]
    if unions:
        raise InvalidInputError(
            f"column(s) {unions} of a capture batch use a union type, which capture files "
            "cannot store; send plain or struct columns."
        )
    count = rows.num_rows
    if not 0 < count <= MAX_REMOTE_ROWS:
        raise InvalidInputError(
            f"a capture batch holds 1 to {MAX_REMOTE_ROWS} rows, not {count}; split it."
        )
    prediction_ids = _prediction_ids(rows.column("prediction_id"))
    times = _times(rows.column("time"))
    columns: dict[str, Any] = {
        "prediction_id": prediction_ids,
        "time": times,
        "model_name": constant_column(target.name, count),
        "model_version": pa.array(np.full(count, target.version, dtype=np.int32)),
        "model_digest": constant_column(target.digest, count),
    }
    if "inputs" in names:
        inputs = rows.column("inputs")
        if not pa.types.is_struct(inputs.type):
            raise InvalidInputError(
                f"inputs of a capture batch must be a struct of named fields, not {inputs.type}."
            )
        columns["inputs"] = leaves.one_array(inputs)
    columns["output"] = leaves.one_array(rows.column("output"))
    return pa.table(columns)


def _has_union(kind: pa.DataType) -> bool:
    if pa.types.is_union(kind):
        return True
    return any(_has_union(kind.field(i).type) for i in range(kind.num_fields))


def _prediction_ids(column: pa.ChunkedArray) -> pa.Array:
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise InvalidInputError(f"prediction_id must be text, not {column.type}.")
    values = leaves.one_array(pc.cast(column, pa.string()))
    if values.null_count or not pc.all(pc.match_substring_regex(values, _PREDICTION_ID)).as_py():
        raise InvalidInputError(
            "every prediction_id of a capture batch must look like <26-character ULID>.<row>."
        )
    if pc.count_distinct(values).as_py() != len(values):
        raise InvalidInputError("a capture batch repeats a prediction_id; ids must be unique.")
    return values


def _times(column: pa.ChunkedArray) -> pa.Array:
    if not pa.types.is_timestamp(column.type) or column.null_count:
        raise InvalidInputError(f"time must be a timestamp on every row, not {column.type}.")
    return leaves.one_array(pc.cast(column, pa.timestamp("ms", tz="UTC")))
