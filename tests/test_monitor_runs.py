"""The monitor runner and the governance it feeds, on a real store with a real model.

One window runs once (a rerun is asked for), is recorded as a run in lineage with its reports
as artifacts and figures as metrics, and a violation changes the version's governance state as
the policy says: warn, needs revalidation, blocked promotion, or a fresh approval required.
Runs embedded, on PostgreSQL + S3 and through a server.
"""

from __future__ import annotations

from typing import Any

import pytest
from server_fixtures import AsUser
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

import clew
from clew.errors import ConflictError, InvalidInputError, PolicyError, PolicySyntaxError


def _policy(action: str) -> str:
    return (
        "approvals:\n  required: 1\n  separation_of_duties: false\n"
        f"monitoring:\n  on_violation: warn\n  models:\n    churn: {action}\n"
    )


def _deployed(client: clew.Client, name: str = "churn") -> tuple[Any, Any, Any]:
    """A registered classifier with 200 held-out predictions captured (no labels yet)."""
    features, target = make_classification(n_samples=500, n_features=4, random_state=1)
    with client.start_run("monitor", "train") as run:
        model = LogisticRegression(max_iter=500).fit(features[:300], target[:300])
        run.log_metric("accuracy", float(model.score(features[300:], target[300:])))
        artifact = run.log_model(model, name=f"{name}-lr")
    client.register_model(artifact, name)
    loaded = client.load_model(f"{name}/1")
    predicted, ids = loaded.predict_with_ids(features[300:])
    client.flush_captures()
    return predicted, ids, target[300:]


def _label_all_wrong(client: clew.Client, predicted: Any, ids: Any) -> None:
    client.log_labels(list(ids), [1 - int(value) for value in predicted])


def test_a_window_runs_once_unless_a_rerun_is_asked_for(client: clew.Client) -> None:
    _, ids, target = _deployed(client)
    client.log_labels(list(ids), [int(value) for value in target])
    first = client.run_monitor("churn/1", last=200)
    assert not first.reused and first.attempt == 0 and first.rows == 200
    again = client.run_monitor("churn/1", last=200)
    assert again.reused and again.id == first.id and again.run_id == first.run_id
    assert again.reports[0].metrics["accuracy"] == first.reports[0].metrics["accuracy"]
    rerun = client.run_monitor("churn/1", last=200, rerun=True)
    assert rerun.attempt == 1 and rerun.id != first.id and not rerun.reused
    runs = client.monitor_runs("churn/1")
    assert list(runs["attempt"]) == [1, 0]


def test_a_monitor_run_is_a_run_in_lineage_with_reports_and_metrics(client: clew.Client) -> None:
    _, ids, target = _deployed(client)
    client.log_labels(list(ids), [int(value) for value in target])
    result = client.run_monitor("churn/1", last=200)
    run = client.get_run(result.run_id)
    assert run.kind == "monitoring" and run.status == "FINISHED"
    assert run.metrics["model_quality.accuracy"] == result.reports[0].metrics["accuracy"]
    assert run.metrics["model_quality.label_coverage"] == 1.0
    assert run.tags["clew.monitor.window"] == result.window.key
    upstream = client.lineage.upstream(f"run:{result.run_id}", max_depth=1)
    assert "churn-lr" in {node.name for node in upstream.nodes.values()}
    downstream = client.lineage.downstream(f"run:{result.run_id}", max_depth=1)
    names = {node.name for node in downstream.nodes.values()}
    assert {"monitor-report.json", "model_quality-violations.json"} <= names


def test_violation_blocks_promotion_until_a_fresh_approval(
    client: clew.Client, as_user: AsUser
) -> None:
    predicted, ids, _ = _deployed(client)
    client.set_policy(_policy("block"))
    bob = as_user("bob")
    bob.approve("churn/1", "validated")
    bob.promote("churn/1", "production")
    _label_all_wrong(client, predicted, ids)
    result = client.run_monitor("churn/1", last=200)
    assert result.action == "block" and result.violations == 1
    status = client.version_status("churn/1")
    assert status["status"] == "needs revalidation"
    [open_violation] = status["open_violations"]
    assert open_violation["action"] == "block" and "accuracy" in open_violation["description"]
    inventory = client.list_models()
    assert list(inventory.loc[inventory["name"] == "churn", "status"]) == ["needs revalidation"]
    with pytest.raises(PolicyError, match=r"open monitoring violation .*accuracy.* blocks"):
        bob.promote("churn/1", "canary", new_alias=True)
    carol = as_user("carol")
    carol.approve("churn/1", "re-validated on fresh data")
    assert client.version_status("churn/1")["status"] == "approved"
    assert carol.promote("churn/1", "canary", new_alias=True).alias == "canary"
    kinds = [event.kind for event in client.model_history("churn")]
    assert "violation" in kinds


def test_reapprove_is_not_lifted_by_resolve_but_by_approval(
    client: clew.Client, as_user: AsUser
) -> None:
    predicted, ids, _ = _deployed(client)
    client.set_policy(_policy("reapprove"))
    _label_all_wrong(client, predicted, ids)
    client.run_monitor("churn/1", last=200)
    bob = as_user("bob")
    bob.resolve_violation("churn/1", "looked at it")
    with pytest.raises(PolicyError, match="approve it again"):
        bob.promote("churn/1", "canary", new_alias=True)
    bob.approve("churn/1", "approved after the violation")
    assert bob.promote("churn/1", "canary", new_alias=True).version == 1


def test_revalidate_marks_the_version_and_resolve_clears_it(
    client: clew.Client, as_user: AsUser
) -> None:
    predicted, ids, _ = _deployed(client)
    client.set_policy(_policy("revalidate"))
    _label_all_wrong(client, predicted, ids)
    client.run_monitor("churn/1", last=200)
    assert client.monitor_status("churn/1")["status"] == "needs revalidation"
    bob = as_user("bob")
    assert bob.promote("churn/1", "canary", new_alias=True).version == 1  # not blocked
    event = bob.resolve_violation("churn/1", "retrained features fixed upstream")
    assert event.kind == "revalidated" and event.actor == "bob"
    assert client.monitor_status("churn/1")["open_violations"] == []
    with pytest.raises(ConflictError, match="no open monitoring violation"):
        bob.resolve_violation("churn/1", "again")
    with pytest.raises(InvalidInputError, match="needs a comment"):
        bob.resolve_violation("churn/1", " ")


def test_warn_records_the_violation_and_changes_no_status(client: clew.Client) -> None:
    predicted, ids, _ = _deployed(client)
    _label_all_wrong(client, predicted, ids)
    result = client.run_monitor("churn/1", last=200)
    assert result.action == "warn"
    assert client.version_status("churn/1")["status"] == "pending"
    [event] = [e for e in client.model_history("churn") if e.kind == "violation"]
    assert event.evidence["action"] == "warn" and event.evidence["monitor_run"] == result.id


def test_policy_actions_by_risk_tier_and_bad_actions(client: clew.Client) -> None:
    client.set_policy("monitoring:\n  risk_tiers:\n    high: block\n")
    rules = client.get_policy()["rules"]["monitoring"]
    assert rules == {"on_violation": "warn", "risk_tiers": {"high": "block"}, "models": {}}
    with pytest.raises(PolicySyntaxError, match="use one of warn, revalidate, block"):
        client.set_policy("monitoring:\n  on_violation: panic\n")
    with pytest.raises(PolicySyntaxError, match="unknown key"):
        client.set_policy("monitoring:\n  on_breach: warn\n")


def test_an_empty_window_is_one_sentence_and_records_nothing(client: clew.Client) -> None:
    _deployed(client)
    with pytest.raises(InvalidInputError, match="no predictions of churn/1"):
        client.run_monitor("churn/1", start="2020-01-01T00:00:00Z", end="2020-01-02T00:00:00Z")
    assert client.monitor_runs("churn/1").empty
