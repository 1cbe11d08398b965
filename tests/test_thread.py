"""A thread that connects: a real three-script pipeline in a git repository, each step its own
``python`` process handing files to the next by path (raw CSV → prepare.py → train.py →
register.py), must come out as one lineage thread from the registered version back to the raw
CSV, and each run's code record must name the script that ran."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_git
from fastapi.testclient import TestClient
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

import clew
from clew.cli.main import app
from clew.domain import digests
from clew.domain.records import ArtifactRecord
from clew.domain.trace import FAILED, VERIFIED
from clew.server.ui import create_ui_app
from clew.service.trace import _verify_code
from clew.store.location import Store

PREPARE = """
import pandas as pd
import clew

with clew.start_run(experiment="thread", name="prepare", kind="processing") as run:
    run.log_input("raw.csv")
    frame = pd.read_csv("raw.csv").dropna()
    frame.to_parquet("clean.parquet")
    run.log_output("clean.parquet")
print(run.id)
"""

TRAIN = """
import pandas as pd
from sklearn.linear_model import LogisticRegression
import clew

FEATURES = ["tenure", "charges", "calls", "age"]
with clew.start_run(experiment="thread", name="train") as run:
    run.log_input("clean.parquet")
    run.log_param("target", "churned")
    frame = pd.read_parquet("clean.parquet")
    model = LogisticRegression(max_iter=500).fit(frame[FEATURES], frame["churned"])
    run.log_model(model, name="churn-model")
print(run.id)
"""

FEATURES = ["tenure", "charges", "calls", "age"]

REGISTER = """
import sys
import clew

print(clew.register_model("run:" + sys.argv[1], "churn").version)
"""


def raw_csv() -> str:
    """Customers with an id column the model never sees and one row that prepare drops."""
    lines = ["customer_id,tenure,charges,calls,age,churned"]
    for n in range(40):
        lines.append(f"c{n},{n % 12},{20 + n * 1.5},{n % 5},{25 + n % 30},{n % 2}")
    lines.append("c40,,99.0,1,30,0")
    return "\n".join(lines) + "\n"


def step(repo: Path, script: str, *args: str) -> str:
    """Run one pipeline script as its own process against the test's store (the environment
    already names it: CLEW_HOME, or CLEW_URI for PostgreSQL + S3 and the server)."""
    result = subprocess.run(
        [sys.executable, script, *args],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def run_pipeline(repo: Path) -> tuple[str, str, str]:
    """(prepare run id, train run id, commit): both scripts committed, so the code is clean."""
    (repo / "prepare.py").write_text(textwrap.dedent(PREPARE))
    (repo / "train.py").write_text(textwrap.dedent(TRAIN))
    (repo / "register.py").write_text(textwrap.dedent(REGISTER))
    run_git(repo, "add", "prepare.py", "train.py", "register.py")
    run_git(repo, "commit", "-q", "-m", "pipeline")
    (repo / "raw.csv").write_text(raw_csv())
    prepare_id = step(repo, "prepare.py")
    train_id = step(repo, "train.py")
    assert step(repo, "register.py", train_id) == "1"
    return prepare_id, train_id, run_git(repo, "rev-parse", "HEAD")


def test_files_passed_by_path_make_one_thread_back_to_the_raw_csv(
    client: clew.Client, git_repo: Path
) -> None:
    prepare_id, train_id, _ = run_pipeline(git_repo)
    upstream = client.lineage.upstream("churn/1")
    by_ref = {node.ref: node for node in upstream.nodes.values()}
    assert f"run:{train_id}" in by_ref
    assert f"run:{prepare_id}" in by_ref
    raw = [node for node in upstream.nodes.values() if node.name == "raw.csv"]
    assert [node.type for node in raw] == ["dataset"]
    clean = [node for node in upstream.nodes.values() if node.name == "clean.parquet"]
    assert len(clean) == 1, [node.ref for node in clean]
    edges = {(e.source_id, e.association, e.destination_id) for e in upstream.edges}
    assert (prepare_id, "Produced", clean[0].id) in edges
    assert (clean[0].id, "ContributedTo", train_id) in edges
    assert (raw[0].id, "ContributedTo", prepare_id) in edges
    train_inputs = client._service.artifacts.run_artifacts(train_id)["inputs"]
    assert clean[0].id in {artifact.id for artifact in train_inputs}


def test_each_run_code_record_names_its_own_script(client: clew.Client, git_repo: Path) -> None:
    prepare_id, train_id, commit = run_pipeline(git_repo)
    base = "https://github.com/acme/churn/blob"
    for run_id, script in ((prepare_id, "prepare.py"), (train_id, "train.py")):
        record = client.get_run(run_id)
        assert record.code_artifact_id is not None
        code = client._service.artifacts.get(record.code_artifact_id)
        assert code.properties["script"] == script
        assert code.properties["permalink"] == f"{base}/{commit}/{script}"
        assert code.properties["commit"] == commit
        shown = CliRunner().invoke(app, ["runs", "show", run_id, "--format", "json"])
        assert shown.exit_code == 0, shown.output
        assert json.loads(shown.stdout)["code"]["script"] == script
    assert client.get_run(prepare_id).code_artifact_id != client.get_run(train_id).code_artifact_id


def test_a_dataframe_output_read_back_under_another_name_is_the_same_node(
    client: clew.Client,
) -> None:
    frame = pd.DataFrame({"tenure": [1, 2, 3], "churned": [0, 1, 0]})
    with clew.start_run(experiment="thread", name="features") as producer:
        written = producer.log_output(frame, name="features")
    with clew.start_run(experiment="thread", name="train") as consumer:
        read = consumer.log_input(frame.copy(), name="training-frame", type="feature_set")
    assert read.id == written.id
    assert (read.type, read.name) == ("dataset", "features")
    upstream = client.lineage.upstream(f"run:{consumer.id}")
    assert producer.id in upstream.nodes


def test_a_reference_output_read_back_under_another_type_is_the_same_node(
    client: clew.Client,
) -> None:
    uri = "s3://lake/clean/orders.parquet"
    with clew.start_run(experiment="thread", name="export") as producer:
        written = producer.log_output(uri, name="orders", type="feature_set")
    with clew.start_run(experiment="thread", name="train") as consumer:
        read = consumer.log_input(uri)
    assert read.id == written.id
    assert producer.id in client.lineage.upstream(f"run:{consumer.id}").nodes


def test_a_later_producer_of_the_same_bytes_does_not_take_over_the_thread(
    client: clew.Client, tmp_path: Path
) -> None:
    data = tmp_path / "clean.csv"
    data.write_text("a,b\n1,2\n")
    with clew.start_run(experiment="thread", name="prepare") as first:
        original = first.log_output(data)
    with clew.start_run(experiment="thread", name="copycat") as later:
        later.log_output(data, name="copy.csv")
    with clew.start_run(experiment="thread", name="train") as reader:
        read = reader.log_input(data, name="training.csv")
    assert read.id == original.id
    upstream = client.lineage.upstream(f"run:{reader.id}").nodes
    assert first.id in upstream and later.id not in upstream


def test_empty_files_never_join_unrelated_runs(client: clew.Client, tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with clew.start_run(experiment="thread", name="writer") as writer:
        written = writer.log_output(empty)
    with clew.start_run(experiment="thread", name="reader") as reader:
        read = reader.log_input(empty, name="nothing")
    assert read.id != written.id
    assert writer.id not in client.lineage.upstream(f"run:{reader.id}").nodes


def trained_from_files(client: clew.Client, tmp_path: Path) -> tuple[str, Path]:
    """A training run (in the git repo) on a CSV by path and an S3 data source by reference,
    registered as churn/1; returns the run id and the CSV's path."""
    raw = tmp_path / "raw.csv"
    raw.write_text(raw_csv())
    frame = pd.read_csv(raw).dropna()
    with clew.start_run(experiment="facts", name="train") as run:
        run.log_params({"C": 0.5, "target": "churned"})
        run.log_input(raw)
        run.log_input(clew.data_source("s3://lake/raw/orders/", name="orders"))
        model = LogisticRegression(C=0.5, max_iter=500).fit(frame[FEATURES], frame["churned"])
        run.log_model(model, name="churn-model")
    client.register_model(run, "churn")
    return run.id, raw


def test_lineage_nodes_carry_the_facts_people_ask_for(
    client: clew.Client, git_repo: Path, tmp_path: Path
) -> None:
    run_id, raw = trained_from_files(client, tmp_path)
    commit = run_git(git_repo, "rev-parse", "HEAD")
    upstream = client.lineage.upstream("churn/1")
    data = json.loads(json.dumps(upstream.to_dict()))
    nodes = {(node["type"], node["name"]): node for node in data["nodes"]}
    code = nodes["code", "churn"]["facts"]
    assert code["repository"] == "https://github.com/acme/churn.git"
    assert code["commit"] == commit
    assert code["branch"] == "main"
    assert code["dirty"] is False
    assert code["permalink"].startswith("https://github.com/acme/churn/")
    dataset = nodes["dataset", "raw.csv"]["facts"]
    assert dataset["source_uri"] == raw.resolve().as_uri()
    assert dataset["rows"] == 41
    assert dataset["schema_digest"].startswith("sha256:")
    assert nodes["data_source", "orders"]["facts"]["source_uri"] == "s3://lake/raw/orders/"
    run = nodes["training", "train"]["facts"]
    assert (run["status"], run["user"]) == ("FINISHED", "alice")
    assert run["params"] == {"C": "0.5", "target": "churned"}
    assert data["start"]["facts"]["versions"] == [{"ref": "churn/1", "status": "pending"}]
    frame = upstream.to_pandas()
    into_run = frame[frame.destination_id == run_id].iloc[0]
    assert into_run["destination_facts"]["status"] == "FINISHED"
    shown = CliRunner().invoke(app, ["lineage", "churn/1", "--up", "--format", "json"])
    assert shown.exit_code == 0, shown.output
    printed = {(n["type"], n["name"]): n for n in json.loads(shown.stdout)["nodes"]}
    assert printed["code", "churn"]["facts"]["commit"] == commit
    assert printed["dataset", "raw.csv"]["facts"]["rows"] == 41


@pytest.mark.embedded_only
def test_the_lineage_explorer_shows_node_facts(
    client: clew.Client, store: Store, git_repo: Path, tmp_path: Path
) -> None:
    trained_from_files(client, tmp_path)
    http = TestClient(create_ui_app(store), base_url="http://127.0.0.1")
    response = http.get(
        "/ui/lineage/graph.json", params={"ref": "churn/1", "direction": "upstream"}
    )
    assert response.status_code == 200, response.text
    nodes = {(node["type"], node["name"]): node for node in response.json()["nodes"]}
    assert nodes["code", "churn"]["facts"]["branch"] == "main"
    assert nodes["model", "churn-model"]["facts"]["versions"][0]["status"] == "pending"


def parquet_with_an_index(tmp_path: Path) -> Path:
    """What a shuffled frame's ``to_parquet()`` writes: its index becomes a column."""
    raw = tmp_path / "raw.csv"
    raw.write_text(raw_csv())
    path = tmp_path / "clean.parquet"
    pd.read_csv(raw).dropna().sample(frac=1.0, random_state=0).to_parquet(path)
    return path


def test_the_signature_lists_the_features_the_model_saw(
    client: clew.Client, tmp_path: Path
) -> None:
    clean = parquet_with_an_index(tmp_path)
    frame = pd.read_parquet(clean)
    with clew.start_run(experiment="signature", name="train") as run:
        run.log_param("target", "churned")
        run.log_input(clean)
        model = LogisticRegression(max_iter=500).fit(frame[FEATURES], frame["churned"])
        run.log_model(model, name="churn-model")
    version = client.register_model(run, "churn")
    assert version.signature["inputs"] == [
        {"name": "tenure", "type": "double"},
        {"name": "charges", "type": "double"},
        {"name": "calls", "type": "int64"},
        {"name": "age", "type": "int64"},
    ]
    assert version.signature["outputs"] == [{"name": "churned", "type": "int64"}]


def test_a_model_fitted_on_arrays_gets_positional_inputs_not_data_columns(
    client: clew.Client, tmp_path: Path
) -> None:
    clean = parquet_with_an_index(tmp_path)
    frame = pd.read_parquet(clean)
    with clew.start_run(experiment="signature", name="train") as run:
        run.log_param("target", "churned")
        run.log_input(clean)
        wide = LogisticRegression(max_iter=500).fit(frame[FEATURES].to_numpy(), frame["churned"])
        run.log_model(wide, name="churn-array")
    inputs = client.register_model(run, "churn").signature["inputs"]
    assert len(inputs) == 4
    assert all(column["name"] is None for column in inputs)
    assert "__index_level_0__" not in str(inputs)


@pytest.mark.embedded_only
def test_the_version_page_lists_the_features_the_model_saw(
    client: clew.Client, store: Store, tmp_path: Path
) -> None:
    clean = parquet_with_an_index(tmp_path)
    frame = pd.read_parquet(clean)
    with clew.start_run(experiment="signature", name="train") as run:
        run.log_param("target", "churned")
        run.log_input(clean)
        named = LogisticRegression(max_iter=500).fit(frame[FEATURES], frame["churned"])
        run.log_model(named, name="churn-model")
    client.register_model(run, "churn")
    with clew.start_run(experiment="signature", name="train-arrays") as arrays:
        arrays.log_input(clean)
        unnamed = LogisticRegression(max_iter=500).fit(frame[FEATURES].to_numpy(), frame["churned"])
        arrays.log_model(unnamed, name="churn-array")
    client.register_model(arrays, "churn")
    http = TestClient(create_ui_app(store), base_url="http://127.0.0.1")
    page = http.get("/ui/models/churn/versions/1").text
    signature = page[page.index('<div class="signature">') :]
    signature = signature[: signature.index("</div>")]
    assert re.findall(r'<th scope="row">([^<]*)</th>', signature) == [*FEATURES, "churned"]
    second = http.get("/ui/models/churn/versions/2").text
    assert '<th scope="row">column 3</th>' in second and ">None<" not in second


def test_trace_re_derives_code_records_with_and_without_the_script(
    client: clew.Client, store: Store
) -> None:
    facts = {"commit": "c0ffee", "diff_digest": None, "remote": None, "script": "train.py"}

    def recorded(name: str, digest: str, **changed: str) -> ArtifactRecord:
        return client._service.artifacts.log(
            run_id=None,
            direction="output",
            type_="code",
            name=name,
            digest=digest,
            actor="alice",
            properties={**facts, **changed},
        )

    current = recorded("current", digests.code_digest(facts))
    legacy = recorded("legacy", digests.code_digest(facts, with_script=False))
    moved = recorded("moved", digests.code_digest(facts), script="prepare.py")
    assert _verify_code(store, current).outcome == _verify_code(store, legacy).outcome == VERIFIED
    check = _verify_code(store, moved)
    assert check.outcome == FAILED and moved.digest in check.reason
