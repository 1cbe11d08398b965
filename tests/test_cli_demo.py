"""``clew demo`` end to end in an empty clew home, then the commands it tells users to run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clew.cli.main import app

runner = CliRunner(env={"COLUMNS": "200"})


def run_demo_process(home: Path, workdir: Path) -> subprocess.CompletedProcess[str]:
    """The installed ``clew`` entry point in a fresh process, as a user runs it."""
    environment = {**os.environ, "CLEW_HOME": str(home), "COLUMNS": "120"}
    environment.pop("CLEW_URI", None)
    return subprocess.run(
        [str(Path(sys.executable).with_name("clew")), "demo", "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
        check=False,
    )


@pytest.mark.sqlite_only
def test_demo_end_to_end_then_explore(tmp_path: Path, home: Path) -> None:
    result = run_demo_process(home, tmp_path / "demo")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    out = result.stdout
    assert "refused" in out and "separation of duties" in out
    assert "approved by validator" in out
    assert "tumor-classifier@production -> tumor-classifier/1" in out
    assert "25 captured and signed" in out
    assert "/blob/" in out and "/train.py" in out
    assert "explore what it made" in out
    for command in ("clew runs list", "clew lineage tumor-classifier@production", "clew trace"):
        assert command in out

    runs = json.loads(runner.invoke(app, ["runs", "list", "-f", "json"]).stdout)["runs"]
    assert [(r["name"], r["kind"]) for r in runs] == [
        ("train", "training"),
        ("prepare", "processing"),
    ]
    show = runner.invoke(app, ["runs", "show", runs[0]["run_id"], "-f", "json"])
    train = json.loads(show.stdout)
    assert train["run"]["seed"] == 42
    assert train["code"]["permalink"].endswith("/train.py")
    assert train["code"]["script"] == "train.py"

    lineage = json.loads(
        runner.invoke(app, ["lineage", "tumor-classifier@production", "-f", "json"]).stdout
    )
    assert "data_source" in {edge["source_type"] for edge in lineage["edges"]}

    prediction_id = re.search(r"clew trace (\S+)", out).group(1)
    traced = runner.invoke(app, ["trace", prediction_id, "-f", "json"])
    assert traced.exit_code == 0, traced.output
    trace = json.loads(traced.stdout)
    assert trace["outcome"] == "verified", [(s["kind"], s["reason"]) for s in trace["steps"]]
    steps = {step["kind"]: step for step in trace["steps"]}
    assert steps["training_run"]["details"]["seed"] == 42
    assert "validator" in steps["approvals"]["title"]
    source = steps["data_source"]
    assert source["outcome"] == "verified" and "re-hashed" in source["reason"]
    assert source["details"]["properties"]["source_uri"] == "sklearn://datasets/breast_cancer"
    assert "all 8 steps verified" in out, out

    assert runner.invoke(app, ["audit", "verify"]).exit_code == 0
    assert runner.invoke(app, ["verify"]).exit_code == 0
    assert (tmp_path / "demo" / "tumor-screening" / "train.py").exists()


def test_demo_in_process_restores_cwd_and_user(tmp_path: Path) -> None:
    """Run twice in one store: a second version, and the caller's cwd and CLEW_USER kept."""
    cwd = Path.cwd()
    first = runner.invoke(app, ["demo", "--workdir", str(tmp_path / "one")])
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, ["demo", "--workdir", str(tmp_path / "two")])
    assert second.exit_code == 0, second.output
    assert "tumor-classifier@production -> tumor-classifier/2" in second.stdout
    assert Path.cwd() == cwd
    assert os.environ["CLEW_USER"] == "alice"


def test_demo_refuses_a_non_empty_workdir(tmp_path: Path) -> None:
    repo = tmp_path / "demo" / "tumor-screening"
    repo.mkdir(parents=True)
    (repo / "keep.txt").write_text("mine")
    result = runner.invoke(app, ["demo", "--workdir", str(tmp_path / "demo")])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "not empty" in result.stderr
    assert (repo / "keep.txt").read_text() == "mine"
