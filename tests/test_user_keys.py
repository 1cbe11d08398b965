"""Approvals are signatures: each decision is signed with its actor's own registered Ed25519 key.

Finding 11 of issue 13: with nothing but ``CLEW_USER=bob`` anyone approved as anyone. These
tests run on the embedded store, on PostgreSQL + S3 and through the server (``as_user``).
"""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest
from server_fixtures import AsUser
from sqlalchemy import update
from test_registry import train

import clew
from clew.errors import ConflictError, InvalidInputError, PolicyError
from clew.service import audit
from clew.service import user_keys as keyring
from clew.store import schema
from clew.store.location import Store

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


def test_an_edited_approval_fails_its_signature_and_does_not_count(
    version: clew.Client, as_user: AsUser, store: Store
) -> None:
    registered_key(as_user, "bob")
    as_user("bob").approve("iris/1", "validated")
    events = schema.registry_events
    with store.db.write() as connection:
        connection.execute(
            update(events).where(events.c.kind == "approved").values(comment="anything goes")
        )

    status = as_user("alice").version_status("iris/1")

    assert (status["approved"], status["approvals"]) == (False, 0)
    [signature] = status["signatures"]
    assert signature["state"] == "failed"
    assert "the record differs from what sha256:" in signature["detail"]
    assert any("the approval by bob does not count" in reason for reason in status["reasons"])
    with pytest.raises(PolicyError, match="the approval by bob does not count"):
        as_user("bob").promote("iris/1", "production")


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
