"""Checking one captured prediction with only public keys: leaf, inclusion proof, signature.

``verify_row`` is what an auditor runs with the public key alone: the leaf's rows hash to the
leaf, the inclusion proof leads to the root, and the root's signature verifies with the key
the signed header names. It lives in the domain because the remote client verifies the
predictions a server hands it and must not import the store; re-checking every batch of a
store stays in ``service/capture_verification.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from clew.domain import digests, leaves, merkle, signatures
from clew.domain.captures import BatchRecord, Verification, leaf_rows_of


def verify_row(
    rows: pa.Table,
    header: dict[str, Any],
    signature: str,
    proof: Sequence[merkle.ProofStep],
    public_keys: bytes | Mapping[str, bytes],
    batch: BatchRecord | None = None,
    prediction_id: str | None = None,
) -> Verification:
    """Check one leaf's stored rows with only public keys: leaf → proof → root → signature.

    ``rows`` are all the rows of one Merkle leaf, in file order (the rows whose ``leaf``
    column holds the same number; one row in batches without ``leaf_rows`` in the header).
    ``header`` and ``signature`` come from the Parquet file itself; when the batch's database
    record is given it must agree with them too; when ``prediction_id`` is given it must be
    one of the rows. ``public_keys`` is one public key (PEM) or the store's key history by key
    id (``service.signing.public_keys``), where the key the header names is looked up.
    """
    if not header or not signature:
        return Verification(False, "the batch file carries no signed header")
    named = header.get("key_id")
    if isinstance(public_keys, bytes):
        public_keys = {signatures.key_id(public_keys): public_keys}
    public_key_pem = signatures.public_key_for(public_keys, named)
    if public_key_pem is None:
        return Verification(False, unknown_key(named))
    if not signatures.verify(public_key_pem, digests.canonical_json(header), signature):
        return Verification(
            False, f"the batch signature does not verify with the public key of {named}"
        )
    problem = _leaf_problem(rows, header, proof, prediction_id)
    if problem:
        return Verification(False, problem)
    leaf = leaves.leaf_hashes(rows, leaf_rows=rows.num_rows)
    try:
        root = merkle.root_from_proof(leaf, proof)
    except ValueError:
        return Verification(False, "the row's content does not match its inclusion proof")
    if digests.PREFIX + root.hex() != header.get("merkle_root"):
        return Verification(False, "the inclusion proof does not lead to the signed Merkle root")
    if batch is not None and (batch.merkle_root, batch.signature) != (
        header["merkle_root"],
        signature,
    ):
        return Verification(False, "the batch record in the database differs from its file")
    return Verification(True, "leaf, inclusion proof and Ed25519 signature verified")


def _leaf_problem(
    rows: pa.Table,
    header: dict[str, Any],
    proof: Sequence[merkle.ProofStep],
    prediction_id: str | None,
) -> str | None:
    """What makes these rows not one whole leaf of the signed batch, if anything."""
    try:
        leaf_rows = leaf_rows_of(header)
    except ValueError as error:
        return f"the signed batch header is malformed ({error})"
    if not proof:
        return "the inclusion proof is missing (the batch's .merkle file)"
    index = sum(step.position * merkle.ARITY**level for level, step in enumerate(proof))
    count = int(header.get("count", 0))
    expected = min(leaf_rows, count - index * leaf_rows)
    if rows.num_rows != expected:
        return (
            f"leaf {index} holds {expected} rows of the batch but {rows.num_rows} were given; "
            "pass every row whose leaf column equals the prediction's"
        )
    if "leaf" in rows.column_names and set(rows.column("leaf").to_pylist()) != {index}:
        return f"the rows given are not all in leaf {index}, which the inclusion proof is for"
    if prediction_id is not None and prediction_id not in rows.column("prediction_id").to_pylist():
        return f"prediction {prediction_id} is not among the rows of its leaf"
    for column, key in (
        ("model_name", "model"),
        ("model_version", "version"),
        ("model_digest", "model_digest"),
    ):
        if any(value != header.get(key) for value in rows.column(column).to_pylist()):
            return f"the row's {column} differs from the signed batch header"
    return None


def unknown_key(named: Any) -> str:
    return (
        f"the batch signature names key {named}, which is not among the store's audited "
        "public keys (`clew keys public --all` lists its key history)"
    )
