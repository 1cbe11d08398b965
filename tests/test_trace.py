"""``clew.trace``: the thread from a prediction to its model, events, run, data and sources."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from capture_support import editable_batch
from sklearn.datasets import load_wine
from sklearn.tree import DecisionTreeClassifier
from tamper import corrupt_blob, execute_sql

import clew
from clew.client.loaded_model import LoadedModel
from clew.errors import NotFoundError
from clew.service import audit
from clew.store.location import Store


def _wine_thread(client: clew.Client) -> tuple[LoadedModel, pd.DataFrame]:
    """A data-preparation run and a training run, in a real git repo, then a registered model."""
    frame = load_wine(as_frame=True).frame
    source = clew.data_source("s3://acme-raw/wine.csv", name="wine-raw")
    with client.start_run("wine", "prepare", kind="processing") as prep:
        prep.log_input(source)
        prepared = prep.log_output(frame, name="wine-train")
    with client.start_run("wine", "train") as run:
        client.seed(7)
        run.log_input(frame, name="wine-train")
        run.log_params({"C": 1.0})
        features = frame.drop(columns="target")
        model = DecisionTreeClassifier(max_depth=3, random_state=0).fit(features, frame["target"])
        run.log_metric("accuracy", float(model.score(features, frame["target"])))
        artifact = run.log_model(model, name="wine-lr")
    assert prepared.digest
    version = client.register_model(artifact, "wine")
    return LoadedModel(model, version, client), features


def _holding(store: Store) -> clew.Client:
    """What ``editable_batch`` reads from a client (its store), for the store behind a server."""
    return SimpleNamespace(store=store)  # type: ignore[return-value]


@pytest.fixture
def thread(client: clew.Client, git_repo: Path):  # type: ignore[no-untyped-def]
    return _wine_thread(client)


def test_trace_walks_from_prediction_to_data_sources(client, thread) -> None:
    model, features = thread
    _, ids = model.predict_with_ids(features.head(20))
    client.log_labels([ids[4]], [1])
    trace = clew.trace(ids[4])
    kinds = [step.kind for step in trace.steps]
    assert kinds[:4] == ["prediction", "model_version", "approvals", "training_run"]
    assert trace.step("prediction").verified
    assert trace.step("prediction").details["label"] == 1
    assert trace.step("model_version").verified
    run = trace.step("training_run")
    assert run.verified, run.reason
    assert run.details["params"]["C"] == "1.0" and run.details["params"]["seed"] == "7"
    assert run.details["code"]["permalink"].startswith("https://github.com/acme/churn/")
    assert "scikit-learn" in run.details["environment"]["libraries"]
    data = trace.steps_of("input_data")
    assert [step.details["type"] for step in data] == ["dataset"]
    assert data[0].verified
    assert [p["name"] for p in data[0].details["produced_by"]] == ["prepare"]
    sources = trace.steps_of("data_source")
    assert len(sources) == 1 and sources[0].details["uri"] == "s3://acme-raw/wine.csv"
    assert not sources[0].verified and "by reference" in sources[0].reason
    as_dict = json.loads(json.dumps(trace.to_dict(), default=str))
    assert as_dict["prediction_id"] == ids[4]
    text = str(trace)
    assert "✓ prediction" in text and "? data source" in text


def test_a_source_recorded_by_reference_is_not_checkable_not_failed(client, thread) -> None:
    """An untouched store whose raw data lives elsewhere is not a failed thread."""
    model, features = thread
    _, ids = model.predict_with_ids(features.head(2))
    trace = clew.trace(ids[0])
    source = trace.steps_of("data_source")[0]
    assert source.outcome == "not_checkable" and "by reference" in source.reason
    assert {step.outcome for step in trace.steps if step is not source} == {"verified"}
    assert trace.outcome == "not_checkable" and not trace.verified
    as_dict = trace.to_dict()
    assert as_dict["outcome"] == "not_checkable" and as_dict["verified"] is False
    assert [s["outcome"] for s in as_dict["steps"] if s["kind"] == "data_source"] == [
        "not_checkable"
    ]
    assert "1 step not checkable" in str(trace) and "failed" not in str(trace)


def test_trace_lists_registry_events_of_the_version(client, thread) -> None:
    model, features = thread
    _, ids = model.predict_with_ids(features.head(2))
    step = clew.trace(ids[0]).step("approvals")
    assert step.verified, step.reason
    assert all(event["version"] == 1 for event in step.details["events"])


def test_unknown_prediction_is_not_found(client, thread) -> None:
    with pytest.raises(NotFoundError, match="was not captured"):
        clew.trace("01JAAAAAAAAAAAAAAAAAAAAAAA.0")


def test_altered_captured_prediction_fails_verification(client, thread, store: Store) -> None:
    model, features = thread
    _, ids = model.predict_with_ids(features.head(70))
    client.flush_captures()
    with editable_batch(_holding(store)) as path:
        table = pq.read_table(path)
        outputs = table.column("output").to_pylist()
        outputs[5] = (outputs[5] + 1) % 3
        forged = table.set_column(
            table.column_names.index("output"),
            "output",
            pa.array(outputs, table.schema.field("output").type),
        )
        pq.write_table(forged, path)
    trace = clew.trace(ids[5])
    step = trace.step("prediction")
    assert not step.verified and "inclusion proof" in step.reason
    assert not trace.verified
    # rows 0-31 hash into one leaf: an altered row fails its leaf-mates too; other leaves verify
    neighbour = clew.get_prediction(ids[6])
    assert not neighbour.verified and "inclusion proof" in neighbour.verification.reason
    assert clew.get_prediction(ids[40]).verified
    _, problems = audit.verify_digests(store)
    assert [p.target.split(":")[0] for p in problems] == ["capture"]
    assert "digest" in problems[0].reason


def test_forged_signature_is_refused(client, thread, store: Store) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from clew.domain import digests
    from clew.domain.captures import SIGNATURE_KEY, header_of

    model, features = thread
    _, ids = model.predict_with_ids(features.head(3))
    client.flush_captures()
    with editable_batch(_holding(store)) as path:
        table = pq.read_table(path)
        header = header_of(table)
        forged = Ed25519PrivateKey.generate().sign(digests.canonical_json(header)).hex()
        metadata = {**table.schema.metadata, SIGNATURE_KEY: forged.encode()}
        pq.write_table(table.replace_schema_metadata(metadata), path)
    step = clew.trace(ids[1]).step("prediction")
    assert not step.verified and "signature" in step.reason


def test_altered_model_blob_marks_the_model_unverified(client, thread, store: Store) -> None:
    model, features = thread
    _, ids = model.predict_with_ids(features.head(2))
    files = client.store.blobs.read_manifest(model.version.digest)
    pickle_digest = files["model.pkl"]
    corrupt_blob(store.blobs, pickle_digest)
    trace = clew.trace(ids[0])
    step = trace.step("model_version")
    assert step.outcome == "failed" and not step.verified
    assert pickle_digest in step.reason and "model.pkl" in step.reason
    assert trace.outcome == "failed" and trace.to_dict()["outcome"] == "failed"
    assert "1 of" in str(trace) and "failed" in str(trace)


@pytest.mark.tampers
def test_trace_reads_a_store_edited_version_digest_as_unverified(
    client, thread, store: Store
) -> None:
    model, features = thread
    _, ids = model.predict_with_ids(features.head(2))
    client.flush_captures()
    execute_sql(store, "update model_versions set digest = :d", d="sha256:" + "0" * 64)
    step = clew.trace(ids[0]).step("model_version")
    assert not step.verified and "names model digest" in step.reason
