"""MLflow import: a real MLflow store (SQLite backend, local artifacts) made here by MLflow's
own client, brought into clew whole, once, with what it cannot bring named."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric
from sqlalchemy import func, select
from typer.testing import CliRunner

import clew
from clew.cli.main import app
from clew.errors import InvalidInputError
from clew.integrations.mlflow_store import require_store
from clew.service.mlflow_import import run_id_for
from clew.store import schema
from clew.store.location import Store

T0 = 1_760_000_000_000


def rows(store: Store) -> dict[str, int]:
    tables = (schema.runs, schema.params, schema.tags, schema.metrics, schema.artifacts)
    with store.db.read() as connection:
        return {
            table.name: int(connection.execute(select(func.count()).select_from(table)).scalar())
            for table in (*tables, schema.edges, schema.audit_log)
        }


MlflowStore = tuple[str, dict[str, str], Path]


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> MlflowStore:
    """One store for the tests that only read it (MLflow takes seconds to create one)."""
    return make_store(tmp_path_factory.mktemp("mlflow"))


@pytest.fixture
def mlflow_store(tmp_path: Path) -> MlflowStore:
    """A store of this test's own, for tests that damage it."""
    return make_store(tmp_path)


def make_store(tmp_path: Path) -> MlflowStore:
    """Two experiments: a finished run with history and two artifacts, a failed run, and a
    deleted run."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    artifacts = tmp_path / "mlartifacts"
    mlflow = MlflowClient(tracking_uri=uri)
    churn = mlflow.create_experiment("churn model", artifact_location=artifacts.as_uri())
    other = mlflow.create_experiment("fraud", artifact_location=artifacts.as_uri())
    ids = {}
    run = mlflow.create_run(churn, run_name="lr-baseline", start_time=T0, tags={"team": "risk"})
    ids["lr"] = run.info.run_id
    history = [Metric("loss", 1.0 / (step + 1), T0 + step * 1000, step) for step in range(20)]
    mlflow.log_batch(run.info.run_id, metrics=[*history, Metric("auc", 0.81, T0 + 5, 0)])
    mlflow.log_param(run.info.run_id, "C", "0.5")
    mlflow.log_param(run.info.run_id, "solver path", "lbfgs")
    (tmp_path / "model.txt").write_text("coefficients: 0.1 0.2\n")
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "roc.csv").write_text("fpr,tpr\n0,0\n1,1\n")
    mlflow.log_artifact(run.info.run_id, str(tmp_path / "model.txt"))
    mlflow.log_artifacts(run.info.run_id, str(tmp_path / "plots"), "plots")
    mlflow.set_terminated(run.info.run_id, "FINISHED", end_time=T0 + 60_000)
    failed = mlflow.create_run(other, run_name="xgb", start_time=T0 + 1)
    ids["xgb"] = failed.info.run_id
    mlflow.log_metric(failed.info.run_id, "auc", float("nan"), T0 + 2, 0)
    mlflow.set_terminated(failed.info.run_id, "FAILED", end_time=T0 + 3)
    deleted = mlflow.create_run(churn, run_name="oops", start_time=T0 + 4)
    ids["deleted"] = deleted.info.run_id
    mlflow.set_terminated(deleted.info.run_id, "FINISHED", end_time=T0 + 5)
    mlflow.delete_run(deleted.info.run_id)
    return uri, ids, artifacts


def test_an_mlflow_store_is_imported_with_histories_and_artifacts(
    client: clew.Client,
    store: Store,
    shared_store: MlflowStore,
    tmp_path: Path,
) -> None:
    uri, ids, _ = shared_store
    result = client.imports.mlflow(uri)
    assert (result.imported, result.already, result.artifacts) == (2, 0, 2)
    assert result.metric_points == 22
    assert len(result.skipped) == 1 and ids["deleted"] in result.skipped[0]
    assert "is deleted in MLflow, so it was not imported" in result.skipped[0]

    run = client.get_run(run_id_for(ids["lr"]))
    assert (run.name, run.status, run.start_ms, run.end_ms) == (
        "lr-baseline",
        "FINISHED",
        T0,
        T0 + 60_000,
    )
    assert run.params == {"C": "0.5", "solver path": "lbfgs"}
    assert run.tags["team"] == "risk"
    assert run.properties["mlflow"]["run_id"] == ids["lr"]
    loss = client.metric_history(run.id, "loss")
    assert loss["step"].tolist() == list(range(20))
    assert loss["value"].tolist() == [1.0 / (step + 1) for step in range(20)]
    stamps = [int(t.timestamp() * 1000) for t in loss["timestamp"]]
    assert stamps == [T0 + step * 1000 for step in range(20)]
    assert run.metrics["loss"] == pytest.approx(1.0 / 20)
    failed = client.get_run(run_id_for(ids["xgb"]))
    assert failed.status == "FAILED" and failed.metrics["auc"] != failed.metrics["auc"]

    outputs = client.lineage.downstream(f"run:{run.id}", max_depth=1).far_nodes("file")
    assert sorted(outputs["name"]) == ["model.txt", "plots-roc.csv"]
    ref = outputs.loc[outputs.name == "model.txt", "ref"].iloc[0]
    exported = client.export_artifact(ref, tmp_path / "back")
    assert Path(exported).read_text() == "coefficients: 0.1 0.2\n"
    experiments = {client.get_run(r).experiment for r in result.runs.values()}
    assert len(experiments) == 2


def test_importing_again_adds_nothing(
    client: clew.Client, store: Store, shared_store: MlflowStore
) -> None:
    uri, _, _ = shared_store
    client.imports.mlflow(uri)
    before = rows(store)
    again = client.imports.mlflow(uri)
    assert (again.imported, again.already, again.metric_points) == (0, 2, 0)
    assert rows(store) == before


def test_a_run_with_a_missing_artifact_is_skipped_in_one_sentence_and_comes_later(
    client: clew.Client, mlflow_store: MlflowStore, tmp_path: Path
) -> None:
    uri, ids, artifacts = mlflow_store
    roc = next(artifacts.rglob("roc.csv"))
    kept = roc.read_bytes()
    roc.unlink()
    roc.symlink_to(tmp_path / "gone-volume" / "roc.csv")  # listed, but its bytes are gone
    result = client.imports.mlflow(uri)
    assert result.imported == 1
    reason = next(text for text in result.skipped if ids["lr"] in text)
    assert "has artifacts under 'plots' that MLflow cannot read" in reason
    assert "roc.csv" in reason and "restore the files and import again" in reason
    roc.unlink()
    roc.write_bytes(kept)
    later = client.imports.mlflow(uri)
    assert (later.imported, later.already, later.artifacts) == (1, 1, 2)


def test_a_bad_page_is_refused_whole(client: clew.Client, store: Store) -> None:
    before = rows(store)
    good = {"run_id": "a" * 32, "experiment": "x", "status": "FINISHED", "start_ms": T0}
    bad = {**good, "run_id": "b" * 32, "metrics": [["loss", "high", 0, T0]]}
    with pytest.raises(InvalidInputError, match="MLflow run #1: metric 'loss' has a value"):
        client._service.mlflow_import.import_runs([good, bad], client.actor)
    with pytest.raises(InvalidInputError, match="is not an MLflow run id"):
        client._service.mlflow_import.import_runs([{**good, "run_id": "../etc"}], client.actor)
    assert rows(store) == before


def test_the_cli_imports_and_names_what_it_skipped(
    client: clew.Client, shared_store: MlflowStore
) -> None:
    uri, _, _ = shared_store
    result = CliRunner().invoke(app, ["import", "mlflow", "--tracking-uri", uri])
    assert result.exit_code == 0, result.output
    assert "imported 2 runs (22 metric points, 2 artifacts)" in result.output
    said = " ".join(result.output.split())  # Rich wraps at the terminal's width
    assert "skipped:" in said and "is deleted in MLflow" in said


@pytest.mark.backend_independent
@pytest.mark.parametrize(
    "uri", ["databricks", "databricks-uc", "databricks://profile", "http://x:5000"]
)
def test_a_tracking_uri_naming_a_service_is_not_taken_for_a_missing_path(uri: str) -> None:
    """``databricks`` has no "://" but names MLflow's hosted service, not a local directory."""
    require_store(uri)


@pytest.mark.parametrize("where", ["sqlite:///{tmp}/typo.db", "{tmp}/no-mlruns", "file://{tmp}/no"])
def test_a_tracking_uri_naming_no_store_is_one_sentence_and_creates_nothing(
    client: clew.Client, tmp_path: Path, where: str
) -> None:
    """MLflow's client creates an empty store where a local URI names none: a typo would
    import nothing and say it had succeeded."""
    uri = where.format(tmp=tmp_path)
    result = CliRunner().invoke(app, ["import", "mlflow", "--tracking-uri", uri])
    assert result.exit_code == 1, result.output
    said = " ".join(result.output.split())
    assert "no MLflow store at " in said and "pass the tracking URI of an existing" in said
    assert "Traceback" not in result.output
    made = {"typo.db", "no-mlruns", "no", "mlruns"} & {path.name for path in tmp_path.iterdir()}
    assert not made
