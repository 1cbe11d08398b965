"""MLflow registry import: a real MLflow store (SQLite backend, local artifacts) made here by
MLflow's own client, with registered models, versions, an alias, stages, an MLflow 3 logged
model and a version whose files are gone; brought into clew's registry under clew's rules."""

from __future__ import annotations

import collections
import json
import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from server_fixtures import AsUser, RunningServer
from sqlalchemy import func, select
from typer.testing import CliRunner

import clew
from clew.cli.main import app
from clew.errors import InvalidInputError, NotFoundError
from clew.service import audit, record_check
from clew.service.mlflow_import import run_id_for
from clew.service.mlflow_models import MlflowModels
from clew.service.registry import RegistryService
from clew.store import schema
from clew.store.location import Store, open_store

pytest_plugins = ("server_fixtures",)

T0 = 1_760_000_000_000
MlflowStore = tuple[str, dict[str, str]]


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> MlflowStore:
    """churn: v1 (alias champion, then archived), v2 (stage Production), v3 from an MLflow 3
    logged model (stage Staging), v4 whose files are gone; "fraud model": v1."""
    root = tmp_path_factory.mktemp("mlflow-registry")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = mlflow.create_experiment("churn", artifact_location=(root / "a").as_uri())
    runs = {}
    for name, weights in (("lr", b"lr-weights"), ("rf", b"rf-weights")):
        run = mlflow.create_run(experiment, run_name=name, start_time=T0)
        files = root / name
        files.mkdir()
        (files / "MLmodel").write_text(f"flavors: {{}}\nrun: {name}\n")
        (files / "model.pkl").write_bytes(weights)
        mlflow.log_artifacts(run.info.run_id, str(files), "model")
        mlflow.set_terminated(run.info.run_id, "FINISHED", end_time=T0 + 1000)
        runs[name] = run.info.run_id
    lr, rf = runs["lr"], runs["rf"]
    mlflow.create_registered_model("churn", tags={"team": "risk"}, description="who leaves")
    mlflow.create_model_version("churn", f"runs:/{lr}/model", lr, description="baseline")
    mlflow.create_model_version("churn", f"runs:/{rf}/model", rf)
    logged = mlflow.create_logged_model(experiment, name="clf", source_run_id=rf)
    mlflow.log_model_artifacts(logged.model_id, str(root / "rf"))
    mlflow.finalize_logged_model(logged.model_id, "READY")
    mlflow.create_model_version("churn", logged.artifact_location, rf)
    mlflow.create_model_version("churn", f"runs:/{lr}/gone", lr)
    mlflow.set_registered_model_alias("churn", "champion", "1")
    mlflow.transition_model_version_stage("churn", "2", "Production")
    mlflow.transition_model_version_stage("churn", "3", "Staging")
    mlflow.transition_model_version_stage("churn", "1", "Archived")
    mlflow.create_registered_model("fraud model")
    mlflow.create_model_version("fraud model", f"runs:/{lr}/model", lr)
    return uri, {**runs, "logged": logged.model_id}


def rows(store: Store) -> dict[str, int]:
    tables = (schema.models, schema.model_versions, schema.registry_events, schema.artifacts)
    with store.db.read() as connection:
        return {
            table.name: int(connection.execute(select(func.count()).select_from(table)).scalar())
            for table in (*tables, schema.edges, schema.audit_log)
        }


def test_models_versions_aliases_stages_and_logged_models_are_imported(
    as_user: AsUser, mlflow_store: MlflowStore, tmp_path: Path
) -> None:
    uri, ids = mlflow_store
    importer = as_user("ivan", role="approver")
    result = importer.imports.mlflow(uri)
    assert result.versions == {
        "churn/1": "churn/1",
        "churn/2": "churn/2",
        "churn/3": "churn/3",
        "fraud model/1": "fraud-model/1",
    }
    assert (result.versions_imported, result.versions_already, result.logged_models) == (4, 0, 1)
    gone = [text for text in result.skipped if "version 4" in text]
    assert len(gone) == 1 and "has no readable model" in gone[0]
    assert "so it was not registered; restore the files and import again" in gone[0]
    assert sorted(result.aliases) == ["churn@champion → churn/1", "churn@staging → churn/3"]
    assert (
        "alias production of churn → version 2 not set: churn/2 can not become "
        "churn@production: it has 0 of the 1 approval(s) the policy requires; approve churn/2 "
        "then promote it (`clew promote churn/2 production`)."
    ) in result.notes
    assert "MLflow model 'fraud model' is clew model fraud-model." in result.notes

    status = importer.version_status("churn/2")
    assert (status["status"], status["approvals"], status["created_by"]) == ("pending", 0, "ivan")
    assert importer.get_version("churn@champion").version == 1
    assert importer.get_version("churn/1").run_id == run_id_for(ids["lr"])
    assert importer.get_version("churn/3").run_id == run_id_for(ids["rf"])
    assert importer.get_model("churn").description == "who leaves"

    facts = {
        event.version: event.evidence["mlflow"]
        for event in importer.model_history("churn")
        if event.kind == "imported"
    }
    assert sorted(facts) == [1, 2, 3]
    assert facts[1]["stage"] == "Archived" and facts[1]["archived"] is True
    assert facts[2]["stage"] == "Production" and ids["logged"] in facts[3]["source"]
    assert facts[1]["created_at"].startswith("20") and facts[1]["version"] == 1
    assert all(event.actor == "ivan" for event in importer.model_history("churn"))

    loaded = importer.load_model("churn/2")
    assert (Path(loaded.raw) / "model.pkl").read_bytes() == b"rf-weights"
    assert importer.get_version("churn/3").digest == importer.get_version("churn/2").digest
    made = importer.lineage.downstream(f"run:{run_id_for(ids['rf'])}", max_depth=1)
    models = made.far_nodes("model")
    assert sorted(models["name"]) == ["clf", "model"]  # the logged model is version 3's artifact


def test_importing_again_adds_nothing(
    as_user: AsUser, store: Store, mlflow_store: MlflowStore
) -> None:
    uri, _ = mlflow_store
    importer = as_user("ivan", role="approver")
    importer.imports.mlflow(uri)
    before = rows(store)
    again = importer.imports.mlflow(uri)
    assert (again.versions_imported, again.versions_already, again.aliases) == (0, 4, [])
    assert any("alias production of churn" in note for note in again.notes)
    assert rows(store) == before


def test_an_alias_the_policy_reserves_is_recorded_not_set(
    as_user: AsUser, mlflow_store: MlflowStore
) -> None:
    uri, _ = mlflow_store
    as_user("dana", role="admin").set_policy(
        "approvals: {required: 1}\nproduction: {aliases: [production, champion]}\n"
    )
    importer = as_user("ivan", role="approver")
    result = importer.imports.mlflow(uri)
    assert result.aliases == ["churn@staging → churn/3"]
    said = next(note for note in result.notes if "alias champion" in note)
    assert said.startswith("alias champion of churn → version 1 not set: ")
    assert said.endswith("approve churn/1 then promote it (`clew promote churn/1 champion`).")
    with pytest.raises(NotFoundError, match="alias 'champion' of model 'churn'"):
        importer.get_version("churn@champion")
    assert {e.version for e in importer.model_history("churn") if e.kind == "imported"} == {1, 2, 3}


def test_a_contributor_registers_versions_but_moves_no_alias(
    server: RunningServer, mlflow_store: MlflowStore
) -> None:
    """Roles exist only behind a server, so this test runs its own in every mode."""
    uri, _ = mlflow_store
    carl = clew.connect(server.url, token=server.user("carl", role="contributor"))
    result = carl.imports.mlflow(uri)
    assert result.versions_imported == 4 and result.aliases == []
    assert (
        "alias champion of churn → version 1 not set: setting an alias needs the approver role "
        "on churn; an approver can run `clew promote churn/1 champion`."
    ) in result.notes


def test_a_bad_page_is_refused_whole(client: clew.Client, store: Store) -> None:
    before = rows(store)
    artifact = {"name": "model", "digest": "sha256:" + "0" * 64, "size": 1}
    good = {"version": 1, "created_ms": T0, "artifact": artifact}
    service = client._service.mlflow_import
    with pytest.raises(InvalidInputError, match="version #1: version must be a positive integer"):
        page = {"models": [{"name": "churn", "versions": [good, {**good, "version": 0}]}]}
        service.import_models(page, client.actor)
    with pytest.raises(InvalidInputError, match="is not an MLflow run id"):
        bad = {**good, "run_id": "../../etc"}
        service.import_models({"models": [{"name": "churn", "versions": [bad]}]}, client.actor)
    with pytest.raises(InvalidInputError, match="stage 'Live' is unknown"):
        live = {**good, "stage": "Live"}
        service.import_models({"models": [{"name": "churn", "versions": [live]}]}, client.actor)
    assert rows(store) == before


def test_the_cli_names_versions_aliases_and_what_it_could_not_set(
    as_user: AsUser, mlflow_store: MlflowStore
) -> None:
    uri, _ = mlflow_store
    as_user("ivan", role="approver")
    result = CliRunner().invoke(app, ["import", "mlflow", "--tracking-uri", uri])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "registered 4 model versions (1 logged model)" in said
    assert "alias set: churn@staging → churn/3" in said
    assert "not set: alias production of churn → version 2 not set" in said


def test_an_alias_clew_already_set_is_not_moved_and_versions_follow_clews_numbers(
    as_user: AsUser, mlflow_store: MlflowStore, tmp_path: Path
) -> None:
    uri, _ = mlflow_store
    importer = as_user("ivan", role="approver")
    (tmp_path / "weights.bin").write_bytes(b"trained in clew")
    with importer.start_run("churn-in-clew") as run:
        model = run.log_model(tmp_path / "weights.bin", "churn-model")
    importer.register_model(model, "churn")
    importer.promote("churn/1", "champion", new_alias=True)
    result = importer.imports.mlflow(uri)
    assert result.versions["churn/1"] == "churn/2" and result.versions["churn/3"] == "churn/4"
    assert (
        "alias champion of churn → version 2 not set: clew's churn@champion already points at "
        "churn/1 and an import does not move it; to follow MLflow, run "
        "`clew promote churn/2 champion`."
    ) in result.notes
    assert importer.get_version("churn@champion").version == 1
    assert importer.get_version("churn@staging").version == 4


def _import_in_step(barrier: Any, target: str | None, uri: str, results: Any) -> None:
    """One importing process. Every model directory the import records waits at ``barrier``
    first, so the two processes reach each version together: both have looked for it before
    either registers it, which is the race; the real import runs on either side of the wait."""
    record = MlflowModels._model_artifact

    def in_step(self: MlflowModels, *args: Any, **kwargs: Any) -> str:
        barrier.wait(timeout=120)
        return record(self, *args, **kwargs)

    MlflowModels._model_artifact = in_step  # type: ignore[method-assign]
    try:
        client = clew.connect(target)
        done = client.imports.mlflow(uri)
        client.close()
        results.put((done.versions_imported, done.versions_already, done.versions, done.notes))
    except Exception as error:
        barrier.abort()  # the other process stops waiting for this one
        results.put(f"error: {type(error).__name__}: {error}")


@pytest.mark.embedded_only
def test_two_processes_importing_at_once_register_each_version_once(
    mlflow_store: MlflowStore, tmp_path: Path
) -> None:
    """Two processes import the same MLflow store into one clew store at the same instant
    (SQLite here; PostgreSQL + S3 under CLEW_TEST_BACKEND=postgres-s3): each MLflow version
    becomes exactly one clew version with one ``imported`` event, each alias is set once, and
    the audit chain verifies. ``churn`` is in clew already (both processes then register
    into it) and ``fraud-model`` is not (both processes then create it)."""
    uri, _ = mlflow_store
    target = os.environ.get("CLEW_URI") or str(tmp_path / "shared-store")
    store = open_store(target)
    RegistryService(store).create_model("churn", "alice", description="who leaves")
    store.close()
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(2), context.Queue()
    workers = [
        context.Process(target=_import_in_step, args=(barrier, target, uri, results))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    answers = [results.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    store = open_store(target)
    try:
        versions, imported, aliases = _registry_rows(store)
        _, broken = audit.verify_chain(store)
        _, problems = record_check.verify_records(store)
    finally:
        store.close()
    assert versions == {"churn": 3, "fraud-model": 1}
    assert imported == [("churn", 1, 1), ("churn", 2, 2), ("churn", 3, 3), ("fraud-model", 1, 1)]
    assert aliases == {("churn", "champion"): 1, ("churn", "staging"): 1}
    assert broken is None and problems == []
    assert not [answer for answer in answers if isinstance(answer, str)], answers
    assert sum(answer[0] for answer in answers) == 4
    assert sum(answer[1] for answer in answers) == 4
    assert (
        answers[0][2]
        == answers[1][2]
        == {
            "churn/1": "churn/1",
            "churn/2": "churn/2",
            "churn/3": "churn/3",
            "fraud model/1": "fraud-model/1",
        }
    )
    assert not [note for answer in answers for note in answer[3] if "already points" in note]


def _registry_rows(
    store: Store,
) -> tuple[collections.Counter[str], list[tuple[str, int, int]], collections.Counter[Any]]:
    """Versions per model; (model, MLflow version, clew version) of every ``imported`` event;
    alias moves per alias."""
    models, events = schema.models, schema.registry_events
    with store.db.read() as connection:
        names = dict(connection.execute(select(models.c.id, models.c.name)).all())
        versions = connection.execute(select(schema.model_versions.c.model_id)).scalars().all()
        moves = connection.execute(
            select(
                events.c.model_id,
                events.c.kind,
                events.c.version,
                events.c.alias,
                events.c.evidence,
            )
        ).all()
    imported = [
        (names[m], json.loads(evidence)["mlflow"]["version"], version)
        for m, kind, version, _, evidence in moves
        if kind == "imported"
    ]
    return (
        collections.Counter(names[model] for model in versions),
        sorted(imported),
        collections.Counter((names[m], a) for m, kind, _, a, _ in moves if kind == "alias_set"),
    )
