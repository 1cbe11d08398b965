"""The store's Ed25519 key: created once with private permissions, verifiable by anyone."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
from capture_support import iris, register_iris

import clew
from clew.domain import capture_proofs, ids, leaves, signatures
from clew.domain.captures import Call, header_of, signature_of
from clew.service import capture_verification, signing


def test_key_is_created_once_with_owner_only_permissions(client: clew.Client) -> None:
    first = signing.Signer(client.store)
    second = signing.Signer(client.store)
    private = client.store.keys / signing.PRIVATE_FILE
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert first.key_id == second.key_id == signatures.key_id(first.public_pem)
    assert (client.store.keys / signing.PUBLIC_FILE).read_bytes() == first.public_pem
    assert b"PRIVATE" not in first.public_pem


def test_signatures_verify_with_the_public_key_only(client: clew.Client) -> None:
    signer = signing.Signer(client.store)
    signature = signer.sign(b"root")
    assert signatures.verify(signer.public_pem, b"root", signature)
    assert not signatures.verify(signer.public_pem, b"r00t", signature)
    assert not signatures.verify(signer.public_pem, b"root", "00" * 64)
    assert not signatures.verify(signer.public_pem, b"root", "not hex")


def test_two_processes_creating_the_key_at_once_agree(home: Path) -> None:
    clew.connect(str(home)).close()  # the store exists; only the key is raced for
    assert not (home / "keys" / signing.PRIVATE_FILE).exists()
    code = (
        "import sys; from clew.store.location import open_store; "
        "from clew.service.signing import Signer; "
        "print(Signer(open_store(sys.argv[1])).key_id)"
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", code, str(home)], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    key_ids = {process.communicate()[0].strip() for process in processes}
    assert len(key_ids) == 1 and next(iter(key_ids)).startswith("sha256:")


def test_an_auditor_verifies_one_row_from_the_file_proof_and_public_key(
    client: clew.Client,
) -> None:
    """No database, no private key: the rows of the prediction's leaf (same Parquet file), the
    .merkle proof and the PEM suffice."""
    model = register_iris(client)
    _, ids = model.predict_with_ids(iris()[0])
    client.flush_captures()
    public_pem = client.public_key().encode()
    files = client.store.capture_files
    [batch] = capture_verification.all_batches(client.store)
    with files.local_copy(batch.path) as path:
        row = pq.read_table(path, filters=[("prediction_id", "=", ids[77])])
        leaf = row.column("leaf")[0].as_py()
        rows = pq.read_table(path, filters=[("leaf", "=", leaf)])
    header = header_of(row)
    assert leaf == 77 // header["leaf_rows"] and rows.num_rows == header["leaf_rows"]
    proof = files.read_proof(
        batch.path, leaves.leaf_count(header["count"], header["leaf_rows"]), leaf
    )
    verdict = capture_proofs.verify_row(
        rows, header, signature_of(rows), proof, public_pem, prediction_id=ids[77]
    )
    assert verdict.verified, verdict.reason
    alone = capture_proofs.verify_row(row, header, signature_of(row), proof, public_pem)
    assert not alone.verified and "every row whose leaf column" in alone.reason
    elsewhere = capture_proofs.verify_row(
        rows, header, signature_of(rows), proof, public_pem, prediction_id=ids[5]
    )
    assert not elsewhere.verified and "not among the rows of its leaf" in elsewhere.reason
    stranger = signatures.public_pem(
        __import__("cryptography.hazmat.primitives.asymmetric.ed25519", fromlist=["x"])
        .Ed25519PrivateKey.generate()
        .public_key()
    )
    refused = capture_proofs.verify_row(rows, header, signature_of(rows), proof, stranger)
    assert not refused.verified and "signature" in refused.reason


def test_calls_queued_out_of_id_order_are_found_and_verified(client: clew.Client) -> None:
    """Threads predicting at once may queue a later call id first (id made, then the copy):
    every call must still be found through the batch's first/last call range."""
    model = register_iris(client)
    features, _ = iris()
    earlier, later = ids.new_id(), ids.new_id()
    service = client._capture_service()
    target = model._targets["predict"]
    outputs = model.raw.predict(features[:5])
    for call_id in (later, earlier):
        service.submit(target, Call(call_id, 1_700_000_000_000, 5, outputs, features[:5]))
    client.flush_captures()
    for call_id in (earlier, later):
        found = client.get_prediction(f"{call_id}.4")
        assert found.verified, found.verification.reason
        assert found.output == outputs[4]
