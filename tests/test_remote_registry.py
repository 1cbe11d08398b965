"""The registry SDK behaves the same on an embedded store and through a clew server.

Each scenario runs twice (``team`` is parametrized): on an embedded store, where users are
``CLEW_USER`` names, and on a real server, where users are API tokens and a claimed
``CLEW_USER`` means nothing. Remote-only tests cover what only a server has: roles and the
signing token an approval needs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from server_fixtures import CLIENTS, RunningServer, serve, server_store
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from tamper import corrupt_blob

import clew
from clew.domain.records import VersionRecord
from clew.errors import (
    AuthenticationError,
    ClewError,
    ConflictError,
    IntegrityError,
    PolicyError,
)
from clew.service import accounts
from clew.service.registry import RegistryService

ROLES = {"alice": "approver", "victor": "approver", "ada": "admin", "vera": "viewer"}
POLICY = """\
roles: {}
approvals:
  required: 1
  separation_of_duties: true
production:
  aliases: [production]
  evidence:
    metrics: ["auc >= 0.8"]
"""


@dataclass
class Team:
    """Clients acting as named users, on one embedded store or one server."""

    monkeypatch: pytest.MonkeyPatch
    server: RunningServer | None = None
    clients: dict[str, clew.Client] = field(default_factory=dict)

    @property
    def remote(self) -> bool:
        return self.server is not None

    def as_user(self, name: str) -> clew.Client:
        """The client acting as ``name``; on a server ``CLEW_USER`` claims someone else."""
        self.monkeypatch.setenv("CLEW_USER", "mallory" if self.remote else name)
        if name not in self.clients:
            self.clients[name] = self._connect(name)
        return self.clients[name]

    def _connect(self, name: str) -> clew.Client:
        if self.server is None:
            return self.clients.get("embedded") or self.clients.setdefault(
                "embedded", clew.Client()
            )
        store = self.server.store
        token = self.server.user(name, ROLES[name])
        signing = accounts.create_token(store, name, actor="admin", purpose="signing").secret
        return clew.Client(self.server.url, token=token, signing_token=signing)

    def close(self) -> None:
        for client in {id(c): c for c in self.clients.values()}.values():
            client.close()


@pytest.fixture(params=CLIENTS)
def team(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Team]:
    if request.param == "embedded":
        team = Team(monkeypatch)
        yield team
        team.close()
        return
    for running in serve(*server_store(tmp_path)):
        team = Team(monkeypatch, running)
        yield team
        team.close()


def train_and_register(client: clew.Client, auc: float = 0.9) -> VersionRecord:
    frame = load_iris(as_frame=True).frame
    features, target = frame.drop(columns="target"), frame["target"]
    with client.start_run("iris", "train", capture_code=False) as run:
        run.log_input(frame, name="iris-train")
        run.log_metric("auc", auc)
        model = LogisticRegression(max_iter=300).fit(features, target)
        artifact = run.log_model(model, name="iris-lr")
    return client.register_model(artifact, "churn", description="iris stand-in")


def test_register_approve_promote_load_rollback_revoke(team: Team) -> None:
    alice = team.as_user("alice")
    first = train_and_register(alice)
    second = train_and_register(alice)
    assert (first.version, second.version, second.created_by) == (1, 2, "alice")

    with pytest.raises(PolicyError, match="'alice' registered churn/1"):
        team.as_user("alice").approve(first, "looks fine to me")

    victor = team.as_user("victor")
    approval = victor.approve("churn/1", "validated on holdout", meaning="reviewed")
    assert (approval.actor, approval.kind, approval.evidence["meaning"]) == (
        "victor",
        "approved",
        "reviewed",
    )
    victor.approve(second, "validated on holdout")
    victor.promote(first, "production", "first release")
    victor.promote("churn/2", "production", "retrained")
    assert victor.get_version("churn@production").version == 2

    loaded = victor.load_model("churn@production")
    assert loaded.version.digest == second.digest
    assert list(loaded.predict(load_iris(as_frame=True).data.head(3))) == [0, 0, 0]

    rollback = victor.rollback("churn", "production", "v2 misbehaves")
    assert (rollback.version, rollback.from_version, rollback.actor) == (1, 2, "victor")
    assert victor.get_version("churn@production").version == 1
    history = victor.alias_history("churn", "production")
    assert list(history["version"]) == [1, 2, 1]
    assert history["kind"].iloc[0] == "alias_rollback"

    victor.revoke("churn/2", "leaks the label")
    with pytest.raises(PolicyError, match="churn/2 was revoked by victor"):
        victor.load_model("churn/2")
    kinds = [event.kind for event in victor.model_history("churn")]
    assert kinds[0] == "revoked" and kinds.count("approved") == 2


def test_version_status_listings_and_alias_at(team: Team) -> None:
    alice = team.as_user("alice")
    version = train_and_register(alice)
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    victor = team.as_user("victor")
    victor.approve(version, "validated")
    victor.promote(version, "production")

    status = victor.version_status("churn@production")
    assert status["approved"] and status["meets_production_policy"]
    assert (status["approved_by"], status["aliases"]) == (["victor"], ["production"])
    assert victor.alias_at("churn", "production", before) is None
    now = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
    assert victor.alias_at("churn", "production", now) == version

    models = victor.list_models()
    assert list(models["name"]) == ["churn"] and models["aliases"].iloc[0] == "production→1"
    versions = victor.model_versions("churn")
    assert list(versions["status"]) == ["approved"]
    assert victor.get_model("churn").last_version == 1

    victor.archive(train_and_register(alice), "superseded before release")
    assert victor.version_status("churn/2")["archived"] is True
    with pytest.raises(ConflictError, match="churn/1 is churn@production"):
        victor.archive(version, "retire")


def test_policy_set_and_get(team: Team) -> None:
    ada = team.as_user("ada")
    assert ada.get_policy()["version"] == 0
    assert ada.set_policy(POLICY) == 1
    stored = ada.get_policy()
    assert (stored["version"], stored["set_by"], stored["document"]) == (1, "ada", POLICY)
    assert stored["rules"]["production"]["evidence"]["metrics"] == ["auc >= 0.8"]

    alice = team.as_user("alice")
    weak = train_and_register(alice, auc=0.5)
    team.as_user("victor").approve(weak, "approved, but the metric gate decides")
    status = team.as_user("victor").version_status(weak)
    assert status["policy_version"] == 1 and not status["meets_production_policy"]
    with pytest.raises(PolicyError, match="auc"):
        team.as_user("victor").promote(weak, "production")


@pytest.fixture
def server_team(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Team]:
    for running in serve(*server_store(tmp_path)):
        team = Team(monkeypatch, running)
        yield team
        team.close()


def test_remote_versions_are_the_servers_records(server_team: Team) -> None:
    """A version read back over HTTP is field-for-field the record the server stored."""
    assert server_team.server is not None
    version = train_and_register(server_team.as_user("alice"))
    assert RegistryService(server_team.server.store).resolve("churn/1") == version
    assert server_team.as_user("vera").get_version(version) == version


def test_a_viewer_approving_gets_403_with_a_clear_message(server_team: Team) -> None:
    train_and_register(server_team.as_user("alice"))
    with pytest.raises(PolicyError) as refused:
        server_team.as_user("vera").approve("churn/1", "I am only a viewer")
    error: ClewError = refused.value
    assert getattr(error, "http_status", None) == 403
    assert "user 'vera' is a viewer on model 'churn'" in str(error)
    assert "approver role" in str(error)


def test_approving_remotely_needs_the_signing_token(
    server_team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert server_team.server is not None
    train_and_register(server_team.as_user("alice"))
    monkeypatch.delenv("CLEW_SIGNING_TOKEN", raising=False)
    token = server_team.server.user("victor", "approver")
    unsigned = clew.Client(server_team.server.url, token=token)
    try:
        with pytest.raises(AuthenticationError, match="signing_token=") as refused:
            unsigned.approve("churn/1", "validated")
        assert str(refused.value).count(". ") == 0
        assert unsigned.version_status("churn/1")["approvals"] == 0
    finally:
        unsigned.close()


def test_a_model_tampered_on_the_server_is_not_loaded(server_team: Team) -> None:
    """The client re-hashes what it downloads; altered bytes never reach the unpickler."""
    assert server_team.server is not None
    store = server_team.server.store
    alice = server_team.as_user("alice")
    version = train_and_register(alice)
    corrupt_blob(store.blobs, store.blobs.read_manifest(version.digest)["model.pkl"])
    with pytest.raises(IntegrityError, match=r"model\.pkl"):
        alice.load_model(version)


def test_trace_and_labels_of_predictions_captured_on_the_servers_store(
    server_team: Team,
) -> None:
    """A serving process on the server's store captures; remote clients trace and label."""
    assert server_team.server is not None
    alice = server_team.as_user("alice")
    version = train_and_register(alice)
    server_team.as_user("victor").approve(version, "validated")
    on_server = clew.Client(server_team.server.store.uri)
    try:
        _, prediction_ids = on_server.load_model("churn/1").predict_with_ids(
            load_iris(as_frame=True).data.head(2)
        )
        on_server.flush_captures()
        public_key = on_server.public_key()
    finally:
        on_server.close()

    trace = alice.trace(prediction_ids[1])
    assert trace.prediction_id == prediction_ids[1]
    assert [trace.step(kind).verified for kind in ("prediction", "model_version", "approvals")] == [
        True,
        True,
        True,
    ]
    assert "approved by victor" in str(trace)
    assert "no code revision was captured" in trace.step("training_run").reason
    assert alice.log_labels(list(prediction_ids), [0, 1]) == 2
    assert alice.get_labels(list(prediction_ids)) == {prediction_ids[0]: 0, prediction_ids[1]: 1}
    assert alice.public_key() == public_key


def test_a_remote_client_captures_through_the_server(server_team: Team) -> None:
    alice = server_team.as_user("alice")
    version = train_and_register(alice)
    loaded = alice.load_model(version)
    loaded.predict(load_iris(as_frame=True).data.head(2))
    assert loaded.capture is True
    assert alice.flush_captures()["captured"] == 2
    assert alice.get_prediction(f"{loaded.last_prediction_ids.call}.1").verified
