"""Sending captured predictions to a clew server, batch by batch, from the writer thread.

A client of a server has no signing key and no capture files: ``LoadedModel`` queues its calls
exactly as in-process (ids are made here, so ``predict`` never waits for the network), and the
capture writer thread hands each batch to ``RemoteCaptureWriter``. It turns the calls into
Arrow columns (ids, times, inputs, outputs; the server adds the model columns from its own
registry), cuts them into posts of bounded size, and sends each as a compressed Arrow IPC
stream under a batch id made before the first attempt, so a retried post is recognised by the
server and never written twice. The server builds the Merkle tree and signs it. A batch the
server does not take (no answer after the client's retries, or a 5xx) goes to the capture
spool, which re-sends it under the same batch id until the server takes it.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pyarrow as pa

from clew.client.capture_queue import Backlog
from clew.client.capture_spool import CaptureSpool, SpoolSender, undelivered
from clew.domain import ids, merkle
from clew.domain.capture_proofs import verify_row
from clew.domain.captures import (
    CHANGED_KEY,
    REMOTE_COLUMNS,
    Call,
    CapturedPrediction,
    CaptureTarget,
    Undelivered,
    Verification,
    build_table,
    changed_call_ids,
    header_of,
    signature_of,
)
from clew.errors import ClewError, InvalidInputError

ARROW_STREAM = "application/vnd.apache.arrow.stream"
POST_ROWS = 100_000
MAX_POST_BYTES = 8 * 1024 * 1024  # half the server's limit, so a post is never refused for size
COMPRESSED = pa.ipc.IpcWriteOptions(compression="zstd")
Post = Callable[[CaptureTarget, str, bytes, int], object]
log = logging.getLogger("clew.capture")


class RemoteCaptureWriter:
    """A ``BatchWriter`` that posts batches to a server through ``post`` and spools what the
    server does not take, to re-send it later (clew/client/capture_spool.py)."""

    def __init__(self, post: Post, spool: CaptureSpool) -> None:
        self._post = post
        self._sender = SpoolSender(spool, self._post_table)
        self._dropped_since: dict[CaptureTarget, int] = {}
        self._warned_full = False
        self._sender.start()  # batches an earlier process left for this server

    def write(self, target: CaptureTarget, calls: list[Call], dropped: int) -> Undelivered:
        spooled = lost = 0
        for chunk in _by_rows(calls, POST_ROWS):
            for table, body in _posts(target, chunk):
                outcome = self._deliver(target, table, body, dropped)
                dropped = 0
                spooled += outcome.spooled
                lost += outcome.dropped
        return Undelivered(spooled=spooled, dropped=lost)

    def backlog(self) -> Backlog:
        return self._sender.backlog()

    def drain(self, timeout: float | None) -> bool:
        return self._sender.drain(timeout)

    def close(self) -> None:
        self._sender.stop()

    def _deliver(
        self, target: CaptureTarget, table: pa.Table, body: bytes, dropped: int
    ) -> Undelivered:
        """Post one batch, or spool it while the server does not take it or older batches
        wait (dropped when the spool has no room)."""
        batch_id, rows = ids.new_id(), table.num_rows
        dropped += self._dropped_since.pop(target, 0)
        error: Exception | None = None
        if not self._sender.spool.waiting():
            try:
                self._post(target, batch_id, body, dropped)
                return Undelivered()
            except Exception as failure:
                if not undelivered(failure):
                    raise
                error = failure
        try:
            kept = self._sender.spool.put(target, batch_id, table, dropped)
        except ClewError as failure:
            log.error("clew: %s These predictions are lost and counted as failed.", failure)
            raise
        if kept:
            self._warned_full = False
            self._sender.spooled(batch_id, rows, error)
            return Undelivered(spooled=rows)
        self._dropped_since[target] = self._dropped_since.get(target, 0) + dropped + rows
        self._spool_full(target, rows)
        return Undelivered(dropped=rows)

    def _spool_full(self, target: CaptureTarget, rows: int) -> None:
        if self._warned_full:
            return
        self._warned_full = True
        settings = self._sender.spool.settings
        log.warning(
            "clew: the capture spool %s is full (at most %s batches and %s bytes); dropped %s "
            "predictions of %s/%s and will drop more until the server at %s takes the waiting "
            "batches. Dropped rows are counted in capture_stats()['dropped']; allow more with "
            "client.configure_capture(spool_max_batches=..., spool_max_bytes=...).",
            self._sender.spool.directory,
            settings.max_batches,
            settings.max_bytes,
            rows,
            target.name,
            target.version,
            self._sender.spool.server,
        )

    def _post_table(
        self, target: CaptureTarget, batch_id: str, table: pa.Table, dropped: int
    ) -> None:
        """Post a spooled batch again, under the batch id it was first posted with."""
        self._post(target, batch_id, ipc_stream(table, COMPRESSED), dropped)


def _posts(target: CaptureTarget, calls: Sequence[Call]) -> list[tuple[pa.Table, bytes]]:
    """The calls' rows as posts of at most ``MAX_POST_BYTES`` each (halved until they fit)."""
    table = remote_rows(target, calls)
    body = ipc_stream(table, COMPRESSED)
    if len(body) > MAX_POST_BYTES and len(calls) > 1:
        half = len(calls) // 2
        return _posts(target, calls[:half]) + _posts(target, calls[half:])
    if len(body) > MAX_POST_BYTES:
        raise InvalidInputError(
            f"one predict call of {calls[0].rows} rows encodes to {len(body)} bytes, more "
            f"than a capture post may carry ({MAX_POST_BYTES}); predict in smaller calls."
        )
    return [(table, body)]


def encode(target: CaptureTarget, calls: Sequence[Call]) -> bytes:
    """The calls' rows as one zstd-compressed Arrow IPC stream of the columns a server takes."""
    return ipc_stream(remote_rows(target, calls), COMPRESSED)


def remote_rows(target: CaptureTarget, calls: Sequence[Call]) -> pa.Table:
    """The calls' rows in the columns a server takes (and the calls whose inputs changed)."""
    table = build_table(target, calls)
    table = table.select([name for name in REMOTE_COLUMNS if name in table.column_names])
    changed = changed_call_ids(calls)
    if changed:
        table = table.replace_schema_metadata({CHANGED_KEY: json.dumps(changed)})
    return table


def ipc_stream(table: pa.Table, options: pa.ipc.IpcWriteOptions | None = None) -> bytes:
    """``table`` as the bytes of one Arrow IPC stream (the body the server's Arrow routes read)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    body: bytes = sink.getvalue().to_pybytes()
    return body


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
    header = header_of(leaf_table)
    signature = signature_of(leaf_table)
    proof = [merkle.ProofStep.from_dict(step) for step in data["proof"]]
    verification = verify_row(
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
