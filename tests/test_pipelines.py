"""Pipelines: ``@clew.step`` records inputs, outputs and parameters as lineage; ``clew.pipeline``
groups one execution; a step with the same code, parameters and input digests as an earlier
success is skipped and its outputs reused (read back from the store, digest-checked); a failing
step leaves a FAILED run; ``clew pipeline show`` draws an execution."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from tamper import corrupt_blob
from typer.testing import CliRunner

import clew
from clew.cli.main import app
from clew.client.pipelines import Pipeline
from clew.domain.pipelines import STEP_KEY_TAG, STEP_REUSED_TAG
from clew.errors import IntegrityError, InvalidInputError
from clew.store.location import Store

CALLS: list[str] = []


@clew.step
def prepare(raw: Path, scale: float = 1.0) -> pd.DataFrame:
    CALLS.append("prepare")
    frame = pd.read_csv(raw)
    return frame.assign(x=frame["x"] * scale)


@clew.step(name="train")
def fit(frame: pd.DataFrame, max_iter: int = 100) -> tuple[LogisticRegression, float]:
    CALLS.append("train")
    model = LogisticRegression(max_iter=max_iter).fit(frame[["x"]], frame["y"])
    return model, float(model.score(frame[["x"]], frame["y"]))


@clew.step
def explode(frame: pd.DataFrame) -> None:
    raise RuntimeError("the evaluation data is missing a column")


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    path = tmp_path / "raw.csv"
    pd.DataFrame({"x": [0.1, 0.4, 0.35, 0.8, 0.9, 0.2], "y": [0, 0, 1, 1, 1, 0]}).to_csv(
        path, index=False
    )
    CALLS.clear()
    return path


def execute(raw: Path, scale: float = 1.0, max_iter: int = 100) -> tuple[Pipeline, float]:
    with clew.pipeline("churn") as execution:
        frame = prepare(raw, scale=scale)
        _, accuracy = fit(frame, max_iter=max_iter)
    return execution, accuracy


def test_steps_record_lineage_and_the_pipeline_groups_them(client: clew.Client, raw: Path) -> None:
    execution, accuracy = execute(raw)
    assert CALLS == ["prepare", "train"]
    shown = clew.show_pipeline("churn")
    assert shown.run_id == execution.id and shown.status == "FINISHED"
    assert [step.name for step in shown.steps] == ["prepare", "train"]
    prepared, trained = shown.steps
    assert prepared.params == {"scale": "1.0"}
    assert [node["name"] for node in prepared.inputs] == ["raw.csv"]
    assert [node["name"] for node in prepared.outputs] == ["prepare.output0"]
    # The DataFrame handed from step to step is one node: prepare's output is train's input.
    assert trained.inputs[0]["id"] == prepared.outputs[0]["id"]
    assert [node["type"] for node in trained.outputs] == ["model"]
    assert client.get_run(trained.run_id).parent_id == execution.id
    upstream = client.lineage.upstream(f"artifact:{trained.outputs[0]['id']}").to_pandas()
    assert "raw.csv" in upstream["source_name"].tolist()
    assert 0 <= accuracy <= 1


def test_an_unchanged_step_is_skipped_and_its_outputs_reused(
    client: clew.Client, raw: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first, accuracy = execute(raw)
    CALLS.clear()
    with caplog.at_level(logging.INFO, logger="clew.pipelines"):
        second, again = execute(raw)
    assert CALLS == []
    assert again == accuracy
    assert second.skipped == ["prepare", "train"]
    assert "step prepare skipped" in caplog.text
    earlier = clew.show_pipeline(first.id).steps
    for step, before in zip(clew.show_pipeline(second.id).steps, earlier, strict=True):
        assert step.reused_from == before.run_id and step.status == "FINISHED"
        assert step.outputs == before.outputs and step.key == before.key
        assert client.get_run(step.run_id).tags[STEP_REUSED_TAG] == before.run_id


def test_a_changed_parameter_or_input_runs_the_step_again(client: clew.Client, raw: Path) -> None:
    execute(raw)
    CALLS.clear()
    changed = execute(raw, max_iter=200)[0]
    assert CALLS == ["train"] and changed.skipped == ["prepare"]
    CALLS.clear()
    raw.write_text(raw.read_text() + "0.7,1\n")
    execute(raw, max_iter=200)
    assert CALLS == ["prepare", "train"]


def test_a_failing_step_leaves_a_failed_run_that_is_never_reused(
    client: clew.Client, raw: Path
) -> None:
    with pytest.raises(RuntimeError, match="missing a column"), clew.pipeline("broken") as failed:
        explode(prepare(raw))
    shown = clew.show_pipeline("broken")
    assert shown.status == "FAILED"
    assert [(s.name, s.status) for s in shown.steps] == [
        ("prepare", "FINISHED"),
        ("explode", "FAILED"),
    ]
    assert [node["id"] for node in shown.steps[1].inputs] == [shown.steps[0].outputs[0]["id"]]
    key = client.get_run(shown.steps[1].run_id).tags[STEP_KEY_TAG]
    assert client._service.pipelines.find_cached_step(key) is None
    assert failed.skipped == [] and failed.executed == ["prepare"]


@pytest.mark.tampers
def test_a_damaged_cached_output_is_refused_not_loaded(
    client: clew.Client, raw: Path, store: Store
) -> None:
    first, _ = execute(raw)
    output = clew.show_pipeline(first.id).steps[0].outputs[0]
    corrupt_blob(store.blobs, output["digest"])
    with pytest.raises(IntegrityError, match=output["digest"]):
        execute(raw)


def test_bad_arguments_are_one_sentence(client: clew.Client, raw: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"pass data as a pathlib\.Path"):
        prepare(raw, scale=object())  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="does not exist"):
        prepare(raw.with_name("missing.csv"))
    with pytest.raises(InvalidInputError, match=r"step 'prepare'.*unexpected keyword"):
        prepare(raw, colour="red")  # type: ignore[call-arg]
    with pytest.raises(clew.errors.NotFoundError, match="no pipeline named 'nothing'"):
        clew.show_pipeline("nothing")


def test_pipeline_show_draws_the_tree_and_prints_json(client: clew.Client, raw: Path) -> None:
    execute(raw)
    execute(raw)
    runner = CliRunner(env={"COLUMNS": "200"})
    drawn = runner.invoke(app, ["pipeline", "show", "churn"])
    assert drawn.exit_code == 0, drawn.output
    assert "pipeline churn" in drawn.output and "↺ prepare" in drawn.output
    assert "skipped: reused run" in drawn.output and "← dataset:raw.csv" in drawn.output
    as_json = json.loads(runner.invoke(app, ["pipeline", "show", "churn", "-f", "json"]).output)
    assert [step["skipped"] for step in as_json["steps"]] == [True, True]
    missing = runner.invoke(app, ["pipeline", "show", "nothing"])
    assert missing.exit_code == 1 and "no pipeline named 'nothing'" in missing.output
