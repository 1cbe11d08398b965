"""Sending captured predictions to a clew server, batch by batch, from the writer thread.

A client of a server has no signing key and no capture files: ``LoadedModel`` queues its calls
exactly as in-process (ids are made here, so ``predict`` never waits for the network), and the
capture writer thread hands each batch to ``RemoteCaptureWriter``. It turns the calls into
Arrow columns (ids, times, inputs, outputs; the server adds the model columns from its own
registry), cuts them into posts of bounded size, and sends each as a compressed Arrow IPC
stream under a batch id made before the first attempt, so a retried post is recognised by the
server and never written twice. The server builds the Merkle tree and signs it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pyarrow as pa

from clew.domain import ids, merkle
from clew.errors import InvalidInputError
from clew.service import capture
from clew.service.capture import (
    REMOTE_COLUMNS,
    Call,
    CapturedPrediction,
    CaptureTarget,
    Verification,
    build_table,
)

ARROW_STREAM = "application/vnd.apache.arrow.stream"
POST_ROWS = 100_000
MAX_POST_BYTES = 8 * 1024 * 1024  # half the server's limit, so a post is never refused for size
Post = Callable[[CaptureTarget, str, bytes, int], object]


class RemoteCaptureWriter:
    """A ``BatchWriter`` that posts batches to a server through ``post``."""

    def __init__(self, post: Post) -> None:
        self._post = post

    def write(self, target: CaptureTarget, calls: list[Call], dropped: int) -> None:
        for chunk in _by_rows(calls, POST_ROWS):
            self._send(target, chunk, dropped)
            dropped = 0

    def _send(self, target: CaptureTarget, calls: Sequence[Call], dropped: int) -> None:
        body = encode(target, calls)
        if len(body) > MAX_POST_BYTES and len(calls) > 1:
            half = len(calls) // 2
            self._send(target, calls[:half], dropped)
            self._send(target, calls[half:], 0)
            return
        if len(body) > MAX_POST_BYTES:
            raise InvalidInputError(
                f"one predict call of {calls[0].rows} rows encodes to {len(body)} bytes, more "
                f"than a capture post may carry ({MAX_POST_BYTES}); predict in smaller calls."
            )
        self._post(target, ids.new_id(), body, dropped)


def encode(target: CaptureTarget, calls: Sequence[Call]) -> bytes:
    """The calls' rows as one zstd-compressed Arrow IPC stream of the columns a server takes."""
    table = build_table(target, calls)
    table = table.select([name for name in REMOTE_COLUMNS if name in table.column_names])
    changed = capture.changed_call_ids(calls)
    if changed:
        table = table.replace_schema_metadata({capture.CHANGED_KEY: json.dumps(changed)})
    return ipc_stream(table, pa.ipc.IpcWriteOptions(compression="zstd"))


def ipc_stream(table: pa.Table, options: pa.ipc.IpcWriteOptions | None = None) -> bytes:
    """``table`` as the bytes of one Arrow IPC stream (the body the server's Arrow routes read)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _by_rows(calls: list[Call], limit: int) -> list[list[Call]]:
    """Consecutive groups of whole calls holding at most ``limit`` rows (a bigger call alone)."""
    groups: list[list[Call]] = []
    rows = 0
    for call in calls:
        if groups and rows + call.rows <= limit:
            groups[-1].append(call)
            rows += call.rows
        else:
            groups.append([call])
            rows = call.rows
    return groups


def remote_prediction(data: dict[str, Any], public_keys: Mapping[str, bytes]) -> CapturedPrediction:
    """A prediction as the server returned it, with the verdict computed here: the rows of its
    leaf are hashed, its proof followed and the signature checked with only the public key its
    batch names (``public_keys``: the store's key history by key id)."""
    row = _decoded(data["row"])
    leaf_table = _decoded(data["leaf_table"])
    header = capture.header_of(leaf_table)
    signature = capture.signature_of(leaf_table)
    proof = [merkle.ProofStep.from_dict(step) for step in data["proof"]]
    verification = capture.verify_row(
        leaf_table, header, signature, proof, public_keys, prediction_id=data["id"]
    )
    if verification.verified and (data["merkle_root"], data["signature"]) != (
        header.get("merkle_root"),
        signature,
    ):
        verification = Verification(False, "the server's batch record differs from its file")
    return CapturedPrediction(
        id=data["id"],
        time_ms=int(data["time_ms"]),
        model=data["model"],
        version=int(data["version"]),
        model_version_id=data["model_version_id"],
        model_digest=data["model_digest"],
        method=data["method"],
        inputs=data["inputs"],
        output=data["output"],
        batch_id=data["batch"],
        leaf_index=int(data["leaf"]["index"]),
        leaf_hash=data["leaf"]["hash"],
        proof=proof,
        merkle_root=data["merkle_root"],
        signature=data["signature"],
        key_id=data["key_id"],
        header=header,
        verification=verification,
        label=data["label"],
        labelled=bool(data["labelled"]),
        row=row,
        leaf_table=leaf_table,
    )


def _decoded(encoded: str) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(base64.b64decode(encoded))).read_all()
