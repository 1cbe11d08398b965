"""``clew monitor run|schedule|schedules|unschedule|status|resolve`` through the real command:
JSON shapes for scripts, one-sentence errors, and idempotent runs for external schedulers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

import clew
from clew.cli.main import app

runner = CliRunner(env={"COLUMNS": "200"})


def invoke(*args: str) -> Any:
    return runner.invoke(app, ["monitor", *args])


def as_json(*args: str) -> Any:
    result = invoke(*args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def one_line_error(result: Any, contains: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert contains in lines[0]
    assert "Traceback" not in result.output


@pytest.fixture
def deployed(client: clew.Client) -> clew.Client:
    """churn/1 with 100 captured predictions, all labelled wrongly (accuracy 0)."""
    features, target = make_classification(n_samples=300, n_features=4, random_state=4)
    with client.start_run("monitor", "train") as run:
        model = LogisticRegression(max_iter=500).fit(features[:200], target[:200])
        run.log_metric("accuracy", 0.9)
        artifact = run.log_model(model, name="churn-lr")
    client.register_model(artifact, "churn")
    predicted, ids = client.load_model("churn/1").predict_with_ids(features[200:])
    client.flush_captures()
    client.log_labels(list(ids), [1 - int(value) for value in predicted])
    client.set_policy("monitoring:\n  on_violation: revalidate\n")
    return client


def test_run_twice_prints_the_same_run_and_status_shows_the_violation(deployed) -> None:
    first = as_json("run", "churn/1", "--last", "100")
    assert first["rows"] == 100 and first["violations"] == 1 and first["action"] == "revalidate"
    assert first["reports"][0]["violations"][0]["constraint_check_type"] == "model_quality_check"
    again = as_json("run", "churn/1", "--last", "100")
    assert again["id"] == first["id"] and again["reused"] is True
    assert as_json("run", "churn/1", "--last", "100", "--rerun")["attempt"] == 1
    table = invoke("run", "churn/1", "--last", "100")
    assert table.exit_code == 0 and "reused" in table.stdout
    status = as_json("status", "churn/1")
    assert status["status"] == "needs revalidation"
    assert status["open_violations"][0]["action"] == "revalidate"
    assert [run["attempt"] for run in status["runs"]] == [1, 0]
    resolved = as_json("resolve", "churn/1", "-m", "upstream feed fixed")
    assert resolved["kind"] == "revalidated"
    assert as_json("status", "churn/1")["open_violations"] == []


def test_schedules_from_the_command_line(deployed) -> None:
    made = as_json("schedule", "churn/1", "--cron", "0 * * * *", "--window", "1h")
    assert made["cron"] == "0 * * * *" and made["window_ms"] == 3_600_000
    assert [item["id"] for item in as_json("schedules")["schedules"]] == [made["id"]]
    assert invoke("unschedule", made["id"]).exit_code == 0
    assert as_json("schedules", "churn")["schedules"] == []


def test_bad_input_is_one_line(deployed) -> None:
    one_line_error(invoke("schedule", "churn/1", "--cron", "0 * *"), "does not parse")
    one_line_error(invoke("run", "churn/1", "--window", "forever"), "is not a duration")
    one_line_error(
        invoke("run", "churn/1", "--start", "2020-01-01", "--end", "2020-01-02"),
        "no predictions of churn/1",
    )
    one_line_error(invoke("run", "churn/1"), "name a window")
    one_line_error(invoke("resolve", "churn/1", "-m", "nothing open"), "no open monitoring")
    one_line_error(invoke("unschedule", "01J00000000000000000000000"), "does not exist")
    one_line_error(invoke("status", "nothing/1"), "nothing")
