"""The ``clew`` command line for runs, lineage and verify, on real stores and git repos."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from tamper import corrupt_blob
from typer.testing import CliRunner

import clew
from clew.cli.main import app

runner = CliRunner(env={"COLUMNS": "200"})


@dataclass
class Made:
    prep_id: str
    train_id: str
    model_digest: str
    dataset_digest: str


def invoke(*args: str) -> object:
    return runner.invoke(app, list(args))


def assert_one_line_error(result: object, contains: str, exit_code: int = 1) -> None:
    assert result.exit_code == exit_code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert contains in lines[0]
    assert "Traceback" not in result.output


@pytest.fixture
def made(client: clew.Client, git_repo: Path) -> Made:
    """A processing run that produces a dataset and a training run that consumes it."""
    frame = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0], "y": [0, 0, 1, 1]})
    with clew.start_run(experiment="churn", name="prep", kind="processing") as prep:
        prep.log_input(clew.data_source("warehouse://crm/customers", name="customers"))
        dataset = prep.log_output(frame, name="churn-train")
    with clew.start_run(experiment="churn", name="train", kind="training") as run:
        run.log_input(frame, name="churn-train")
        run.log_params({"model": "lr", "C": 1.0})
        run.log_metric("auc", 0.91)
        run.log_metric("loss", float("nan"))
        model = run.log_model(LogisticRegression().fit(frame[["x"]], frame["y"]), name="churn-lr")
    with clew.start_run(experiment="other", name="scratch") as other:
        other.log_metric("auc", 0.5)
    return Made(prep.id, run.id, model.digest, dataset.digest)


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"clew {clew.__version__}"


def test_runs_list_table_and_json(made: Made) -> None:
    table = invoke("runs", "list")
    assert table.exit_code == 0, table.output
    assert made.train_id in table.stdout and made.prep_id in table.stdout

    data = json.loads(invoke("runs", "list", "--format", "json").stdout)
    assert [run["name"] for run in data["runs"]] == ["scratch", "train", "prep"]
    train = data["runs"][1]
    assert set(train) >= {"run_id", "experiment", "kind", "status", "params", "metrics", "tags"}
    assert train["params"] == {"model": "lr", "C": "1.0"}
    assert train["metrics"] == {"auc": 0.91}
    assert train["status"] == "FINISHED"
    assert train["start_time"].endswith("Z")


def test_runs_list_filters_by_experiment_and_limit(made: Made) -> None:
    data = json.loads(invoke("runs", "list", "-e", "churn", "--limit", "1", "-f", "json").stdout)
    assert [run["run_id"] for run in data["runs"]] == [made.train_id]


def test_runs_list_on_an_empty_store(client: clew.Client) -> None:
    result = invoke("runs", "list")
    assert result.exit_code == 0
    assert "no runs found" in result.stdout
    assert json.loads(invoke("runs", "list", "-f", "json").stdout) == {"runs": []}


def test_runs_show_table_has_params_code_and_io(made: Made) -> None:
    result = invoke("runs", "show", made.train_id)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "https://github.com/acme/churn/tree/" in out
    assert "token123" not in out
    for expected in ("churn / train", "auc", "0.91", "scikit-learn", "churn-train", "churn-lr"):
        assert expected in out


def test_runs_show_json_shape(made: Made) -> None:
    result = invoke("runs", "show", f"run:{made.train_id}", "-f", "json")
    data = json.loads(result.stdout)
    assert set(data) == {"run", "code", "environment", "inputs", "outputs"}
    assert data["run"]["id"] == made.train_id
    assert data["run"]["metrics"]["loss"] == "NaN"
    assert data["code"]["permalink"].startswith("https://github.com/acme/churn/tree/")
    assert data["code"]["dirty"] is False
    assert "scikit-learn" in data["environment"]["libraries"]
    assert [(a["type"], a["digest"]) for a in data["inputs"]] == [("dataset", made.dataset_digest)]
    assert [(a["type"], a["name"]) for a in data["outputs"]] == [("model", "churn-lr")]
    assert data["outputs"][0]["digest"] == made.model_digest


def test_runs_show_unknown_run_is_one_line(client: clew.Client) -> None:
    result = invoke("runs", "show", "01J00000000000000000000000")
    assert_one_line_error(result, "01J00000000000000000000000")


def test_runs_search_filters_and_orders(made: Made) -> None:
    result = invoke(
        "runs", "search", "metrics.auc > 0.4", "--order-by", "metrics.auc ASC", "-f", "json"
    )
    assert result.exit_code == 0, result.output
    runs = json.loads(result.stdout)["runs"]
    assert [run["metrics"]["auc"] for run in runs] == [0.5, 0.91]

    table = invoke("runs", "search", "params.model = 'lr'")
    assert made.train_id in table.stdout and made.prep_id not in table.stdout


def test_runs_search_bad_filter_is_one_line(made: Made) -> None:
    assert_one_line_error(invoke("runs", "search", "metrics.auc >"), "filter")
    assert_one_line_error(
        invoke("runs", "search", "metrics.auc > 0", "--order-by", "a b c"), "order_by"
    )


def test_usage_error_exits_2(client: clew.Client) -> None:
    result = invoke("runs", "list", "--limit", "0")
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_lineage_upstream_table_and_json(made: Made) -> None:
    table = invoke("lineage", "model:churn-lr")
    assert table.exit_code == 0, table.output
    assert f"run:{made.train_id}" in table.stdout and "data_source:customers" in table.stdout

    data = json.loads(invoke("lineage", "model:churn-lr", "-f", "json").stdout)
    assert set(data) == {"start", "direction", "truncated", "nodes", "edges"}
    assert data["direction"] == "upstream"
    assert data["start"]["digest"] == made.model_digest
    edge_keys = {"source", "source_type", "association", "destination", "destination_type", "depth"}
    assert all(edge_keys <= set(edge) for edge in data["edges"])
    assert {"data_source", "dataset", "code", "environment"} <= {
        edge["source_type"] for edge in data["edges"]
    }


def test_lineage_downstream_depth_and_type(made: Made) -> None:
    data = json.loads(
        invoke("lineage", "data_source:customers", "--down", "-d", "4", "-f", "json").stdout
    )
    assert data["direction"] == "downstream"
    assert "model" in {edge["destination_type"] for edge in data["edges"]}

    shallow = json.loads(
        invoke("lineage", "data_source:customers", "--down", "-d", "1", "-f", "json").stdout
    )
    assert [edge["destination"] for edge in shallow["edges"]] == [f"run:{made.prep_id}"]

    only_models = json.loads(
        invoke("lineage", "data_source:customers", "--down", "-t", "model", "-f", "json").stdout
    )
    assert {edge["destination_type"] for edge in only_models["edges"]} == {"model"}


def test_lineage_dot(made: Made) -> None:
    result = invoke("lineage", "model:churn-lr", "--format", "dot")
    assert result.exit_code == 0
    dot = result.stdout
    assert dot.startswith("digraph lineage {") and dot.rstrip().endswith("}")
    assert f'"{made.train_id}" [label="training\\ntrain", shape="box"' in dot
    assert 'label="Produced"' in dot and 'label="ContributedTo"' in dot
    assert dot.count("->") == len(clew.lineage.upstream("model:churn-lr").edges)


def test_lineage_errors_are_one_line(made: Made) -> None:
    assert_one_line_error(invoke("lineage", "not a ref"), "use one of")
    assert_one_line_error(invoke("lineage", "dataset:nothing-here"), "nothing-here")
    assert_one_line_error(invoke("lineage", "churn/9"), "churn")


def test_verify_ok(made: Made) -> None:
    result = invoke("verify")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ok:")
    data = json.loads(invoke("verify", "-f", "json").stdout)
    assert data["ok"] is True and data["problems"] == []
    assert data["checked"] >= 3 and data["bytes"] > 0


def test_verify_names_corrupt_and_missing_blobs(made: Made, client: clew.Client) -> None:
    corrupt_blob(client.store.blobs, made.dataset_digest)
    manifest = client.store.blobs.read_manifest(made.model_digest)
    lost = next(iter(manifest.values()))
    client.store.blobs.delete(lost)

    result = invoke("verify")
    assert result.exit_code == 1
    assert made.dataset_digest in result.stdout and lost in result.stdout
    assert result.stderr.strip().startswith("error: 2 of ")

    data = json.loads(invoke("verify", "-f", "json").stdout)
    assert data["ok"] is False
    assert {(p["digest"], p["problem"]) for p in data["problems"]} == {
        (made.dataset_digest, "corrupt"),
        (lost, "missing"),
    }


def test_json_output_is_strict(made: Made) -> None:
    """No bare NaN/Infinity tokens: jq and JavaScript must be able to read every output; the
    run's NaN loss is there, spelled as the string "NaN"."""
    text = invoke("runs", "show", made.train_id, "-f", "json").stdout
    parsed = json.loads(text, parse_constant=lambda token: pytest.fail(f"bare {token}"))
    assert parsed["run"]["metrics"]["loss"] == "NaN"


def test_whole_store_checks_refuse_a_server_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-hashing every blob runs next to the data; the audit commands ask the server
    (tests/test_cli_through_sdk.py), here one that is not there."""
    monkeypatch.setenv("CLEW_URI", "http://127.0.0.1:9")
    assert_one_line_error(invoke("verify"), "run it on the server host")
    for command in (["audit", "verify"], ["audit", "log"]):
        assert_one_line_error(invoke(*command), "did not answer")


def test_artifacts_add_file_and_directory(client: clew.Client, tmp_path: Path) -> None:
    data = tmp_path / "events.csv"
    data.write_text("a,b\n1,2\n3,4\n")
    recorded = json.loads(
        invoke("artifacts", "add", str(data), "--name", "events", "-f", "json").stdout
    )
    assert recorded["digest"] == "sha256:" + hashlib.sha256(data.read_bytes()).hexdigest()
    assert (recorded["type"], recorded["name"], recorded["size"]) == ("dataset", "events", 12)
    assert client.store.blobs.verify(recorded["digest"])

    folder = tmp_path / "report"
    folder.mkdir()
    (folder / "index.html").write_text("<h1>ok</h1>")
    result = invoke("artifacts", "add", str(folder), "--type", "report")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("recorded report:report@sha256:")


def test_artifacts_add_missing_path_is_one_line(client: clew.Client, tmp_path: Path) -> None:
    assert_one_line_error(invoke("artifacts", "add", str(tmp_path / "absent.csv")), "absent.csv")
