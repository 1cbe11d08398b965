"""The lineage graph: upstream/downstream walks, depth and type filters, and the result shapes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import clew
from clew.errors import InvalidInputError, InvalidRefError, NotFoundError

COLUMNS = ["source", "source_type", "association", "destination", "destination_type", "depth"]


@pytest.fixture
def chain(client: clew.Client, tmp_path: Path) -> dict[str, clew.ArtifactRecord | str]:
    """raw -> prep run -> features -> train run -> model, plus an evaluation reading the model."""
    raw = pd.DataFrame({"x": [1, 2, 3], "y": [0, 1, 0]})
    with clew.start_run(experiment="churn", name="prep", kind="processing") as prep:
        raw_artifact = prep.log_input(raw, name="raw")
        features = prep.log_output(raw * 2, name="features", type="dataset")
    with clew.start_run(experiment="churn", name="train", kind="training") as train:
        train.log_input(features)
        weights = tmp_path / "model.bin"
        weights.write_bytes(b"weights")
        model = train.log_model(weights, name="churn-model")
    with clew.start_run(experiment="churn", name="eval", kind="evaluation") as evaluate:
        evaluate.log_input(model)
        report = evaluate.log_output(weights, name="eval-report", type="report")
    return {
        "raw": raw_artifact,
        "features": features,
        "model": model,
        "report": report,
        "prep": prep.id,
        "train": train.id,
        "eval": evaluate.id,
    }


def test_upstream_of_a_model_reaches_the_raw_data(chain: dict) -> None:
    model = chain["model"]
    result = clew.lineage.upstream(f"model:churn-model@{model.digest}")
    frame = result.to_pandas()
    assert list(frame.columns[: len(COLUMNS)]) == COLUMNS
    edges = {
        (row.source_type, row.association, row.destination_type, row.depth)
        for row in frame.itertuples()
    }
    assert ("training", "Produced", "model", 1) in edges
    assert ("dataset", "ContributedTo", "training", 2) in edges
    assert ("processing", "Produced", "dataset", 3) in edges
    assert ("dataset", "ContributedTo", "processing", 4) in edges
    raw_rows = frame[frame["source_id"] == chain["raw"].id]
    assert raw_rows["source"].iloc[0] == f"dataset:raw@{chain['raw'].digest[:19]}"
    assert result.truncated is False


def test_max_depth_limits_the_walk(chain: dict) -> None:
    ref = f"artifact:{chain['model'].id}"
    one = clew.lineage.upstream(ref, max_depth=1).to_pandas()
    assert one[["source", "association", "depth"]].values.tolist() == [
        [f"run:{chain['train']}", "Produced", 1]
    ]
    two = clew.lineage.upstream(ref, max_depth=2).to_pandas()
    assert set(two["depth"]) == {1, 2}
    assert chain["raw"].id not in set(two["source_id"])


def test_types_keep_only_edges_reaching_those_types(chain: dict) -> None:
    frame = clew.lineage.upstream(f"artifact:{chain['model'].id}", types=["dataset"]).to_pandas()
    assert set(frame["source_type"]) == {"dataset"}
    assert {chain["features"].id, chain["raw"].id} <= set(frame["source_id"])


def test_downstream_of_raw_data_reaches_the_model_and_report(chain: dict) -> None:
    frame = clew.lineage.downstream(f"dataset:raw@{chain['raw'].digest}").to_pandas()
    destinations = set(frame["destination_id"])
    assert {chain["prep"], chain["features"].id, chain["train"], chain["model"].id} <= destinations
    assert chain["report"].id in destinations
    assert frame["depth"].min() == 1
    runs_only = clew.lineage.downstream(f"dataset:raw@{chain['raw'].digest}", types=["training"])
    assert set(runs_only.to_pandas()["destination_id"]) == {chain["train"]}


def test_runs_and_experiments_are_nodes_too(chain: dict) -> None:
    frame = clew.lineage.upstream(f"run:{chain['train']}", max_depth=1).to_pandas()
    assert chain["features"].id in set(frame["source_id"])
    experiment = clew.lineage.upstream("experiment:churn", max_depth=1).to_pandas()
    assert set(experiment["association"]) == {"AssociatedWith"}
    assert {chain["prep"], chain["train"], chain["eval"]} <= set(experiment["source_id"])


def test_to_dict_is_plain_data(chain: dict) -> None:
    result = clew.lineage.upstream(f"run:{chain['train']}", max_depth=2)
    data = result.to_dict()
    assert data["direction"] == "upstream"
    assert data["start"]["ref"] == f"run:{chain['train']}"
    assert data["start"]["kind"] == "run" and data["start"]["type"] == "training"
    assert data["truncated"] is False
    assert len(data["edges"]) == len(result.to_pandas())
    assert {"source", "association", "destination", "depth"} <= set(data["edges"][0])
    node_ids = {node["id"] for node in data["nodes"]}
    assert {edge["source_id"] for edge in data["edges"]} <= node_ids


def test_a_walk_with_nothing_found_gives_an_empty_frame(client: clew.Client) -> None:
    with clew.start_run(experiment="lonely", capture_code=False) as run:
        pass
    only_experiment = clew.lineage.downstream(f"run:{run.id}").to_pandas()
    assert only_experiment["destination"].tolist() == ["experiment:lonely"]
    frame = clew.lineage.downstream(f"run:{run.id}", types=["model"]).to_pandas()
    assert frame.empty and list(frame.columns[: len(COLUMNS)]) == COLUMNS


def test_bad_queries(chain: dict) -> None:
    with pytest.raises(InvalidInputError, match="max_depth"):
        clew.lineage.upstream(f"run:{chain['train']}", max_depth=0)
    with pytest.raises(InvalidRefError, match="churn@production"):
        clew.lineage.upstream("what is this")
    with pytest.raises(NotFoundError):
        clew.lineage.upstream("experiment:nope")
    with pytest.raises(NotFoundError):
        clew.lineage.upstream("dataset:raw@sha256:00000000")
