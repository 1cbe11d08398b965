"""Promotion, rollback, alias history, "what was in production at time T", and loading."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import REMOTE
from server_fixtures import AsUser
from test_registry import frame_rows, iris_frame, train

import clew
from clew.errors import ConflictError, IntegrityError, PolicyError, UnknownAliasError
from clew.service import audit
from clew.service.artifacts import ArtifactService
from clew.store.location import Store


@pytest.fixture
def three(client: clew.Client, as_user: AsUser) -> clew.Client:
    """iris/1..3 registered by alice, all approved by bob; the current user is bob."""
    _, artifact = train(client)
    for _ in range(3):
        client.register_model(artifact, "iris")
    client = as_user("bob")
    for number in (1, 2, 3):
        client.approve(f"iris/{number}", "validated")
    return client


def test_production_needs_an_approved_version(client: clew.Client, as_user: AsUser) -> None:
    _, artifact = train(client)
    client.register_model(artifact, "iris")
    with pytest.raises(PolicyError, match="has 0 of the 1 approval"):
        client.promote("iris/1", "production")
    staged = client.promote("iris/1", "staging", "try it", new_alias=True)
    assert (staged.kind, staged.alias, staged.version, staged.from_version) == (
        "alias_set",
        "staging",
        1,
        None,
    )
    client = as_user("bob")
    client.approve("iris/1", "ok")
    assert client.promote("iris@staging", "production").version == 1
    assert client.get_version("iris@production").version == 1


def test_promotion_records_who_when_why_from_and_to(three: clew.Client, store: Store) -> None:
    three.promote("iris/1", "production", "launch")
    event = three.promote("iris/2", "production", "better recall")
    assert (event.actor, event.comment, event.from_version, event.version) == (
        "bob",
        "better recall",
        1,
        2,
    )
    assert event.evidence["policy_version"] == 0
    entries = audit.entries(store, target="iris@production")
    assert [entry.action for entry in entries] == ["model.alias_set", "model.alias_set"]


def test_promoting_to_the_current_version_is_refused(three: clew.Client) -> None:
    three.promote("iris/1", "production")
    with pytest.raises(ConflictError, match="already points at iris/1"):
        three.promote("iris/1", "production")


@pytest.mark.parametrize("decision", ["reject", "revoke", "archive"])
def test_closed_versions_can_not_be_promoted_anywhere(three: clew.Client, decision: str) -> None:
    getattr(three, decision)("iris/3", "closing it")
    for alias in ("production", "champion"):
        with pytest.raises(ConflictError, match=f"iris/3 was {decision}"):
            three.promote("iris/3", alias)
    assert three.alias_history("iris").empty


def test_rollback_walks_back_through_history(three: clew.Client) -> None:
    for number in (1, 2, 3):
        three.promote(f"iris/{number}", "production", f"ship {number}")

    first = three.rollback("iris", "production", "v3 regressed")
    assert (first.kind, first.version, first.from_version, first.comment) == (
        "alias_rollback",
        2,
        3,
        "v3 regressed",
    )
    assert three.get_version("iris@production").version == 2
    assert three.rollback("iris", "production").version == 1
    with pytest.raises(ConflictError, match="no earlier version to roll back to"):
        three.rollback("iris", "production")
    assert three.get_version("iris@production").version == 1

    history = three.alias_history("iris", "production")
    assert history["version"].tolist() == [1, 2, 3, 2, 1]
    assert history["kind"].tolist() == ["alias_rollback"] * 2 + ["alias_set"] * 3
    assert history["from_version"].tolist()[:2] == [2, 3]
    assert history["time"].is_monotonic_decreasing
    records = three.alias_history_records("iris", "production")
    assert records == frame_rows(history)
    assert [row["from_version"] for row in records] == [2, 3, 2, 1, None]


def test_rollback_after_a_new_promotion_returns_to_the_one_before(three: clew.Client) -> None:
    three.promote("iris/1", "production")
    three.promote("iris/2", "production")
    three.rollback("iris", "production")
    three.promote("iris/3", "production")
    assert three.rollback("iris", "production").version == 1


def test_rollback_with_no_history_is_refused(three: clew.Client) -> None:
    with pytest.raises(ConflictError, match="no earlier version"):
        three.rollback("iris", "production")
    three.promote("iris/1", "production")
    with pytest.raises(ConflictError, match="iris@production has no earlier version"):
        three.rollback("iris", "production")
    assert three.get_version("iris@production").version == 1


def test_rollback_refuses_a_revoked_previous_version(three: clew.Client) -> None:
    three.promote("iris/1", "production")
    three.promote("iris/2", "production")
    three.revoke("iris/1", "bias found")
    with pytest.raises(ConflictError, match="cannot roll iris@production back to iris/1"):
        three.rollback("iris", "production")
    assert three.get_version("iris@production").version == 2


def test_alias_at_answers_what_was_in_production_at_time_t(three: clew.Client) -> None:
    before = dt.datetime.now(dt.UTC)
    time.sleep(0.005)
    three.promote("iris/1", "production")
    time.sleep(0.005)
    during_one = dt.datetime.now(dt.UTC)
    time.sleep(0.005)
    three.promote("iris/2", "production")
    time.sleep(0.005)
    during_two = dt.datetime.now(dt.UTC)
    time.sleep(0.005)
    three.rollback("iris", "production")

    assert three.alias_at("iris", "production", before) is None
    assert three.alias_at("iris", "production", during_one).version == 1
    assert three.alias_at("iris", "production", during_two).version == 2
    assert three.alias_at("iris", "production", dt.datetime.now(dt.UTC)).version == 1
    assert three.alias_at("iris", "staging", dt.datetime.now(dt.UTC)) is None


def test_aliases_are_independent(three: clew.Client) -> None:
    three.promote("iris/1", "champion", new_alias=True)
    three.promote("iris/2", "challenger", new_alias=True)
    three.promote("iris/3", "champion")
    assert three.get_version("iris@champion").version == 3
    assert three.get_version("iris@challenger").version == 2
    assert three.alias_history("iris")["alias"].tolist() == ["champion", "challenger", "champion"]
    assert three.version_status("iris/2")["aliases"] == ["challenger"]


def test_history_is_newest_first_and_never_rewritten(three: clew.Client) -> None:
    three.promote("iris/1", "production")
    snapshot = three.model_history("iris")
    three.promote("iris/2", "production")
    three.rollback("iris", "production")
    history = three.model_history("iris")
    assert history[2:] == snapshot
    assert [event.id for event in history] == sorted((e.id for e in history), reverse=True)


# --- loading ------------------------------------------------------------------------------------


def test_load_model_returns_the_verified_model_with_its_version(three: clew.Client) -> None:
    three.promote("iris/2", "production")
    loaded = clew.load_model("iris@production")
    assert loaded.version.ref == "iris/2"
    features = iris_frame().drop(columns="target")
    predictions = loaded.predict(features)
    assert predictions.shape == (150,)
    assert set(np.unique(predictions)) <= {0, 1, 2}
    assert clew.load_model("iris/1").version.version == 1


def _tamper(store: Store, digest: str, change: Callable[[bytes], bytes]) -> None:
    """Rewrite a stored blob in place, behind clew's back (local directory or object store)."""
    blobs = store.blobs
    if hasattr(blobs, "key_for"):
        key = blobs.key_for(digest)
        blobs.fs.pipe(key, change(blobs.fs.cat(key)))
        return
    path = blobs.path_for(digest)
    path.chmod(0o644)
    path.write_bytes(change(path.read_bytes()))


def test_load_refuses_a_tampered_model_file_and_names_its_digest(
    three: clew.Client, store: Store
) -> None:
    version = three.get_version("iris/1")
    manifest = three.store.blobs.read_manifest(version.digest)
    pickle_digest = manifest["model.pkl"]
    _tamper(store, pickle_digest, lambda data: data + b"tampered")

    with pytest.raises(IntegrityError) as raised:
        three.load_model("iris/1")

    message = str(raised.value)
    assert "iris/1" in message
    assert f"model.pkl ({pickle_digest})" in message


def test_load_refuses_a_tampered_manifest(three: clew.Client, store: Store) -> None:
    version = three.get_version("iris/1")
    _tamper(store, version.digest, lambda data: data.replace(b"model.pkl", b"evil.pkl"))
    with pytest.raises(IntegrityError, match=f"its manifest {version.digest}"):
        three.load_model("iris/1")


# --- production evidence and roles (policy-driven) ----------------------------------------------


def test_production_requires_the_policy_evidence(client: clew.Client, as_user: AsUser) -> None:
    client.set_policy(
        """
roles: {approver: [bob], release: [dana]}
approvals: {roles: [approver], required: 1}
production:
  aliases: [production, live]
  roles: [release]
  evidence: {metrics: ["auc >= 0.9", "metrics.accuracy > 0.5"], reports: [model_card]}
"""
    )
    _, weak = train(client, auc=0.7, model_name="weak")
    _, strong = train(client, auc=0.95, model_name="strong", reports=("model_card",))
    client.register_model(weak, "iris")
    client.register_model(strong, "iris")
    client = as_user("bob")
    client.approve("iris/1", "ok")
    client.approve("iris/2", "ok")
    client = as_user("dana")

    with pytest.raises(PolicyError) as raised:
        client.promote("iris/1", "live")
    message = str(raised.value)
    assert "metric auc = 0.7 does not satisfy auc >= 0.9" in message
    assert "metric 'accuracy' is missing" in message
    assert "required report 'model_card' is missing" in message
    status = client.version_status("iris/1")
    assert status["meets_production_policy"] is False
    assert len(status["reasons"]) == 3

    with pytest.raises(PolicyError, match="accuracy"):
        client.promote("iris/2", "production")


def test_reports_count_from_lineage_or_approval_evidence(
    client: clew.Client, as_user: AsUser, store: Store
) -> None:
    client.set_policy("production: {evidence: {reports: [model_card, fairness, calibration]}}")
    _, artifact = train(client)
    version = client.register_model(artifact, "iris")
    with client.start_run("iris", "evaluate", kind="evaluation", capture_code=False) as run:
        # an evaluation run that consumed the model artifact and wrote a report
        ArtifactService(store).log(
            run_id=run.id,
            direction="input",
            type_="model",
            name=artifact.name,
            digest=artifact.digest,
            actor="alice",
        )
        run.log_output(iris_frame().describe(), name="model_card", type="report")
    with client.start_run("iris", "calibrate", capture_code=False) as run:
        # a report derived from the model artifact itself
        run.log_output(
            iris_frame().tail(), name="calibration", type="report", derived_from=[artifact]
        )
    client = as_user("bob")
    with client.start_run("review", capture_code=False) as run:
        fairness = run.log_output(iris_frame().head(), name="fairness", type="report")
    assert client.version_status(version)["reasons"] == [
        "it has 0 of the 1 approval(s) the policy requires",
        "required report 'fairness' is missing (log it as a report from the training or an "
        "evaluation run, or attach it as approval evidence)",
    ]
    client.approve(version, "fairness reviewed", evidence=fairness)
    assert client.version_status(version)["meets_production_policy"] is True
    assert client.promote(version, "production").version == 1


def test_only_the_release_role_moves_production(client: clew.Client, as_user: AsUser) -> None:
    client.set_policy("roles: {release: [dana]}\nproduction: {roles: [release]}")
    _, artifact = train(client)
    client.register_model(artifact, "iris")
    client.register_model(artifact, "iris")
    client = as_user("bob")
    client.approve("iris/1", "ok")
    client.approve("iris/2", "ok")
    with pytest.raises(PolicyError, match="'bob' may not move iris@production"):
        client.promote("iris/1", "production")
    client.promote("iris/1", "staging", new_alias=True)  # other aliases: open to anyone
    client = as_user("dana")
    client.promote("iris/1", "production")
    client.promote("iris/2", "production")
    client = as_user("bob")
    with pytest.raises(PolicyError, match="may not move iris@production"):
        client.rollback("iris", "production")
    assert client.get_version("iris@production").version == 2


def test_two_approvals_when_the_policy_says_so(client: clew.Client, as_user: AsUser) -> None:
    client.set_policy("approvals: {required: 2}")
    _, artifact = train(client)
    client.register_model(artifact, "iris")
    client = as_user("bob")
    client.approve("iris/1", "ok")
    assert client.version_status("iris/1")["status"] == "pending"
    with pytest.raises(PolicyError, match="1 of the 2 approval"):
        client.promote("iris/1", "production")
    client = as_user("carol")
    client.approve("iris/1", "ok too")
    assert client.promote("iris/1", "production").version == 1


# --- order from the store, not from clocks ----------------------------------------------------

AN_HOUR_BEHIND = """
import time
_behind_ns = 3600 * 1_000_000_000
_time_ns, _time = time.time_ns, time.time
time.time_ns = lambda: _time_ns() - _behind_ns
time.time = lambda: _time() - _behind_ns / 1e9
"""


def run_an_hour_behind(
    tmp_path: Path, request: pytest.FixtureRequest, user: str, code: str
) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh Python whose clock is an hour behind, as on a colleague's badly set
    laptop: a sitecustomize shifts ``time.time``/``time.time_ns`` before clew is imported."""
    site = tmp_path / "clock-an-hour-behind"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(AN_HOUR_BEHIND)
    paths = [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "CLEW_USER": user}
    if REMOTE:
        server = request.getfixturevalue("remote_server")
        environment["CLEW_TOKEN"] = server.tokens[user]
        environment["CLEW_SIGNING_TOKEN"] = server.signing[user]
    return subprocess.run(
        [sys.executable, "-c", code],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,  # the old code slept an hour here, holding the write lock
        check=False,
    )


def test_a_promote_from_a_clock_an_hour_behind_neither_waits_nor_goes_back_in_time(
    client: clew.Client, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    _, artifact = train(client)
    for _ in range(2):
        client.register_model(artifact, "iris")
    client.promote("iris/1", "staging", "first", new_alias=True)
    done = run_an_hour_behind(
        tmp_path,
        request,
        "alice",
        "import time, clew\n"
        "print(time.time_ns() // 1_000_000)\n"
        "print(clew.promote('iris/2', 'staging', 'from a slow clock').version)",
    )
    assert done.returncode == 0, done.stderr
    skewed_ms, promoted = map(int, done.stdout.split())
    moves = client.model_history("iris")
    assert promoted == 2 and [(m.kind, m.version) for m in moves[:2]] == [
        ("alias_set", 2),
        ("alias_set", 1),
    ]
    assert skewed_ms < moves[1].time_ms - 3_000_000  # that clock really was an hour behind
    assert moves[0].time_ms >= moves[1].time_ms  # yet its move is not dated before the last
    assert client.get_version("iris@staging").version == 2
    assert client.promote("iris/1", "staging", "and back").version == 1  # no one locked out


def test_an_approval_from_a_clock_an_hour_behind_is_not_dated_before_the_registration(
    client: clew.Client, as_user: AsUser, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    _, artifact = train(client)
    version = client.register_model(artifact, "iris")
    as_user("bob")
    done = run_an_hour_behind(
        tmp_path, request, "bob", "import clew; clew.approve('iris/1', 'validated on a laptop')"
    )
    assert done.returncode == 0, done.stderr
    approved, registered = client.model_history("iris")
    assert (approved.kind, approved.actor, registered.kind) == ("approved", "bob", "registered")
    assert approved.time_ms >= registered.time_ms >= version.created_ms
    assert client.get_version("iris/1").created_ms <= approved.time_ms


def test_a_misspelt_alias_is_refused_naming_the_existing_ones(three: clew.Client) -> None:
    three.promote("iris/1", "production")
    three.promote("iris/1", "staging", new_alias=True)
    with pytest.raises(UnknownAliasError) as raised:
        three.promote("iris/2", "prodution")
    message = str(raised.value)
    assert "'prodution'" in message and "production, staging" in message
    assert "nearest: production" in message and "new_alias=True" in message
    assert message.endswith(".") and message.count(". ") == 0
    assert sorted(three.alias_history("iris")["alias"]) == ["production", "staging"]


def test_a_new_alias_is_created_once_on_purpose(three: clew.Client) -> None:
    with pytest.raises(UnknownAliasError, match="its aliases: none"):
        three.promote("iris/1", "champion")
    assert three.promote("iris/1", "champion", new_alias=True).alias == "champion"
    assert three.promote("iris/2", "champion").version == 2  # it exists now: no flag


def test_aliases_the_policy_lists_need_no_flag(three: clew.Client, as_user: AsUser) -> None:
    assert three.promote("iris/1", "production").alias == "production"  # the default policy's
    admin = as_user("alice", "admin")
    admin.set_policy("aliases: [staging, shadow]\nproduction:\n  aliases: [production]\n")
    three = as_user("bob")
    assert three.promote("iris/2", "shadow").alias == "shadow"
    with pytest.raises(UnknownAliasError, match="nearest: shadow"):
        three.promote("iris/2", "shadwo")
