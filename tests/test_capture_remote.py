"""Capture through a clew server: a remote client queues, the server seals, signs and stores.

Every test runs a real server (uvicorn in a thread, its own store) and a real remote client;
nothing passes between them except over HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from capture_support import iris, register_iris_remotely
from server_fixtures import RunningServer, serve, server, server_store  # noqa: F401

import clew
from clew.client.loaded_model import LoadedModel
from clew.client.remote_capture import ARROW_STREAM, encode, ipc_stream
from clew.domain import capture_proofs, ids
from clew.domain.captures import CHANGED_KEY, BatchRecord, Call, CaptureTarget, signature_of
from clew.server.routes.captures import MAX_BATCH_BYTES
from clew.service import capture_verification


@pytest.fixture
def remote(server: RunningServer) -> Iterator[clew.Client]:  # noqa: F811
    client = clew.connect(server.url, token=server.user("alice"))
    yield client
    client.close()


def _capture_target(model: LoadedModel) -> CaptureTarget:
    version = model.version
    return CaptureTarget(version.id, version.name, version.version, version.digest)


def _batches(server: RunningServer) -> list[BatchRecord]:  # noqa: F811
    return capture_verification.all_batches(server.store)


def _ten_rows(remote: clew.Client) -> tuple[CaptureTarget, Call]:
    """The iris model registered through ``remote`` and one 10-row call of it."""
    target = _capture_target(register_iris_remotely(remote))
    features, _ = iris()
    return target, Call(ids.new_id(), 1_700_000_000_000, 10, np.arange(10), features[:10])


def _post(http: Any, body: bytes, batch_id: str) -> Any:
    """Post a capture body for iris/1 as a client would, straight over HTTP."""
    return http.post(
        "/api/v1/models/iris/versions/1/captures",
        content=body,
        params={"batch": batch_id},
        headers={"Content-Type": ARROW_STREAM},
    )


def test_remote_predictions_are_signed_by_the_server_and_verify_with_the_public_key(
    remote: clew.Client,
    server: RunningServer,  # noqa: F811
) -> None:
    model = register_iris_remotely(remote)
    features, _ = iris()
    outputs, prediction_ids = model.predict_with_ids(features)
    assert len(outputs) == 150
    stats = remote.flush_captures()
    assert stats["captured"] == 150 and stats["dropped"] == 0 and stats["failed"] == 0
    [batch] = _batches(server)
    assert batch.count == 150
    assert server.store.capture_files.exists(batch.path)

    found = remote.get_prediction(prediction_ids[42])
    assert found.verified, found.verification.reason
    assert found.output == outputs[42] and found.model == "iris" and found.version == 1
    assert found.inputs == {f"f{j}": features[42, j] for j in range(4)}

    # An auditor with only the public key re-checks the rows of the prediction's leaf (rows
    # 32-63: the server hashes 32 rows per leaf), the proof and the signature.
    public_pem = remote.public_key().encode()
    rows = found.leaf_table
    assert rows.column("prediction_id").to_pylist() == list(prediction_ids[32:64])
    signature = signature_of(rows)
    verdict = capture_proofs.verify_row(rows, found.header, signature, found.proof, public_pem)
    assert verdict.verified, verdict.reason
    changed = rows["output"].to_pylist()
    changed[10] = 99
    altered = rows.set_column(
        rows.column_names.index("output"), "output", pa.array(changed, rows["output"].type)
    )
    forged = capture_proofs.verify_row(altered, found.header, signature, found.proof, public_pem)
    assert not forged.verified and "inclusion proof" in forged.reason

    thread = remote.trace(prediction_ids[42])
    assert thread.steps[0].verified
    assert remote.log_labels([prediction_ids[42]], [1]) == 1
    assert remote.get_prediction(prediction_ids[42]).label == 1


def test_a_retried_post_with_the_same_batch_id_is_written_once(
    remote: clew.Client,
    server: RunningServer,  # noqa: F811
) -> None:
    target, call = _ten_rows(remote)
    body = encode(target, [call])
    batch_id = ids.new_id()
    http = server.http(server.tokens["alice"])
    first = _post(http, body, batch_id)
    again = _post(http, body, batch_id)
    assert first.status_code == 201, first.text
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert [b.id for b in _batches(server)] == [batch_id]
    assert remote.get_prediction(f"{call.call_id}.3").verified


def test_a_viewer_may_not_post_captures(
    remote: clew.Client,
    server: RunningServer,  # noqa: F811
) -> None:
    target = _capture_target(register_iris_remotely(remote))
    call = Call(ids.new_id(), 1_700_000_000_000, 3, np.arange(3), None)
    http = server.http(server.user("victor", "viewer"))
    response = http.post(
        "/api/v1/models/iris/versions/1/captures",
        content=encode(target, [call]),
        params={"batch": ids.new_id()},
        headers={"Content-Type": ARROW_STREAM},
    )
    assert response.status_code == 403
    assert _batches(server) == []


def test_malformed_oversized_and_mistyped_batches_are_refused_clearly(
    remote: clew.Client,
    server: RunningServer,  # noqa: F811
) -> None:
    register_iris_remotely(remote)
    http = server.http(server.tokens["alice"])
    path = "/api/v1/models/iris/versions/1/captures"
    arrow = {"Content-Type": ARROW_STREAM}

    def post(content: bytes, headers: dict[str, str] = arrow, batch: str | None = None):
        return http.post(
            path, content=content, params={"batch": batch or ids.new_id()}, headers=headers
        )

    garbage = post(b"definitely not arrow")
    assert garbage.status_code == 400 and "Arrow IPC" in garbage.json()["message"]
    for broken in (b"\xff" * 8, b"\xff\xff\xff\xff\x80\x00\x00\x00", b""):
        refused = post(broken)
        assert refused.status_code == 400, (broken, refused.text)
    wrong_type = post(b"{}", headers={"Content-Type": "application/json"})
    assert wrong_type.status_code == 415
    huge = post(b"\0" * (MAX_BATCH_BYTES + 1))
    assert huge.status_code == 413 and "at most" in huge.json()["message"]

    def stream(table: pa.Table) -> bytes:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return sink.getvalue().to_pybytes()

    now = pa.array([1_700_000_000_000], pa.timestamp("ms", tz="UTC"))
    good_id = f"{ids.new_id()}.0"
    extra = post(
        stream(pa.table({"prediction_id": [good_id], "time": now, "output": [1], "x": [1]}))
    )
    assert extra.status_code == 400 and "columns" in extra.json()["message"]
    bad_id = post(stream(pa.table({"prediction_id": ["../../x"], "time": now, "output": [1]})))
    assert bad_id.status_code == 400 and "ULID" in bad_id.json()["message"]
    union = pa.UnionArray.from_dense(
        pa.array([0], pa.int8()), pa.array([0], pa.int32()), [pa.array([1])]
    )
    mixed = post(stream(pa.table({"prediction_id": [good_id], "time": now, "output": union})))
    assert mixed.status_code == 400 and "union" in mixed.json()["message"]
    bad_batch = post(
        stream(pa.table({"prediction_id": [good_id], "time": now, "output": [1]})),
        batch="../" * 8 + "xx",
    )
    assert bad_batch.status_code == 400
    unknown_model = http.post(
        "/api/v1/models/nope/versions/1/captures",
        content=stream(pa.table({"prediction_id": [good_id], "time": now, "output": [1]})),
        params={"batch": ids.new_id()},
        headers=arrow,
    )
    assert unknown_model.status_code == 404
    assert _batches(server) == []


def test_an_unreachable_server_spools_counted_rows_and_predict_still_answers(
    tmp_path: Path,
) -> None:
    lifetime = serve(*server_store(tmp_path, "short-lived"))
    running = next(lifetime)
    client = clew.connect(running.url, token=running.user("alice"))
    try:
        model = register_iris_remotely(client)
        lifetime.close()  # the server stops; the loaded model stays in this process
        features, _ = iris()
        outputs, prediction_ids = model.predict_with_ids(features)
        assert len(outputs) == 150 and len(prediction_ids) == 150
        flushed = client.flush_captures(timeout=5)  # the SDK's own retries last ~3 s
        assert not flushed.complete and flushed.pending == 150 and flushed.pending_batches == 1
        stats = client.capture_stats()
        assert stats["submitted"] == 150 and stats["pending"] == 150
        assert stats["dropped"] == 0 and stats["captured"] == 0 and stats["failed"] == 0
        assert "did not answer" in (stats["last_error"] or "")
    finally:
        client.close()


def test_serve_against_a_server_captures_through_it(
    server: RunningServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    from fastapi.testclient import TestClient

    from clew.client.serving import create_inference_app

    client = clew.connect(server.url, token=server.user("alice"))
    try:
        model = register_iris_remotely(client)
        app = TestClient(create_inference_app(model))
        answer = app.post("/predict", json={"inputs": iris()[0][:5].tolist()})
        assert answer.status_code == 200
        prediction_id = answer.json()["prediction_ids"][4]
        client.flush_captures()
        assert client.get_prediction(prediction_id).verified
        assert app.get("/health").json()["capture"]["captured"] == 5
    finally:
        client.close()


def test_inputs_changed_after_predict_are_withheld_and_listed_by_the_server(
    remote: clew.Client,
    server: RunningServer,  # noqa: F811
) -> None:
    model = register_iris_remotely(remote)
    features, _ = iris()
    batch = np.ascontiguousarray(np.tile(features, (20, 1)))  # 96 kB: guarded, not copied
    outputs, prediction_ids = model.predict_with_ids(batch)
    batch[:] = 0.0
    stats = remote.flush_captures()
    assert stats["captured"] == 3000 and stats["inputs_changed"] == 3000
    found = remote.get_prediction(prediction_ids[9])
    assert found.verified, found.verification.reason
    assert found.inputs is None and found.output == outputs[9]
    assert found.header["inputs_changed"] == [prediction_ids.call]


def test_a_batch_listing_changed_inputs_it_does_not_hold_is_refused(
    remote: clew.Client,
    server: RunningServer,  # noqa: F811
) -> None:
    target, call = _ten_rows(remote)
    http = server.http(server.tokens["alice"])
    table = pa.ipc.open_stream(encode(target, [call])).read_all()
    listings = {
        "an unknown call": [ids.new_id()],
        "not a list": {"call": str(call.call_id)},
        "a call whose inputs it sends": [str(call.call_id)],
    }
    for what, listed in listings.items():
        metadata = {CHANGED_KEY: json.dumps(listed)}
        response = _post(http, ipc_stream(table.replace_schema_metadata(metadata)), ids.new_id())
        assert response.status_code == 400, what
        assert "inputs_changed" in response.json()["message"], what
    assert _batches(server) == []
