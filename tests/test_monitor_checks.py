"""Baselines and checks end to end: a real model, real captures, the real store (embedded,
PostgreSQL + S3 or through a server, per ``CLEW_TEST_BACKEND``/``CLEW_TEST_CLIENT``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

import clew
from clew.client.loaded_model import LoadedModel
from clew.domain.monitoring import CheckReport
from clew.errors import InvalidInputError, NotFoundError

PLANS = np.array(["basic", "pro", "max"])


def customers(rows: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.integers(18, 80, rows) + int(shift * 10),
            "income": rng.lognormal(10 + shift, 0.5, rows),
            "plan": PLANS[rng.choice(3, rows, p=[0.6, 0.3, 0.1])],
        }
    )


@pytest.fixture
def model(client: clew.Client) -> LoadedModel:
    """A churn pipeline trained inside a run that logged its training data."""
    train = customers(3_000, seed=1)
    target = (train["age"] > 50).astype(int)
    pipeline = make_pipeline(
        ColumnTransformer(
            [
                ("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
                ("numbers", SimpleImputer(), ["age", "income"]),
            ]
        ),
        LogisticRegression(max_iter=300),
    ).fit(train, target)
    with client.start_run("churn", "train") as run:
        run.log_input(train, name="churn-train")
        artifact = run.log_model(pipeline, name="churn-model")
    client.register_model(artifact, "churn")
    return client.load_model("churn/1")


def serve(client: clew.Client, model: LoadedModel, frame: pd.DataFrame) -> None:
    for start in range(0, len(frame), 500):
        model.predict(frame.iloc[start : start + 500])
    client.flush_captures()


def test_a_baseline_from_lineage_is_sagemaker_shaped_and_linked(
    client: clew.Client, model: LoadedModel
) -> None:
    baseline = client.monitoring.create_baseline("churn/1")
    stats = {f["name"]: f for f in baseline.statistics["features"]}
    assert baseline.statistics["dataset"]["item_count"] == 3_000
    assert stats["age"]["inferred_type"] == "Integral"
    assert stats["income"]["inferred_type"] == "Fractional"
    assert stats["plan"]["inferred_type"] == "String"
    numeric = stats["income"]["numerical_statistics"]
    assert numeric["common"] == {"num_present": 3_000, "num_missing": 0}
    buckets = numeric["distribution"]["kll"]["buckets"]
    assert len(buckets) == 10 and sum(b["count"] for b in buckets) == 3_000
    constraints = {f["name"]: f for f in baseline.constraints["features"]}
    assert constraints["plan"]["string_constraints"]["domains"] == ["basic", "max", "pro"]
    assert constraints["age"]["num_constraints"] == {"is_non_negative": True}
    assert baseline.constraints_version == 1
    upstream = client.lineage.upstream(f"artifact:{baseline.statistics_artifact_id}")
    names = {node.name for node in upstream.nodes.values()}
    assert {"churn-train", "churn-model"} <= names


def test_drift_is_found_where_the_data_moved_and_not_elsewhere(
    client: clew.Client, model: LoadedModel
) -> None:
    client.monitoring.create_baseline("churn/1")
    serve(client, model, customers(2_000, seed=2))
    calm = client.monitoring.check_drift("churn/1")
    assert isinstance(calm, CheckReport) and calm.rows == 2_000
    assert calm.passed, calm.violations
    serve(client, model, customers(2_000, seed=3, shift=1.0))
    recent = client.monitoring.check_drift("churn/1", last_n=2_000)
    assert recent.rows == 2_000
    drifted = {v.feature_name for v in recent.violations}
    assert drifted == {"age", "income"}
    assert all(v.constraint_check_type == "baseline_drift_check" for v in recent.violations)
    figures = recent.metrics["features"]["income"]
    assert figures["metric"] == "psi" and figures["psi"] > 0.2 and figures["ks_pvalue"] < 1e-6
    document = recent.constraint_violations()
    assert {v["feature_name"] for v in document["violations"]} == {"age", "income"}
    assert json.loads(json.dumps(recent.to_dict()))["rows"] == 2_000


def test_data_quality_names_new_values_gaps_and_columns(
    client: clew.Client, model: LoadedModel
) -> None:
    client.monitoring.create_baseline("churn/1")
    frame = customers(1_000, seed=4)
    frame.loc[:399, "plan"] = "enterprise"
    frame.loc[:299, "income"] = np.nan
    frame["age"] = frame["age"] - 100  # negative ages break the sign constraint
    serve(client, model, frame)
    report = client.monitoring.check_data_quality("churn/1")
    kinds = {(v.feature_name, v.constraint_check_type) for v in report.violations}
    assert ("plan", "categorical_values_check") in kinds
    assert ("income", "completeness_check") in kinds
    assert ("age", "numeric_bounds_check") in kinds
    assert report.metrics["features"]["plan"]["new_values"] == ["enterprise"]
    assert report.metrics["features"]["income"]["completeness"] == pytest.approx(0.7)


def test_constraint_edits_are_versioned_audited_and_used(
    client: clew.Client, model: LoadedModel
) -> None:
    client.monitoring.create_baseline("churn/1")
    serve(client, model, customers(1_000, seed=5, shift=1.0))
    assert not client.monitoring.check_drift("churn/1").passed
    edited = client.monitoring.edit_constraints(
        "churn/1",
        {
            "income": {"drift_threshold": 50.0},
            "age": {"drift_metric": "ks_pvalue", "drift_threshold": 0.0},
        },
        reason="seasonal shift expected",
    )
    assert edited.constraints_version == 2
    assert client.monitoring.check_drift("churn/1").passed
    [entry] = client.audit_log(action="monitoring.constraints.edit")
    assert entry.actor == client.actor and entry.target == "model:churn/1"
    change = edited.constraints["clew"]
    assert (change["revision"], change["author"]) == (2, client.actor)
    assert change["change"]["reason"] == "seasonal shift expected"
    assert change["change"]["edits"]["income"] == {"drift_threshold": 50.0}


def test_bad_constraint_edits_change_nothing(client: clew.Client, model: LoadedModel) -> None:
    client.monitoring.create_baseline("churn/1")
    with pytest.raises(InvalidInputError, match="has no feature 'height'"):
        client.monitoring.edit_constraints("churn/1", {"height": {"drift_threshold": 1.0}})
    with pytest.raises(InvalidInputError, match="does not apply to numeric"):
        client.monitoring.edit_constraints("churn/1", {"age": {"drift_metric": "chi_squared"}})
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        client.monitoring.import_constraints("churn/1", "{not json")
    with pytest.raises(InvalidInputError, match="names feature 'height'"):
        client.monitoring.import_constraints(
            "churn/1", json.dumps({"version": 0, "features": [{"name": "height"}]})
        )
    assert client.monitoring.baseline("churn/1").constraints_version == 1


def test_sagemaker_files_round_trip(
    client: clew.Client, model: LoadedModel, tmp_path: Path
) -> None:
    client.monitoring.create_baseline("churn/1")
    statistics, constraints = client.monitoring.export_baseline("churn/1", tmp_path)
    plain = json.loads(statistics.read_text())
    del plain["clew"]  # what a SageMaker job writes: no clew section
    (tmp_path / "sagemaker.json").write_text(json.dumps(plain))
    imported = client.monitoring.import_baseline(
        "churn/1", tmp_path / "sagemaker.json", constraints
    )
    assert imported.stats.features["income"].present == 3_000
    serve(client, model, customers(1_000, seed=6, shift=1.0))
    assert {v.feature_name for v in client.monitoring.check_drift("churn/1").violations} >= {
        "income"
    }


def test_bad_input_is_one_sentence(client: clew.Client, model: LoadedModel) -> None:
    with pytest.raises(NotFoundError, match="has no baseline"):
        client.monitoring.check_drift("churn/1")
    with pytest.raises(InvalidInputError, match="has no rows"):
        client.monitoring.create_baseline("churn/1", customers(0, seed=1))
    client.monitoring.create_baseline("churn/1")
    with pytest.raises(InvalidInputError, match="holds no captured predictions"):
        client.monitoring.check_drift("churn/1")
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        client.monitoring.import_baseline("churn/1", "{oops")
