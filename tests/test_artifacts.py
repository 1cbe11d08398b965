"""Inputs and outputs: DataFrames as Parquet datasets, files, directories, reference-only
URIs (a real S3 server), and models saved with a flavor and loaded back."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import sklearn
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import clew
from clew.domain import digests
from clew.errors import InvalidInputError
from clew.integrations import flavors
from clew.store.location import Store


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [25, 32, 47, None],
            "income": [1.5, 2.5, 3.5, 4.5],
            "segment": ["a", "b", "a", "c"],
            "churned": [True, False, False, True],
        }
    )


def test_dataframe_input_is_a_parquet_dataset_with_a_profile(
    client: clew.Client, tmp_path: Path
) -> None:
    frame = _frame()
    with clew.start_run(experiment="data") as run:
        dataset = run.log_input(frame, name="churn-train")
    assert (dataset.type, dataset.name) == ("dataset", "churn-train")
    assert dataset.digest.startswith("sha256:") and dataset.size > 0
    properties = dataset.properties
    assert properties["format"] == "parquet"
    assert properties["row_count"] == 4
    schema = properties["schema"]
    assert (schema["age"], schema["income"], schema["churned"]) == ("double", "double", "bool")
    assert schema["segment"] in ("string", "large_string")  # pandas 3 strings are large_string
    stats = properties["statistics"]
    assert stats["income"] == {
        "nulls": 0,
        "min": 1.5,
        "max": 4.5,
        "mean": 3.0,
        "std": pytest.approx(np.std([1.5, 2.5, 3.5, 4.5])),
    }
    assert stats["age"]["nulls"] == 1 and stats["age"]["max"] == 47
    assert stats["segment"] == {"nulls": 0, "distinct": 3}
    ref = f"dataset:churn-train@{dataset.digest}"
    exported = client.export_artifact(ref, tmp_path / "d.parquet")
    assert pq.read_table(exported).to_pandas().equals(frame)
    inputs = client._service.artifacts.run_artifacts(run.id)["inputs"]
    assert [a.id for a in inputs if a.type == "dataset"] == [dataset.id]
    assert "environment" in {a.type for a in inputs}  # captured automatically


def test_same_dataframe_twice_is_one_artifact(client: clew.Client) -> None:
    with clew.start_run(experiment="data") as first:
        one = first.log_input(_frame(), name="churn-train")
    with clew.start_run(experiment="data") as second:
        two = second.log_input(_frame(), name="churn-train")
    assert one.id == two.id
    downstream = clew.lineage.downstream(f"artifact:{one.id}", max_depth=1).to_pandas()
    assert set(downstream["destination"]) == {f"run:{first.id}", f"run:{second.id}"}


def test_dataframe_needs_a_name(client: clew.Client) -> None:
    with clew.start_run(experiment="data") as run, pytest.raises(InvalidInputError, match="name"):
        run.log_input(_frame())


def test_csv_file_input_is_profiled(client: clew.Client, tmp_path: Path) -> None:
    source = tmp_path / "train.csv"
    source.write_text("x,y\n1,a\n2,b\n3,a\n")
    with clew.start_run(experiment="data") as run:
        dataset = run.log_input(source)
    assert (dataset.type, dataset.name) == ("dataset", "train.csv")
    assert dataset.properties["format"] == "csv"
    assert dataset.properties["row_count"] == 3
    assert dataset.properties["file_name"] == "train.csv"
    assert dataset.size == source.stat().st_size


def test_file_output_and_directory_output(client: clew.Client, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    report.write_text("<h1>ok</h1>")
    folder = tmp_path / "plots"
    folder.mkdir()
    (folder / "roc.png").write_bytes(b"\x89PNG roc")
    (folder / "pr.png").write_bytes(b"\x89PNG pr")
    with clew.start_run(experiment="out") as run:
        file_artifact = run.log_output(report)
        directory = run.log_artifact(folder, name="plots")
        typed = run.log_output(report, name="validation", type="report")
    assert (file_artifact.type, file_artifact.properties["kind"]) == ("file", "file")
    assert (directory.type, directory.properties["files"]) == ("directory", 2)
    assert directory.size == len(b"\x89PNG roc") + len(b"\x89PNG pr")
    assert typed.type == "report"
    exported = client.export_artifact(f"directory:plots@{directory.digest}", tmp_path / "back")
    assert sorted(p.name for p in exported.iterdir()) == ["pr.png", "roc.png"]
    outputs = client._service.artifacts.run_artifacts(run.id)["outputs"]
    assert {a.id for a in outputs} == {file_artifact.id, directory.id, typed.id}


def test_missing_path_and_unknown_objects_are_refused(client: clew.Client, tmp_path: Path) -> None:
    with clew.start_run(experiment="bad") as run:
        with pytest.raises(InvalidInputError, match="does not exist"):
            run.log_input(tmp_path / "nope.csv")
        with pytest.raises(InvalidInputError, match="cannot log a"):
            run.log_input(object())
        with pytest.raises(InvalidInputError, match="artifact type"):
            run.log_output(tmp_path, name="x", type="spaceship")


def test_an_unknown_type_is_refused_before_anything_is_uploaded(
    client: clew.Client, store: Store, tmp_path: Path
) -> None:
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"bytes of a model logged with a misspelt type")
    with (
        clew.start_run(experiment="bad") as run,
        pytest.raises(InvalidInputError, match="artifact type 'modle' is unknown"),
    ):
        run.log_output(weights, name="weights", type="modle")
    assert not store.blobs.exists(digests.digest_bytes(weights.read_bytes()))


def test_reference_only_uri_without_a_reachable_store(client: clew.Client, tmp_path: Path) -> None:
    with clew.start_run(experiment="ref") as run:
        artifact = run.log_input("gs://no-such-bucket-for-clew/raw/events.parquet", name="events")
    assert artifact.uri == "gs://no-such-bucket-for-clew/raw/events.parquet"
    assert artifact.properties["reference"] is True
    assert artifact.size is None
    with pytest.raises(InvalidInputError, match="by reference only"):
        client.export_artifact("dataset:events", tmp_path / "never-written")
    assert not (tmp_path / "never-written").exists()


@pytest.mark.s3
def test_reference_dataset_on_s3_records_size_and_etag(
    client: clew.Client, s3_server: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server["AWS_ACCESS_KEY_ID"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server["AWS_SECRET_ACCESS_KEY"])
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server["endpoint"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    s3 = boto3.client("s3", endpoint_url=s3_server["endpoint"])
    s3.put_object(Bucket=s3_server["bucket"], Key="raw/big.csv", Body=b"a,b\n1,2\n")
    uri = f"s3://{s3_server['bucket']}/raw/big.csv"
    with clew.start_run(experiment="s3") as run:
        artifact = run.log_input(uri, name="big")
    assert artifact.uri == uri
    assert artifact.size == 8
    assert artifact.properties["reference"] is True
    etag = s3.head_object(Bucket=s3_server["bucket"], Key="raw/big.csv")["ETag"].strip('"')
    assert artifact.properties["etag"] == etag
    s3.put_object(Bucket=s3_server["bucket"], Key="raw/big.csv", Body=b"a,b\n1,2\n3,4\n")
    with clew.start_run(experiment="s3") as later:
        changed = later.log_input(uri, name="big")
    assert changed.digest != artifact.digest and changed.size == 12


def test_sklearn_pipeline_model_round_trip(client: clew.Client, tmp_path: Path) -> None:
    features, labels = load_iris(return_X_y=True)
    forest = RandomForestClassifier(n_estimators=10, random_state=0)
    pipeline = Pipeline([("scale", StandardScaler()), ("forest", forest)]).fit(features, labels)
    with clew.start_run(experiment="models") as run:
        model = run.log_model(pipeline, name="iris-rf")
    flavor = model.properties["flavor"]
    assert (model.type, model.name) == ("model", "iris-rf")
    assert flavor["flavor"] == "sklearn"
    assert flavor["library"] == "scikit-learn"
    assert flavor["library_version"] == sklearn.__version__
    assert flavor["model_class"] == "sklearn.pipeline.Pipeline"
    assert flavor["executes_code_on_load"] is True
    directory = client.export_artifact(f"artifact:{model.id}", tmp_path / "model")
    description = json.loads((directory / flavors.MODEL_FILE).read_text())
    assert description["library_version"] == sklearn.__version__
    loaded = flavors.load(directory)
    assert (loaded.predict(features) == pipeline.predict(features)).all()
    produced = clew.lineage.upstream(f"model:iris-rf@{model.digest}", max_depth=1).to_pandas()
    assert produced[["source", "association"]].values.tolist() == [[f"run:{run.id}", "Produced"]]


def test_files_flavor_for_a_file_and_a_directory(client: clew.Client, tmp_path: Path) -> None:
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"\x00\x01\x02")
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text("{}")
    with clew.start_run(experiment="models") as run:
        one = run.log_model(weights, name="raw-weights")
        two = run.log_model(bundle, name="bundle")
    assert one.properties["flavor"]["flavor"] == "files"
    assert one.properties["flavor"]["library"] is None
    loaded_file = flavors.load(client.export_artifact(f"artifact:{one.id}", tmp_path / "one"))
    assert loaded_file.read_bytes() == b"\x00\x01\x02"
    loaded_dir = flavors.load(client.export_artifact(f"artifact:{two.id}", tmp_path / "two"))
    assert (loaded_dir / "config.json").read_text() == "{}"


def test_unknown_flavor_and_unsavable_model_are_refused(client: clew.Client) -> None:
    with clew.start_run(experiment="models") as run:
        with pytest.raises(InvalidInputError, match="not installed"):
            run.log_model(RandomForestClassifier(), name="x", flavor="tensorflow")
        with pytest.raises(InvalidInputError, match="no installed flavor"):
            run.log_model(object(), name="x")


@pytest.mark.s3
def test_a_data_source_asks_the_object_store_only_when_told_to(
    client: clew.Client, s3_server: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Describing a source never waits on the network; ``resolve=True`` adds size and ETag."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server["AWS_ACCESS_KEY_ID"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server["AWS_SECRET_ACCESS_KEY"])
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server["endpoint"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    s3 = boto3.client("s3", endpoint_url=s3_server["endpoint"])
    s3.put_object(Bucket=s3_server["bucket"], Key="raw/orders.csv", Body=b"id\n1\n")
    uri = f"s3://{s3_server['bucket']}/raw/orders.csv"
    with clew.start_run(experiment="s3") as run:
        described = run.log_input(clew.data_source(uri, name="orders"))
        resolved = run.log_input(clew.data_source(uri, name="orders-checked", resolve=True))
    assert (described.size, described.properties["etag"]) == (None, None)
    etag = s3.head_object(Bucket=s3_server["bucket"], Key="raw/orders.csv")["ETag"].strip('"')
    assert (resolved.size, resolved.properties["etag"]) == (5, etag)
