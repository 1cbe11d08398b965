"""The SDK behaves the same against an embedded store and a clew server (``sdk`` fixture).

Each test runs twice; a difference between local and remote is a failure here, not a surprise
in production.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

import clew
from clew.errors import ConflictError, InvalidInputError, NotFoundError, RunFinishedError

pytest_plugins = ("server_fixtures",)


def test_run_lifecycle_params_metrics_tags(sdk: clew.Client) -> None:
    with sdk.start_run("churn", name="train", params={"model": "rf", "depth": 3}) as run:
        run.log_param("lr", 0.1)
        run.set_tag("team", "risk")
        for step, value in enumerate([0.9, 0.5, float("nan")]):
            run.log_metric("loss", value, step=step)
        run.log_metric("auc", 0.91)
    found = sdk.get_run(run.id)
    assert found.status == "FINISHED"
    assert found.user == "alice"
    assert found.params == {"model": "rf", "depth": "3", "lr": "0.1"}
    assert found.tags == {"team": "risk"}
    assert found.metrics["auc"] == 0.91 and math.isnan(found.metrics["loss"])
    history = sdk.metric_history(run.id, "loss")
    assert history["step"].tolist() == [0, 1, 2]
    assert history["value"].tolist()[:2] == [0.9, 0.5] and math.isnan(history["value"].iloc[2])


def test_search_orders_and_filters_the_same(sdk: clew.Client) -> None:
    for depth, auc in [(3, 0.7), (5, 0.9), (8, 0.8)]:
        with sdk.start_run("churn", name=f"d{depth}") as run:
            run.log_params({"depth": depth})
            run.log_metric("auc", auc)
    frame = sdk.search_runs("metrics.auc > 0.75", order_by=["metrics.auc DESC"])
    assert frame["name"].tolist() == ["d5", "d8"]
    assert frame["params.depth"].tolist() == ["5", "8"]


def test_errors_are_the_same_classes(sdk: clew.Client) -> None:
    with pytest.raises(NotFoundError):
        sdk.get_run("01J00000000000000000000000")
    with sdk.start_run("churn", name="train") as run:
        run.log_param("depth", 3)
        with pytest.raises(ConflictError, match="immutable"):
            run.log_param("depth", 4)
    with pytest.raises(RunFinishedError):
        sdk._service.runs.log_params(run.id, {"late": 1}, sdk.actor)
    with pytest.raises(InvalidInputError, match="final status"):
        sdk._service.runs.end_run("01J00000000000000000000000", "RUNNING", sdk.actor)


def test_artifacts_files_directories_frames_and_lineage(sdk: clew.Client, tmp_path: Path) -> None:
    source = tmp_path / "model-dir"
    (source / "nested").mkdir(parents=True)
    (source / "weights.bin").write_bytes(b"\x00\x01" * 5000)
    (source / "nested" / "config.json").write_text('{"a": 1}')
    frame = pd.DataFrame({"x": [1, 2, 3], "y": [0, 1, 0]})
    with sdk.start_run("churn", name="train") as run:
        data = run.log_input(frame, name="churn-train")
        model = run.log_output(source, name="churn-model", type="model")
    assert data.type == "dataset" and data.properties["format"] == "parquet"
    assert model.properties["files"] == 2
    restored = sdk.store.blobs.export_directory(model.digest, tmp_path / "restored")
    assert (restored / "weights.bin").read_bytes() == b"\x00\x01" * 5000
    assert (restored / "nested" / "config.json").read_text() == '{"a": 1}'
    upstream = sdk.lineage.upstream(f"artifact:{model.id}").to_pandas()
    assert "dataset:churn-train" in " ".join(upstream["source"])
    assert set(upstream["association"]) >= {"Produced", "ContributedTo"}
    assert sdk._service.artifacts.find(clew_ref("dataset", "churn-train")).id == data.id


def clew_ref(type_: str, name: str) -> clew.domain.refs.ArtifactRef:  # type: ignore[name-defined]
    from clew.domain.refs import ArtifactRef

    return ArtifactRef(type=type_, name=name)


def test_feature_lineage_questions(sdk: clew.Client) -> None:
    source = clew.data_source("gs://lake/customers.parquet", name="customers")
    with sdk.start_run("features", name="build", kind="feature_pipeline") as run:
        run.log_input(source)
        run.log_output(clew.feature_group("customer-features", ["age", "tenure"]))
    groups = sdk.lineage.feature_groups_from_data_source("customers")
    assert groups["name"].tolist() == ["customer-features"]
    sources = sdk.lineage.data_sources_from_feature_group("customer-features")
    assert sources["name"].tolist() == ["customers"]
