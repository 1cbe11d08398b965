"""Approve, reject, revoke and archive: who may decide, what is recorded, what each forbids."""

from __future__ import annotations

import pandas as pd
import pytest
from server_fixtures import AsUser
from test_registry import train

import clew
from clew.errors import ConflictError, InvalidInputError, PolicyError
from clew.service import audit
from clew.store.location import Store


@pytest.fixture
def version(client: clew.Client) -> clew.Client:
    """iris/1, trained and registered by alice; the current user is then bob."""
    _, artifact = train(client)
    client.register_model(artifact, "iris")
    return client


def test_approval_records_actor_comment_evidence_and_policy(
    version: clew.Client, as_user: AsUser, store: Store
) -> None:
    version = as_user("bob")
    with version.start_run("validation", "review", kind="evaluation", capture_code=False) as run:
        evidence = run.log_output(
            pd.DataFrame({"check": ["bias"], "ok": [True]}), name="validation-report", type="report"
        )

    event = version.approve("iris/1", "validated on the 2024 holdout", evidence=[evidence])

    assert (event.kind, event.actor, event.version, event.comment) == (
        "approved",
        "bob",
        1,
        "validated on the 2024 holdout",
    )
    assert event.evidence["artifacts"] == [
        {
            "id": evidence.id,
            "type": "report",
            "name": "validation-report",
            "digest": evidence.digest,
        }
    ]
    assert event.evidence["meaning"] == "approved"
    assert event.evidence["policy_version"] == 0
    assert event.time_ms > 0
    assert version.model_history("iris")[0] == event
    assert [e.action for e in audit.entries(store, target="iris/1")] == [
        "model.approved",
        "model.register",
    ]
    status = version.version_status("iris/1")
    assert (status["status"], status["approved"], status["approved_by"]) == (
        "approved",
        True,
        ["bob"],
    )


def test_meaning_is_recorded_and_validated(version: clew.Client, as_user: AsUser) -> None:
    version = as_user("bob")
    with pytest.raises(InvalidInputError, match="meaning"):
        version.approve("iris/1", "ok", meaning="")
    event = version.approve("iris/1", "second-line review done", meaning="reviewed")
    assert event.evidence["meaning"] == "reviewed"


def test_self_approval_by_the_registrant_is_refused(version: clew.Client) -> None:
    with pytest.raises(PolicyError, match="'alice' registered iris/1 and may not approve it"):
        version.approve("iris/1", "looks good to me")
    assert version.version_status("iris/1")["approvals"] == 0


def test_the_training_run_user_may_not_approve_either(client: clew.Client, as_user: AsUser) -> None:
    _, artifact = train(client)  # trained by alice
    client = as_user("carol")
    client.register_model(artifact, "iris")  # registered by carol
    for user in ("alice", "carol"):
        client = as_user(user)
        with pytest.raises(PolicyError, match="separation of duties"):
            client.approve("iris/1", "mine")
    client = as_user("bob")
    assert client.approve("iris/1", "independent review").actor == "bob"


def test_an_approver_counts_once(version: clew.Client, as_user: AsUser) -> None:
    version = as_user("bob")
    version.approve("iris/1", "ok")
    with pytest.raises(ConflictError, match="already approved"):
        version.approve("iris/1", "ok again")
    assert version.version_status("iris/1")["approvals"] == 1


def test_a_comment_is_required(version: clew.Client, as_user: AsUser) -> None:
    version = as_user("bob")
    for action in (version.approve, version.reject, version.revoke, version.archive):
        with pytest.raises(InvalidInputError, match="a comment is required"):
            action("iris/1", "  ")
    assert len(version.model_history("iris")) == 1


def test_evidence_must_be_existing_artifacts(version: clew.Client, as_user: AsUser) -> None:
    version = as_user("bob")
    with pytest.raises(InvalidInputError, match="is not an artifact"):
        version.approve("iris/1", "ok", evidence="iris/1")
    with pytest.raises(clew.ClewError, match="no artifact matches"):
        version.approve("iris/1", "ok", evidence="report:missing-report")
    assert version.version_status("iris/1")["approvals"] == 0


def test_rejected_versions_can_not_be_approved_promoted_or_loaded(
    version: clew.Client, as_user: AsUser
) -> None:
    version = as_user("bob")
    rejection = version.reject("iris/1", "target leakage in feature x")
    assert rejection.kind == "rejected"
    version = as_user("carol")
    with pytest.raises(ConflictError, match="was rejected by bob"):
        version.approve("iris/1", "I disagree")
    with pytest.raises(ConflictError, match="was rejected"):
        version.promote("iris/1", "staging")
    with pytest.raises(PolicyError, match=r"iris/1 was rejected by bob .* can not be loaded"):
        version.load_model("iris/1")
    assert version.version_status("iris/1")["status"] == "rejected"


def test_revoke_withdraws_approval_and_blocks_loading(
    version: clew.Client, as_user: AsUser
) -> None:
    version = as_user("bob")
    version.approve("iris/1", "ok")
    version.promote("iris/1", "production")
    assert version.load_model("iris@production").version.version == 1

    event = version.revoke("iris/1", "drift found in the March data")

    assert event.kind == "revoked"
    with pytest.raises(PolicyError, match="iris/1 was revoked by bob"):
        version.load_model("iris@production")
    status = version.version_status("iris/1")
    assert (status["status"], status["approvals"], status["meets_production_policy"]) == (
        "revoked",
        0,
        False,
    )
    assert status["aliases"] == ["production"]  # aliases move only by explicit events
    with pytest.raises(ConflictError, match="was revoked"):
        version.approve("iris/1", "re-approve")


def test_revoking_an_unapproved_version_is_refused(version: clew.Client, as_user: AsUser) -> None:
    version = as_user("bob")
    with pytest.raises(ConflictError, match="no approval to revoke; reject it instead"):
        version.revoke("iris/1", "never mind")


def test_archived_versions_stay_loadable_but_can_not_be_decided_or_promoted(
    version: clew.Client, as_user: AsUser
) -> None:
    version = as_user("bob")
    version.archive("iris/1", "superseded")
    with pytest.raises(ConflictError, match="was archived"):
        version.promote("iris/1", "staging")
    with pytest.raises(ConflictError, match="was archived"):
        version.approve("iris/1", "late approval")
    with pytest.raises(ConflictError, match="already archived"):
        version.archive("iris/1", "twice")
    assert version.load_model("iris/1").version.version == 1
    assert version.version_status("iris/1")["status"] == "archived"


def test_a_version_holding_an_alias_can_not_be_archived(version: clew.Client, monkeypatch) -> None:
    version.promote("iris/1", "staging", new_alias=True)
    with pytest.raises(ConflictError, match="is iris@staging; promote another version"):
        version.archive("iris/1", "cleanup")


def test_events_are_append_only(version: clew.Client, as_user: AsUser, store: Store) -> None:
    version = as_user("bob")
    version.approve("iris/1", "ok")
    before = version.model_history("iris")
    version.promote("iris/1", "production")
    version.revoke("iris/1", "withdrawn")
    after = version.model_history("iris")
    assert after[len(after) - len(before) :] == before
    assert [e.kind for e in after] == ["revoked", "alias_set", "approved", "registered"]
    checked, broken = audit.verify_chain(store)
    assert broken is None and checked > 0
