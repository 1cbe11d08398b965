"""Approvals are signatures: each decision is signed with its actor's own registered Ed25519 key.

Finding 11 of issue 13: with nothing but ``CLEW_USER=bob`` anyone approved as anyone. These
tests run on the embedded store, on PostgreSQL + S3 and through the server (``as_user``).
"""

from __future__ import annotations

import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from server_fixtures import AsUser
from sqlalchemy import update
from test_registry import iris_frame, train
from typer.testing import CliRunner

import clew
from clew.cli.main import app
from clew.errors import ConflictError, IntegrityError, InvalidInputError, PolicyError
from clew.server.ui import create_ui_app
from clew.service import audit, registry
from clew.service import user_keys as keyring
from clew.store import schema
from clew.store.location import Store

runner = CliRunner(env={"COLUMNS": "200"})
REQUIRE_KEYS = """\
approvals:
  required: 1
  require_registered_keys: true
"""


@pytest.fixture
def version(client: clew.Client) -> clew.Client:
    """iris/1, trained and registered by alice."""
    _, artifact = train(client)
    client.register_model(artifact, "iris")
    return client


def registered_key(as_user: AsUser, user: str) -> dict[str, object]:
    """``user`` makes their key at home and alice (an admin) registers its public half."""
    made = as_user(user).create_user_key()
    as_user("alice").register_user_key(user, Path(str(made["public_key_file"])))
    return made


def test_a_policy_requiring_keys_ends_approving_as_anyone(
    version: clew.Client, as_user: AsUser
) -> None:
    version.set_policy(REQUIRE_KEYS)
    bob = as_user("bob")
    with pytest.raises(PolicyError) as refused:
        bob.approve("iris/1", "looks fine")
    assert str(refused.value) == (
        "bob has no registered signing key and the policy requires one; ask an admin to run "
        "`clew keys register bob KEYFILE` (make the key with `clew keys init`)."
    )
    bob.create_user_key()  # a key of his own is not enough until an admin registers it
    with pytest.raises(PolicyError, match="bob has no registered signing key"):
        bob.approve("iris/1", "looks fine")
    assert bob.version_status("iris/1")["approvals"] == 0


def test_a_registered_key_signs_and_status_verifies_it(
    version: clew.Client, as_user: AsUser, store: Store
) -> None:
    version.set_policy(REQUIRE_KEYS)
    made = registered_key(as_user, "bob")
    private = Path(str(made["private_key_file"]))
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert "PRIVATE" not in str(as_user("alice").user_keys("bob"))

    event = as_user("bob").approve("iris/1", "validated on the holdout", meaning="reviewed")

    assert event.evidence["signature"]["key_id"] == made["key_id"]
    status = as_user("bob").version_status("iris/1")
    assert (status["approved"], status["approved_by"]) == (True, ["bob"])
    [signature] = status["signatures"]
    assert (signature["actor"], signature["kind"], signature["state"], signature["key_id"]) == (
        "bob",
        "approved",
        "verified",
        made["key_id"],
    )
    [registration] = audit.entries(store, action="user_key.register")
    assert (registration.actor, registration.target) == ("alice", f"user-key:{made['key_id']}")


def test_another_users_key_is_refused(version: clew.Client, as_user: AsUser) -> None:
    made = registered_key(as_user, "bob")
    as_user("carol")
    stolen = keyring.key_path("carol")
    stolen.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(str(made["private_key_file"])), stolen)
    with pytest.raises(PolicyError, match="is registered to bob, not carol; carol must sign"):
        as_user("carol").approve("iris/1", "approving with bob's key")
    assert version.version_status("iris/1")["approvals"] == 0


def test_a_revoked_key_keeps_its_earlier_signatures_and_signs_nothing_after(
    client: clew.Client, as_user: AsUser
) -> None:
    for _ in range(2):
        _, artifact = train(client)
        client.register_model(artifact, "iris")
    made = registered_key(as_user, "bob")
    as_user("bob").approve("iris/1", "validated")

    revoked = as_user("alice").revoke_user_key(str(made["key_id"]))

    assert revoked["revoked_by"] == "alice"
    status = as_user("bob").version_status("iris/1")
    assert status["approved"] is True
    assert status["signatures"][0]["state"] == "verified"
    with pytest.raises(
        PolicyError, match=r"bob.s key sha256:.* was revoked at .* can sign nothing"
    ):
        as_user("bob").approve("iris/2", "validated too")
    with pytest.raises(ConflictError, match="already revoked"):
        as_user("alice").revoke_user_key(str(made["key_id"]))


@pytest.mark.tampers
def test_an_edited_approval_fails_its_signature_and_does_not_count(
    version: clew.Client, as_user: AsUser, store: Store
) -> None:
    """An edited decision is refused twice over: its row no longer matches the audit chain,
    and (for a store whose chain was rewritten as well) its signature no longer verifies."""
    registered_key(as_user, "bob")
    as_user("bob").approve("iris/1", "validated")
    events = schema.registry_events
    with store.db.write() as connection:
        connection.execute(
            update(events).where(events.c.kind == "approved").values(comment="anything goes")
        )

    with pytest.raises(IntegrityError, match="comment is 'anything goes'"):
        as_user("alice").version_status("iris/1")
    with pytest.raises(IntegrityError, match="comment is 'anything goes'"):
        as_user("bob").promote("iris/1", "production")
    with store.db.read() as connection:
        model = registry.get_model_row(connection, name="iris")
        [approval] = registry.read_events(connection, model, version=1, kinds=("approved",))
        digest = registry.get_version_row(connection, "iris", 1).digest
        verdict = keyring.verdict(connection, approval, digest)
    assert verdict.state == "failed"
    assert "the record differs from what sha256:" in verdict.detail


def test_a_signature_binds_the_policy_in_force(version: clew.Client, as_user: AsUser) -> None:
    registered_key(as_user, "bob")
    bob = as_user("bob")
    prepared = bob._service.approvals.statement("iris/1", "approved", "bob", "ok", meaning="ok")
    key = keyring.find_local_key("bob")
    assert key is not None
    signed = keyring.sign(key, prepared)
    as_user("alice").set_policy("approvals:\n  required: 1\n")
    with pytest.raises(InvalidInputError, match="does not match this approved of iris/1"):
        as_user("bob")._service.approvals.approve(
            "iris/1", "bob", "ok", meaning="ok", signed=signed
        )


def test_without_keys_the_default_policy_records_unsigned_decisions(
    version: clew.Client, as_user: AsUser
) -> None:
    as_user("bob").approve("iris/1", "validated")
    status = as_user("bob").version_status("iris/1")
    assert status["approved"] is True
    assert [s["state"] for s in status["signatures"]] == ["unsigned"]


def test_promotions_and_rejections_are_signed_too(client: clew.Client, as_user: AsUser) -> None:
    for _ in range(2):
        _, artifact = train(client)
        client.register_model(artifact, "iris")
    made = registered_key(as_user, "bob")
    client.set_policy(REQUIRE_KEYS)
    bob = as_user("bob")
    bob.approve("iris/1", "validated")
    promoted = bob.promote("iris/1", "production", "ship it")
    rejected = bob.reject("iris/2", "overfits")
    assert promoted.evidence["signature"]["key_id"] == made["key_id"]
    assert rejected.evidence["signature"]["key_id"] == made["key_id"]
    assert bob.version_status("iris/2")["signatures"][0]["state"] == "verified"


def test_registering_a_private_key_is_refused(client: clew.Client, as_user: AsUser) -> None:
    made = as_user("bob").create_user_key()
    with pytest.raises(InvalidInputError, match="that is a private key"):
        as_user("alice").register_user_key("bob", Path(str(made["private_key_file"])))
    assert as_user("alice").user_keys() == []


@pytest.mark.tampers
def test_trace_shows_each_decisions_key_and_fails_an_edited_one(
    version: clew.Client, as_user: AsUser, store: Store
) -> None:
    key_id = str(registered_key(as_user, "bob")["key_id"])
    as_user("bob").approve("iris/1", "validated")
    as_user("bob").promote("iris/1", "production", "ship it")
    alice = as_user("alice")
    loaded = alice.load_model("iris@production")
    _, ids = loaded.predict_with_ids(iris_frame().drop(columns="target").head(2))

    trace = alice.trace(ids[0])

    step = trace.step("approvals")
    assert step.verified, step.reason
    signed = [(e["kind"], e["signature"]) for e in step.details["events"] if e["signature"]]
    assert [(kind, s["state"], s["key_id"]) for kind, s in signed] == [
        ("approved", "verified", key_id),
        ("alias_set", "verified", key_id),
    ]
    assert f"[verified key {key_id[:19]}...]" in str(trace)
    events = schema.registry_events
    with store.db.write() as connection:
        connection.execute(
            update(events).where(events.c.kind == "alias_set").values(actor="mallory")
        )
    step = alice.trace(ids[0]).step("approvals")
    assert not step.verified
    assert f"the alias_set by mallory: key {key_id[:19]}... is bob's, not mallory's" in step.reason


@pytest.mark.embedded_only  # the CLI's default client is one per process; the SDK tests above
# cover the same calls through the server
def test_the_keys_commands_make_register_list_and_revoke(
    version: clew.Client, env_as: Callable[..., dict[str, str]]
) -> None:
    version.set_policy(REQUIRE_KEYS)
    bob, alice = env_as("bob"), env_as("alice", "admin")
    refused = runner.invoke(app, ["approve", "iris/1", "-m", "fine"], env=bob)
    assert refused.exit_code == 1, refused.output
    assert refused.stderr.strip().splitlines() == [
        "error: bob has no registered signing key and the policy requires one; ask an admin to "
        "run `clew keys register bob KEYFILE` (make the key with `clew keys init`)."
    ]
    made = runner.invoke(app, ["keys", "init"], env=bob)
    assert made.exit_code == 0, made.output
    public = keyring.public_path("bob")
    assert f"clew keys register bob {public}" in " ".join(made.stdout.split())

    registered = runner.invoke(app, ["keys", "register", "bob", str(public)], env=alice)
    assert registered.exit_code == 0, registered.output
    [key] = version.user_keys("bob")
    listed = runner.invoke(app, ["keys", "list"], env=alice)
    assert key["key_id"] in listed.stdout and "bob" in listed.stdout and "active" in listed.stdout

    approved = runner.invoke(app, ["approve", "iris/1", "-m", "validated"], env=bob)
    assert approved.exit_code == 0, approved.output
    status = runner.invoke(app, ["status", "iris/1"], env=alice)
    assert f"approved by bob: verified (key {key['key_id'][:19]}...)" in status.stdout

    revoked = runner.invoke(app, ["keys", "revoke", key["key_id"]], env=alice)
    assert revoked.exit_code == 0, revoked.output
    assert "revoked" in runner.invoke(app, ["keys", "list", "bob"], env=alice).stdout


@pytest.mark.embedded_only  # the UI app is built on the store in this process
def test_the_version_page_shows_each_signature_and_its_key(
    version: clew.Client, as_user: AsUser, store: Store
) -> None:
    key_id = str(registered_key(as_user, "bob")["key_id"])
    as_user("bob").approve("iris/1", "validated")
    http = TestClient(create_ui_app(store), base_url="http://127.0.0.1")

    page = http.get("/ui/models/iris/versions/1")

    assert page.status_code == 200
    assert "approved by bob:" in page.text
    assert ">verified</span> key <code>" + key_id[:19] + "…</code>" in page.text


def test_under_a_policy_requiring_keys_unsigned_approvals_do_not_count(
    version: clew.Client, as_user: AsUser
) -> None:
    """An unsigned approval row (made before the policy, or inserted into the database) is
    not one production can rely on once the policy requires registered keys."""
    as_user("carol").approve("iris/1", "validated, unsigned")
    as_user("alice").set_policy(REQUIRE_KEYS)

    status = as_user("alice").version_status("iris/1")

    assert (status["approved"], status["approvals"], status["approved_by"]) == (False, 0, [])
    assert "the approval by carol does not count (not signed)" in (status["reasons"])
    with pytest.raises(PolicyError, match="the approval by carol does not count"):
        as_user("alice").promote("iris/1", "production")
