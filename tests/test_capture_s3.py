"""Capture batches on S3: written under the artifacts bucket's captures/ prefix, read back,
verified, traced, labelled, backed up and restored there; tampering is still found.

Runs against the real SeaweedFS of the ``s3_server`` fixture, with a SQLite metadata file.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from capture_support import iris, register_iris
from server_fixtures import serve
from sklearn.linear_model import LogisticRegression

import clew
from clew.client.loaded_model import LoadedModel
from clew.service import audit, capture_lookup, capture_verification
from clew.service import backup as backups
from clew.store.captures import ObjectCaptureFiles
from clew.store.location import open_store

pytestmark = pytest.mark.s3


@pytest.fixture
def s3_client(tmp_path: Path, s3_artifacts: str) -> Iterator[clew.Client]:
    client = clew.connect(str(tmp_path / "meta"), artifacts=s3_artifacts)
    yield client
    client.close()


def _objects(files: ObjectCaptureFiles) -> list[str]:
    return sorted(key.removeprefix(files.root + "/") for key in files.fs.find(files.root))


def test_batches_are_written_to_the_bucket_and_read_back_verified(
    s3_client: clew.Client, s3_artifacts: str
) -> None:
    model = register_iris(s3_client)
    features, _ = iris()
    outputs, prediction_ids = model.predict_with_ids(features)
    assert s3_client.flush_captures()["captured"] == 150
    files = s3_client.store.capture_files
    assert isinstance(files, ObjectCaptureFiles)
    assert files.location == f"{s3_artifacts}/captures"
    [batch] = capture_verification.all_batches(s3_client.store)
    merkle_file = batch.path.removesuffix(".parquet") + ".merkle"
    assert _objects(files) == sorted([batch.path, merkle_file])
    assert batch.path.startswith("model=iris/version=1/date=")
    assert not s3_client.store.captures.exists()

    found = s3_client.get_prediction(prediction_ids[99])
    assert found.verified, found.verification.reason
    # 150 rows make 5 leaves of up to 32 rows: one proof level below the root
    assert found.output == outputs[99] and len(found.proof) == 1
    assert found.leaf_table.column("prediction_id").to_pylist() == list(prediction_ids[96:128])
    assert s3_client.trace(prediction_ids[99]).step("prediction").verified
    assert s3_client.log_labels([prediction_ids[99]], [2]) == 1
    checked, problems = capture_verification.verify_batches(s3_client.store)
    assert (checked, problems) == (1, [])


def test_an_altered_object_is_found_by_verify(s3_client: clew.Client) -> None:
    model = register_iris(s3_client)
    _, prediction_ids = model.predict_with_ids(iris()[0])
    s3_client.flush_captures()
    files = s3_client.store.capture_files
    [batch] = capture_verification.all_batches(s3_client.store)
    table = files.read_batch(batch.path)
    outputs = table.column("output").to_pylist()
    outputs[5] = (outputs[5] + 1) % 3
    column = table.column_names.index("output")
    altered = table.set_column(column, "output", pa.array(outputs, table["output"].type))
    with files.fs.open(files.key(batch.path), "wb") as writer:
        pq.write_table(altered, writer)

    _, problems = capture_verification.verify_batches(s3_client.store)
    assert [problem.batch_id for problem in problems] == [batch.id]
    assert "digest" in problems[0].reason
    assert not s3_client.get_prediction(prediction_ids[5]).verified
    assert not s3_client.get_prediction(prediction_ids[6]).verified  # same leaf (rows 0-31)
    assert s3_client.get_prediction(prediction_ids[40]).verified


def test_backup_and_restore_carry_capture_objects(
    s3_client: clew.Client, s3_artifacts: str, tmp_path: Path
) -> None:
    model = register_iris(s3_client)
    _, prediction_ids = model.predict_with_ids(iris()[0])
    s3_client.flush_captures()
    summary = backups.backup(s3_client.store, tmp_path / "store.backup")
    assert summary.capture_files == 2

    other_prefix = s3_artifacts.rsplit("/", 1)[0] + "/" + uuid.uuid4().hex
    target = open_store(str(tmp_path / "restored"), other_prefix)
    backups.restore(tmp_path / "store.backup", target, "carol")
    assert audit.verify_digests(target)[1] == []
    assert capture_lookup.find_prediction(target, prediction_ids[7]).verified
    assert len(_objects(target.capture_files)) == 2
    target.close()


def test_a_server_on_s3_writes_remote_batches_to_the_bucket(
    tmp_path: Path, s3_artifacts: str
) -> None:
    store = open_store(str(tmp_path / "server"), s3_artifacts)
    for running in serve(store, tmp_path / "server"):
        client = clew.connect(running.url, token=running.user("alice"))
        try:
            model = _remote_model(client)
            _, prediction_ids = model.predict_with_ids(iris()[0][:20])
            assert client.flush_captures()["captured"] == 20
            assert client.get_prediction(prediction_ids[19]).verified
            [batch] = capture_verification.all_batches(store)
            assert store.capture_files.exists(batch.path)
            assert isinstance(store.capture_files, ObjectCaptureFiles)
        finally:
            client.close()


def _remote_model(client: clew.Client) -> LoadedModel:
    features, target = iris()
    with client.start_run("iris", "train") as run:
        artifact = run.log_model(LogisticRegression(max_iter=500).fit(features, target), "lr")
    client.register_model(artifact, "iris")
    return client.load_model("iris/1")
