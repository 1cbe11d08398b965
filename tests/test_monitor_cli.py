"""``clew monitor baseline ...`` and ``clew monitor check`` through the SDK's default client."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_monitor_checks import customers, model, serve
from typer.testing import CliRunner

import clew
from clew.cli.main import app

runner = CliRunner(env={"COLUMNS": "200"})
__all__ = ["model"]  # the fixture, shared with the SDK tests


def invoke(*args: str) -> object:
    return runner.invoke(app, list(args))


def test_baseline_check_and_edit_from_the_command_line(
    client: clew.Client, model: object, tmp_path: Path
) -> None:
    created = invoke("monitor", "baseline", "create", "churn/1", "--format", "json")
    assert created.exit_code == 0, created.output
    assert json.loads(created.stdout)["constraints_version"] == 1
    serve(client, model, customers(1_000, seed=9, shift=1.0))  # type: ignore[arg-type]
    violations = tmp_path / "constraint_violations.json"
    checked = invoke(
        "monitor",
        "check",
        "churn/1",
        "--last",
        "1000",
        "--violations",
        str(violations),
        "--strict",
        "--format",
        "json",
    )
    assert checked.exit_code == 3, checked.output
    reports = json.loads(checked.stdout)["reports"]
    assert [r["check"] for r in reports] == ["data_quality", "drift"]
    written = json.loads(violations.read_text())["violations"]
    assert {"income", "age"} <= {v["feature_name"] for v in written}
    edited = invoke(
        "monitor",
        "baseline",
        "edit",
        "churn/1",
        "income",
        "--drift-threshold",
        "100",
        "--reason",
        "new market",
    )
    assert edited.exit_code == 0, edited.output
    assert "revision 2" in edited.stdout
    exported = invoke("monitor", "baseline", "export", "churn/1", str(tmp_path / "out"))
    assert exported.exit_code == 0, exported.output
    assert json.loads((tmp_path / "out" / "constraints.json").read_text())["version"] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("monitor", "check", "churn/1"), "has no baseline"),
        (("monitor", "baseline", "edit", "churn/1", "age"), "name at least one change"),
    ],
)
def test_bad_input_is_one_line(
    client: clew.Client, model: object, args: tuple[str, ...], message: str
) -> None:
    result = invoke(*args)
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.output
