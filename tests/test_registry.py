"""Registered models and versions: registration sources, signatures, metrics snapshots,
resolution, listings, and unique gapless version numbers under real concurrent processes.

The helpers at the top are shared by the other governance test modules
(test_approvals.py, test_promotion.py, test_policy.py).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from server_fixtures import AsUser
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import clew
from clew.domain.records import ArtifactRecord
from clew.errors import (
    ConflictError,
    InvalidInputError,
    InvalidRefError,
    NameConflictError,
    NotFoundError,
)
from clew.service import audit
from clew.store.location import Store


def iris_frame() -> pd.DataFrame:
    return load_iris(as_frame=True).frame


def frame_rows(frame: pd.DataFrame) -> list[dict[str, object]]:
    """A frame's rows as dicts with None where pandas holds NaN/NA: what the SDK's
    ``*_records`` call beside each DataFrame call returns."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def train(
    client: clew.Client,
    *,
    auc: float = 0.91,
    model_name: str = "iris-lr",
    reports: tuple[str, ...] = (),
    max_iter: int = 200,
) -> tuple[str, ArtifactRecord]:
    """A real training run (as the current CLEW_USER) that logs data, a metric and a model."""
    frame = iris_frame()
    with client.start_run("iris", "train", capture_code=False) as run:
        run.log_param("target", "target")
        run.log_input(frame, name="iris-train")
        model = LogisticRegression(max_iter=max_iter).fit(
            frame.drop(columns="target"), frame["target"]
        )
        run.log_metric("auc", auc)
        for report in reports:
            run.log_output(frame.describe(), name=report, type="report")
        artifact = run.log_model(model, name=model_name)
    return run.id, artifact


# --- registration -----------------------------------------------------------------------------


def test_register_from_artifact_records_digest_run_metrics_and_signature(
    client: clew.Client,
) -> None:
    run_id, artifact = train(client, auc=0.93)

    version = clew.register_model(artifact, "iris", description="first cut")

    assert (version.name, version.version, version.ref) == ("iris", 1, "iris/1")
    assert version.digest == artifact.digest
    assert version.artifact_id == artifact.id
    assert version.run_id == run_id
    assert version.metrics == {"auc": 0.93}
    assert version.created_by == "alice"
    assert version.description == "first cut"
    inputs = {column["name"] for column in version.signature["inputs"]}
    assert inputs == set(iris_frame().columns) - {"target"}
    assert version.signature["outputs"] == [{"name": "target", "type": "int64"}]
    assert version.signature["inferred_from"].startswith("dataset:iris-train@sha256:")
    assert client.get_model("iris").owner == "alice"


def test_register_from_active_run_flushes_metrics_first(client: clew.Client) -> None:
    frame = iris_frame()
    with client.start_run("iris", "train", capture_code=False) as run:
        model = LogisticRegression(max_iter=200).fit(frame.drop(columns="target"), frame.target)
        run.log_model(model, name="iris-lr")
        run.log_metric("accuracy", 0.97)
        version = client.register_model(run, "iris")
    assert version.metrics == {"accuracy": 0.97}
    assert version.run_id == run.id


def test_register_from_run_id_and_from_artifact_ref(client: clew.Client) -> None:
    run_id, artifact = train(client)

    by_id = client.register_model(run_id, "iris")
    by_run_ref = client.register_model(f"run:{run_id}", "iris")
    by_name = client.register_model("model:iris-lr", "iris")

    assert [by_id.version, by_run_ref.version, by_name.version] == [1, 2, 3]
    assert {by_id.digest, by_run_ref.digest, by_name.digest} == {artifact.digest}
    assert {by_id.run_id, by_run_ref.run_id, by_name.run_id} == {run_id}


def test_explicit_signature_wins_over_inference(client: clew.Client) -> None:
    _, artifact = train(client)
    signature = {"inputs": [{"name": "x", "type": "double"}], "outputs": []}
    version = client.register_model(artifact, "iris", signature=signature)
    assert version.signature == signature
    assert client.get_version("iris/1").signature == signature


def test_signature_is_empty_without_training_data(client: clew.Client, tmp_path: Path) -> None:
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"\x00\x01")
    with client.start_run("raw", capture_code=False) as run:
        artifact = run.log_model(weights, name="weights")
    assert client.register_model(artifact, "raw").signature == {}


def test_versions_are_immutable_records_of_one_artifact(client: clew.Client) -> None:
    _, artifact = train(client)
    first = client.register_model(artifact, "iris")
    client.register_model(artifact, "iris")
    assert client.get_version("iris/1") == first
    assert client.get_model("iris").last_version == 2


def test_register_refuses_a_dataset_artifact(client: clew.Client) -> None:
    with client.start_run("iris", capture_code=False) as run:
        dataset = run.log_input(iris_frame(), name="iris-train")
    with pytest.raises(InvalidInputError, match="is a dataset, not a model"):
        client.register_model(dataset, "iris")
    with pytest.raises(NotFoundError):
        client.get_model("iris")


def test_register_refuses_a_run_without_a_model(client: clew.Client) -> None:
    with client.start_run("iris", capture_code=False) as run:
        run.log_metric("auc", 0.5)
    with pytest.raises(InvalidInputError, match="logged no model"):
        client.register_model(run.id, "iris")


def test_register_refuses_a_run_with_two_models(client: clew.Client, tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(b"a")
    (tmp_path / "b.bin").write_bytes(b"b")
    with client.start_run("iris", capture_code=False) as run:
        run.log_model(tmp_path / "a.bin", name="model-a")
        run.log_model(tmp_path / "b.bin", name="model-b")
    with pytest.raises(InvalidInputError, match=r"2 models \(model-a, model-b\)"):
        client.register_model(run, "iris")


def test_register_refuses_unknown_sources(client: clew.Client) -> None:
    with pytest.raises(NotFoundError):
        client.register_model("run:01ARZ3NDEKTSV4RRFFQ69G5FAV", "iris")
    with pytest.raises(InvalidInputError, match="cannot be registered"):
        client.register_model("experiment:iris", "iris")
    with pytest.raises(InvalidInputError, match="cannot register a int"):
        client.register_model(3, "iris")  # type: ignore[arg-type]


def test_register_refuses_a_bad_model_name(client: clew.Client) -> None:
    _, artifact = train(client)
    with pytest.raises(InvalidRefError, match="model name"):
        client.register_model(artifact, "no spaces/please")


# --- models ------------------------------------------------------------------------------------


def test_create_model_records_attributes_and_refuses_a_duplicate(
    client: clew.Client, store: Store
) -> None:
    model = client.create_model(
        "churn",
        owner="risk-team",
        description="who leaves",
        risk_tier="high",
        tags={"bu": "retail"},
    )
    assert (model.owner, model.risk_tier, model.tags, model.last_version) == (
        "risk-team",
        "high",
        {"bu": "retail"},
        0,
    )
    with pytest.raises(ConflictError, match="already exists"):
        client.create_model("churn")
    assert [entry.action for entry in audit.entries(store, target="model:churn")] == [
        "model.create"
    ]


def test_look_alike_model_names_are_refused_naming_the_existing_model(
    client: clew.Client,
) -> None:
    """``churn``, ``Churn`` and ``CHURN`` are one name: the first one registered wins."""
    _, artifact = train(client)
    client.register_model(artifact, "churn")
    for look_alike in ("Churn", "CHURN"):
        with pytest.raises(NameConflictError, match="the existing model 'churn'") as refused:
            client.register_model(artifact, look_alike)
        assert refused.value.http_status == 409 and refused.value.code == "name_conflict"
        with pytest.raises(NameConflictError, match="use 'churn'"):
            client.create_model(look_alike)
    assert list(client.list_models()["name"]) == ["churn"]
    assert client.register_model(artifact, "churn").ref == "churn/2"
    with pytest.raises(NotFoundError):
        client.get_model("Churn")


def test_register_with_contradicting_model_attributes_is_refused(client: clew.Client) -> None:
    _, artifact = train(client)
    client.register_model(artifact, "iris", owner="team-a", risk_tier="low")
    client.register_model(artifact, "iris", owner="team-a")
    with pytest.raises(ConflictError, match="already has owner 'team-a', not 'team-b'"):
        client.register_model(artifact, "iris", owner="team-b")
    assert client.get_model("iris").last_version == 2


# --- resolution ------------------------------------------------------------------------------


def test_get_version_by_number_and_alias(client: clew.Client, monkeypatch) -> None:
    _, artifact = train(client)
    client.register_model(artifact, "iris")
    second = client.register_model(artifact, "iris")
    client.promote("iris/2", "staging", new_alias=True)
    assert client.get_version("iris/2") == second
    assert client.get_version("iris@staging") == second
    assert client.get_version(second) == second


def test_resolution_sees_moves_made_by_another_client(client: clew.Client) -> None:
    _, artifact = train(client)
    client.register_model(artifact, "iris")
    client.register_model(artifact, "iris")
    client.promote("iris/1", "staging", new_alias=True)
    assert client.get_version("iris@staging").version == 1

    other = clew.Client()  # the same store, from CLEW_HOME / CLEW_URI
    try:
        other.promote("iris/2", "staging")
    finally:
        other.close()

    assert client.get_version("iris@staging").version == 2


def test_resolution_errors_name_the_fix(client: clew.Client) -> None:
    _, artifact = train(client)
    client.register_model(artifact, "iris")
    with pytest.raises(NotFoundError, match="has no version 7"):
        client.get_version("iris/7")
    with pytest.raises(NotFoundError, match="points at no version; promote one"):
        client.get_version("iris@production")
    with pytest.raises(NotFoundError, match="'nope' is not registered"):
        client.get_version("nope@production")
    with pytest.raises(InvalidInputError, match="is not a model ref"):
        client.get_version("run:01ARZ3NDEKTSV4RRFFQ69G5FAV")
    with pytest.raises(InvalidRefError):
        client.get_version("iris/0")


# --- listings ----------------------------------------------------------------------------------


def test_list_models_shows_latest_version_status_and_aliases(
    client: clew.Client, as_user: AsUser
) -> None:
    assert list(client.list_models().columns) == [
        "name",
        "owner",
        "risk_tier",
        "latest_version",
        "status",
        "aliases",
        "description",
    ]
    _, artifact = train(client)
    client.create_model("empty")
    client.register_model(artifact, "iris", risk_tier="medium")
    client.register_model(artifact, "iris")
    client = as_user("bob")
    client.approve("iris/1", "validated on holdout")
    client.promote("iris/1", "production")

    frame = client.list_models().set_index("name")

    assert frame.loc["iris", "latest_version"] == 2
    assert frame.loc["iris", "status"] == "pending"
    assert frame.loc["iris", "aliases"] == "production→1"
    assert frame.loc["iris", "risk_tier"] == "medium"
    assert pd.isna(frame.loc["empty", "status"])
    assert pd.isna(frame.loc["empty", "latest_version"])
    assert client.list_model_records() == frame_rows(client.list_models())


def test_model_versions_newest_first_with_status(client: clew.Client, as_user: AsUser) -> None:
    _, artifact = train(client)
    for _ in range(3):
        client.register_model(artifact, "iris")
    client = as_user("bob")
    client.approve("iris/1", "ok")
    client.reject("iris/2", "leaks the label")
    client.promote("iris/1", "production")

    frame = client.model_versions("iris")

    assert frame["version"].tolist() == [3, 2, 1]
    assert frame["status"].tolist() == ["pending", "rejected", "approved"]
    assert frame["aliases"].tolist() == [[], [], ["production"]]
    assert frame["approvals"].tolist() == [0, 0, 1]
    assert (frame["created_by"] == "alice").all()
    assert client.model_version_records("iris") == frame_rows(frame)


def test_registration_appears_in_lineage_and_audit(client: clew.Client, store: Store) -> None:
    _, artifact = train(client)
    client.register_model(artifact, "iris")
    upstream = client.lineage.upstream("iris/1").to_pandas()
    assert "Produced" in set(upstream["association"])
    assert [e.action for e in audit.entries(store, target="iris/1")] == ["model.register"]
    assert client.model_history("iris")[0].kind == "registered"


# --- concurrency -------------------------------------------------------------------------------


def _register_many(artifact_id: str, count: int, environment: dict[str, str]) -> None:
    import os

    os.environ.update(environment)
    worker = clew.Client()  # the same store, from the inherited CLEW_HOME / CLEW_URI
    try:
        for _ in range(count):
            worker.register_model(f"artifact:{artifact_id}", "race")
    finally:
        worker.close()


def test_two_processes_registering_at_once_get_unique_gapless_numbers(
    client: clew.Client, store: Store, env_as: Callable[..., dict[str, str]]
) -> None:
    _, artifact = train(client)
    # fork, not spawn: a spawned child re-imports scikit-learn and pandas, which is slow on a
    # busy machine; the store drops inherited SQLite connections in forked children.
    context = multiprocessing.get_context("fork")
    environments = [env_as(f"user{i}", "contributor") for i in range(2)]
    workers = [
        context.Process(target=_register_many, args=(artifact.id, 20, environment))
        for environment in environments
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0

    numbers = sorted(client.model_versions("race")["version"])
    assert numbers == list(range(1, 41))
    creators = client.model_versions("race")["created_by"].value_counts().to_dict()
    assert creators == {"user0": 20, "user1": 20}
    checked, broken = audit.verify_chain(store)
    assert broken is None and checked > 40
