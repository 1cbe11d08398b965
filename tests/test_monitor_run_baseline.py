"""A monitor run on a version with a baseline runs data quality and drift beside model quality,
from one read of the window, and records the baseline as an input of its run in lineage."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

import clew


def _customers(rows: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.normal(45 + shift * 20, 10, rows),
            "income": rng.lognormal(10 + shift, 0.5, rows),
        }
    )


def _deploy(client: clew.Client) -> None:
    train = _customers(2_000, seed=1)
    model = LogisticRegression(max_iter=300).fit(train, (train["age"] > 45).astype(int))
    with client.start_run("churn", "train") as run:
        run.log_input(train, name="churn-train")
        artifact = run.log_model(model, name="churn-model")
    client.register_model(artifact, "churn")


def test_without_a_baseline_a_monitor_run_checks_model_quality_only(client: clew.Client) -> None:
    _deploy(client)
    loaded = client.load_model("churn/1")
    loaded.predict(_customers(300, seed=2))
    client.flush_captures()
    result = client.run_monitor("churn/1", last=300)
    assert [report.check for report in result.reports] == ["model_quality"]


def test_with_a_baseline_a_monitor_run_finds_drift_and_links_the_baseline(
    client: clew.Client,
) -> None:
    _deploy(client)
    baseline = client.monitoring.create_baseline("churn/1")
    loaded = client.load_model("churn/1")
    loaded.predict(_customers(600, seed=3, shift=1.5))
    client.flush_captures()
    result = client.run_monitor("churn/1", last=600)
    reports = {report.check: report for report in result.reports}
    assert set(reports) == {"model_quality", "data_quality", "drift"}
    assert reports["drift"].rows == reports["data_quality"].rows == 600
    drifted = {v.feature_name for v in reports["drift"].violations}
    assert {"age", "income"} <= drifted
    assert result.violations >= 2
    run = client.get_run(result.run_id)
    assert run.metrics["drift.violations"] == len(reports["drift"].violations)
    upstream = client.lineage.upstream(f"run:{result.run_id}", max_depth=1)
    assert baseline.statistics_artifact_id in upstream.nodes
