"""Feature lineage (the SageMaker feature-store pattern): data sources -> feature pipeline ->
feature groups -> query -> feature set -> training -> model, and the four questions on it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import clew


@pytest.fixture
def feature_store(client: clew.Client, tmp_path: Path) -> dict[str, clew.ArtifactRecord]:
    with clew.start_run(experiment="features", name="build", kind="feature_pipeline") as build:
        orders = build.log_input(clew.data_source("s3://lake/raw/orders/", name="orders"))
        customers = build.log_input(clew.data_source("postgres://crm/customers", name="customers"))
        spend = build.log_output(
            clew.feature_group(
                "customer-spend", ["total_spend", "orders_90d"], "spend per customer"
            )
        )
        profile = build.log_output(clew.feature_group("customer-profile", ["age", "tenure"]))
    with clew.start_run(experiment="features", name="clicks", kind="feature_pipeline") as clicks:
        web = clicks.log_input(clew.data_source("s3://lake/raw/clicks/", name="clicks"))
        engagement = clicks.log_output(clew.feature_group("engagement", ["sessions_7d"]))
    with clew.start_run(experiment="features", name="query", kind="query") as query:
        query.log_input(spend)
        query.log_input(profile)
        feature_set = query.log_output(
            pd.DataFrame({"total_spend": [1.0, 2.0], "age": [30, 40], "churned": [0, 1]}),
            name="churn-features",
            type="feature_set",
        )
    with clew.start_run(experiment="churn", name="train", kind="training") as train:
        train.log_input(feature_set)
        model = train.log_model(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), name="churn-lr")
    return {
        "orders": orders,
        "customers": customers,
        "clicks": web,
        "spend": spend,
        "profile": profile,
        "engagement": engagement,
        "feature_set": feature_set,
        "model": model,
    }


def test_feature_groups_record_their_feature_names(feature_store: dict) -> None:
    spend = feature_store["spend"]
    assert (spend.type, spend.name) == ("feature_group", "customer-spend")
    assert spend.properties["features"] == ["orders_90d", "total_spend"]
    assert spend.properties["description"] == "spend per customer"
    source = feature_store["orders"]
    assert (source.type, source.uri) == ("data_source", "s3://lake/raw/orders/")


def test_feature_groups_from_data_source(feature_store: dict) -> None:
    frame = clew.lineage.feature_groups_from_data_source("orders")
    assert isinstance(frame, pd.DataFrame)
    assert sorted(frame["name"]) == ["customer-profile", "customer-spend"]
    assert set(frame["type"]) == {"feature_group"}
    assert set(frame["depth"]) == {2}
    features = dict(zip(frame["name"], frame["properties"], strict=True))
    assert features["customer-spend"]["features"] == ["orders_90d", "total_spend"]
    clicks = clew.lineage.feature_groups_from_data_source("data_source:clicks")
    assert clicks["name"].tolist() == ["engagement"]


def test_data_sources_from_feature_group(feature_store: dict) -> None:
    frame = clew.lineage.data_sources_from_feature_group("customer-spend")
    assert sorted(frame["name"]) == ["customers", "orders"]
    assert set(frame["type"]) == {"data_source"}
    too_shallow = clew.lineage.data_sources_from_feature_group("customer-spend", max_depth=1)
    assert too_shallow.empty


def test_models_from_feature_group(feature_store: dict) -> None:
    frame = clew.lineage.models_from_feature_group("customer-profile")
    assert frame["name"].tolist() == ["churn-lr"]
    assert frame["digest"].tolist() == [feature_store["model"].digest]
    assert clew.lineage.models_from_feature_group("engagement").empty


def test_feature_groups_from_model(feature_store: dict) -> None:
    model = feature_store["model"]
    frame = clew.lineage.feature_groups_from_model(f"model:churn-lr@{model.digest}")
    assert sorted(frame["name"]) == ["customer-profile", "customer-spend"]
    assert list(frame.columns) == ["name", "type", "ref", "id", "digest", "depth", "properties"]
    assert frame["ref"].str.startswith("feature_group:").all()


def test_a_feature_group_is_identified_by_name_and_features(feature_store: dict) -> None:
    with clew.start_run(experiment="features", name="rebuild", kind="feature_pipeline") as run:
        same = run.log_output(clew.feature_group("customer-spend", ["total_spend", "orders_90d"]))
        wider = run.log_output(clew.feature_group("customer-spend", ["total_spend", "refunds"]))
    assert same.id == feature_store["spend"].id
    assert wider.id != same.id and wider.digest != same.digest


def test_a_feature_group_needs_features(client: clew.Client) -> None:
    with (
        clew.start_run(experiment="features") as run,
        pytest.raises(clew.ClewError, match="feature"),
    ):
        run.log_output(clew.feature_group("empty", []))
