"""``clew findings add|list|show|update`` and ``clew review add|status|check`` through the real
command: JSON for scripts, readable tables, and one-sentence errors with a non-zero exit."""

from __future__ import annotations

import json
from typing import Any

import pytest
from server_fixtures import AsUser
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

import clew
from clew.cli.main import app

runner = CliRunner(env={"COLUMNS": "200"})


def as_json(*args: str) -> Any:
    result = runner.invoke(app, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def one_line_error(result: Any, contains: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert contains in lines[0]
    assert "Traceback" not in result.output


@pytest.fixture
def registered(client: clew.Client, as_user: AsUser) -> clew.Client:
    """credit/1 registered by carol; the commands run as alice, the validator (the default
    client's user, embedded and through the server alike)."""
    carol = as_user("carol", "contributor")
    features, target = make_classification(n_samples=80, n_features=4, random_state=2)
    with carol.start_run("credit", "train") as run:
        artifact = run.log_model(LogisticRegression().fit(features, target), name="credit-lr")
    carol.register_model(artifact, "credit", owner="dave", risk_tier="high")
    alice = as_user("alice")
    alice.set_policy("reviews:\n  high: 90d\n")
    return alice


def test_a_validator_records_lists_and_closes_a_finding(registered: clew.Client) -> None:
    added = as_json(
        "findings", "add", "credit/1", "-s", "high", "-d", "No stress test", "--due", "2027-01-31"
    )
    assert added["severity"] == "high" and added["due"] == "2027-01-31"
    assert added["created_by"] == "alice" and added["owner"] == "dave"
    listed = as_json("findings", "list", "credit", "--status", "unresolved")["findings"]
    assert [row["id"] for row in listed] == [added["id"]]
    table = runner.invoke(app, ["findings", "list", "credit"])
    assert table.exit_code == 0 and "No stress test" in table.stdout
    refused = runner.invoke(app, ["promote", "credit/1", "production"])
    one_line_error(refused, f"unresolved high finding {added['id']}")
    closed = as_json("findings", "update", added["id"], "--status", "closed", "-n", "test run")
    assert closed["status"] == "closed" and closed["note"] == "test run"
    shown = runner.invoke(app, ["findings", "show", added["id"]])
    assert shown.exit_code == 0 and "closed" in shown.stdout


def test_bad_input_is_one_sentence(registered: clew.Client) -> None:
    one_line_error(
        runner.invoke(app, ["findings", "add", "credit/1", "-s", "huge", "-d", "x"]),
        "severity 'huge' is not one of low, medium, high",
    )
    one_line_error(
        runner.invoke(app, ["findings", "update", "missing", "-n", "x", "--status", "closed"]),
        "no finding 'missing'",
    )
    one_line_error(runner.invoke(app, ["review", "status", "--as-of", "tomorrow"]), "is not a date")


def test_review_add_status_and_check(registered: clew.Client) -> None:
    before = as_json("review", "status", "credit")
    assert before["state"] == "never reviewed" and before["cadence_days"] == 90
    done = as_json("review", "add", "credit/1", "-c", "initial validation")
    assert done["reviewed_by"] == "alice" and done["version"] == 1
    after = as_json("review", "status")["reviews"]
    assert [row["state"] for row in after] == ["current"]
    future = as_json("review", "status", "credit", "--as-of", "2999-12-31")
    assert future["state"] == "overdue"
    checked = as_json("review", "check")
    assert checked == {"raised": []}
    table = runner.invoke(app, ["review", "status", "credit"])
    assert table.exit_code == 0 and "current" in table.stdout
