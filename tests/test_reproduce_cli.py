"""``clew reproduce`` from the command line: steps as they finish, the verdict, its exit code,
JSON for scripts, and a refusal as one sentence with exit 1."""

from __future__ import annotations

import json
from pathlib import Path

from test_reproduce import project, train  # noqa: F401  (the fixture and the trainer)
from typer.testing import CliRunner

import clew
from clew.cli.main import app

runner = CliRunner(env={"COLUMNS": "200"})


def test_reproduce_prints_each_step_and_signs_the_verdict(
    client: clew.Client,
    project: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    client.register_model(train(project), "iris")
    shown = runner.invoke(app, ["reproduce", "iris/1", "--repository", str(project)])
    assert shown.exit_code == 0, shown.output
    for step in ("plan", "checkout", "inputs", "run", "compare", "report"):
        assert f"✓ {step}" in shown.output
    assert "bit-identical: report artifact:" in shown.output

    as_json = runner.invoke(
        app, ["reproduce", "iris/1", "--repository", str(project), "--format", "json"]
    )
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.output)["verdict"] == "bit-identical"

    refused = runner.invoke(app, ["reproduce", "iris/1", "--repository", str(tmp_path)])
    assert refused.exit_code == 1
    assert "is not a git repository; pass repository=" in refused.output
    assert "Traceback" not in refused.output
