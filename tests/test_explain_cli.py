"""``clew explain`` and ``clew bias`` through the SDK's default client."""

from __future__ import annotations

import json
from pathlib import Path

from test_explain import FEATURES, forest, frame
from typer.testing import CliRunner

import clew
from clew.cli.main import app

runner = CliRunner(env={"COLUMNS": "200"})
__all__ = ["forest"]  # the fixture, shared with the SDK tests


def invoke(*args: str) -> object:
    return runner.invoke(app, list(args))


def test_explain_a_version_and_a_prediction_and_measure_bias(
    client: clew.Client, forest: str, tmp_path: Path
) -> None:
    data = tmp_path / "eval.csv"
    frame(seed=6).to_csv(data, index=False)

    explained = invoke("explain", forest, "--data", str(data), "--format", "json")
    assert explained.exit_code == 0, explained.output
    assert {f["feature"] for f in json.loads(explained.stdout)["features"]} == set(FEATURES)

    measured = invoke(
        "bias", forest, str(data), "--target", "target", "-a", "sex", "-a", "age_band"
    )
    assert measured.exit_code == 0, measured.output
    assert "sex: disparate impact" in measured.stdout
    assert [r["kind"] for r in client.version_reports(forest)] == ["bias", "explanation"]

    loaded = client.load_model(forest)
    _, ids = loaded.predict_with_ids(frame(rows=2, seed=7)[FEATURES])
    client.flush_captures()
    local = invoke("explain", ids[0])
    assert local.exit_code == 0, local.output
    assert f"prediction {ids[0]}" in local.stdout and "income" in local.stdout


def test_bad_input_is_one_line_and_exit_1(client: clew.Client, forest: str, tmp_path: Path) -> None:
    data = tmp_path / "eval.csv"
    frame(seed=8).to_csv(data, index=False)
    missing = invoke("bias", forest, str(data), "--target", "target", "-a", "religion")
    assert missing.exit_code == 1
    assert "sensitive attribute 'religion' is not a column" in missing.output
    assert "Traceback" not in missing.output
    no_data = invoke("explain", forest)
    assert no_data.exit_code == 1 and "needs evaluation data; pass --data" in no_data.output
    assert client.version_reports(forest) == []
