"""The governance policy document: default, storing, versioning, validation, roles."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REMOTE
from server_fixtures import AsUser
from test_registry import train

import clew
from clew.domain import digests
from clew.domain.policy import DEFAULT_DOCUMENT, parse
from clew.errors import PolicyError, PolicySyntaxError
from clew.service import accounts, audit
from clew.store.location import Store

POLICY = """
roles:
  approver: [bob, carol]
  admin: [dana]
approvals:
  roles: [approver]
  required: 1
  separation_of_duties: true
production:
  aliases: [production]
  evidence:
    metrics: ["auc >= 0.8"]
    reports: [model_card]
policy:
  roles: [admin]
"""


def test_the_default_policy_is_in_force_until_one_is_set(client: clew.Client) -> None:
    policy = client.get_policy()
    assert (policy["version"], policy["default"], policy["set_by"]) == (0, True, None)
    assert policy["document"] == DEFAULT_DOCUMENT
    assert policy["rules"]["approvals"] == {
        "roles": None,
        "required": 1,
        "separation_of_duties": True,
        "require_registered_keys": False,
    }
    assert policy["rules"]["production"]["aliases"] == ["production"]


def test_set_policy_stores_a_new_audited_version(client: clew.Client, store: Store) -> None:
    assert client.set_policy(POLICY) == 1
    policy = client.get_policy()
    assert (policy["version"], policy["default"], policy["set_by"]) == (1, False, "alice")
    assert policy["digest"] == digests.digest_bytes(POLICY.encode())
    assert policy["document"] == POLICY
    assert policy["rules"]["roles"] == {"admin": ["dana"], "approver": ["bob", "carol"]}
    assert policy["rules"]["production"]["evidence"] == {
        "metrics": ["auc >= 0.8"],
        "reports": ["model_card"],
    }
    [entry] = audit.entries(store, target="policy")
    assert (entry.action, entry.actor) == ("policy.set", "alice")


def test_set_policy_reads_a_file(client: clew.Client, tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("approvals: {required: 2}\n")
    assert clew.set_policy(str(path)) == 1
    assert clew.set_policy(path) == 2
    assert clew.get_policy()["rules"]["approvals"]["required"] == 2


def test_a_missing_policy_file_is_reported(client: clew.Client, tmp_path: Path) -> None:
    with pytest.raises(clew.ClewError, match="cannot read policy file"):
        client.set_policy(str(tmp_path / "nope.yaml"))
    assert client.get_policy()["version"] == 0


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ("roles: [unclosed", "not valid YAML at line 1"),
        ("- just\n- a list\n", "must be a YAML mapping"),
        ("aprovals: {required: 1}", "unknown key.*aprovals"),
        ("approvals: {required: 0}", "at least 1"),
        ("approvals: {required: two}", "at least 1"),
        ("approvals: {roles: [validators]}", "role.*validators.*does not define"),
        ("approvals: {separation_of_duties: maybe}", "true or false"),
        ("production: {evidence: {metrics: ['auc is high']}}", "not of the form"),
        ("production: {evidence: {tests: [x]}}", "unknown key.*tests"),
        ("roles: {admin: [1, 2]}", "roles.admin must be a list of names"),
    ],
)
def test_a_bad_policy_is_refused_and_the_old_one_stays(
    client: clew.Client, document: str, problem: str, store: Store
) -> None:
    client.set_policy(POLICY)
    with pytest.raises(PolicySyntaxError, match=problem) as raised:
        client.set_policy(document)
    assert "the previous policy stays in force" in str(raised.value)
    assert client.get_policy()["version"] == 1
    assert client.get_policy()["document"] == POLICY
    assert len(audit.entries(store, target="policy")) == 1


def test_only_the_policy_admins_may_replace_it(client: clew.Client, as_user: AsUser) -> None:
    client = as_user("dana", "admin")
    client.set_policy(POLICY)
    client = as_user("bob", "admin")
    with pytest.raises(PolicyError, match="'bob' may not change the policy"):
        client.set_policy("roles: {}")
    client = as_user("dana")
    assert client.set_policy(POLICY.replace("[bob, carol]", "[carol]")) == 2


def test_approval_by_a_role_the_policy_does_not_allow_is_refused(
    client: clew.Client, as_user: AsUser
) -> None:
    client.set_policy(POLICY)
    _, artifact = train(client)
    client.register_model(artifact, "iris")
    client = as_user("erin")
    with pytest.raises(PolicyError, match=r"'erin' may not approve iris/1.*approver"):
        client.approve("iris/1", "ok")
    with pytest.raises(PolicyError, match="may not reject"):
        client.reject("iris/1", "no")
    client = as_user("carol")
    event = client.approve("iris/1", "ok")
    assert event.evidence["actor_roles"] == ["approver"]
    assert event.evidence["policy_version"] == 1


def test_a_policy_names_account_roles_without_defining_them(
    client: clew.Client, as_user: AsUser, store: Store
) -> None:
    """One vocabulary: ``approver`` in a role list the policy does not define means an account
    with at least that role (per-model grants included), embedded and on a server alike."""
    client.set_policy("approvals: {roles: [approver]}\nproduction: {roles: [admin]}")
    _, artifact = train(client)
    client.register_model(artifact, "iris")
    if not REMOTE:  # on a server, as_user makes the accounts
        accounts.create_user(store, "bob", "approver", actor="admin")
        accounts.create_user(store, "carl", "viewer", actor="admin")
    with pytest.raises(PolicyError, match="approver"):
        as_user("carl", "viewer").approve("iris/1", "ok")
    if not REMOTE:  # a name with no account at all (a server knows only its accounts)
        with pytest.raises(PolicyError, match=r"'erin' may not approve iris/1.*approver"):
            as_user("erin").approve("iris/1", "no account")
    assert as_user("bob", "approver").approve("iris/1", "ok").actor == "bob"
    accounts.grant(store, "carl", "iris", "approver", actor="admin")
    assert as_user("carl", "viewer").approve("iris/1", "second look").actor == "carl"


def test_separation_of_duties_can_be_switched_off(client: clew.Client) -> None:
    client.set_policy("approvals: {separation_of_duties: false}")
    _, artifact = train(client)
    client.register_model(artifact, "iris")
    assert client.approve("iris/1", "solo team").actor == "alice"


@pytest.mark.backend_independent
def test_metric_rules_parse_every_operator() -> None:
    rules = parse(
        "production: {evidence: {metrics: ['metrics.auc >= 0.8', 'loss < 1e-1', "
        "'n == 3', 'bias != 1', 'f1 > .5', 'rmse <= -2']}}"
    ).metric_rules
    assert [(rule.metric, rule.op, rule.threshold) for rule in rules] == [
        ("auc", ">=", 0.8),
        ("loss", "<", 0.1),
        ("n", "==", 3.0),
        ("bias", "!=", 1.0),
        ("f1", ">", 0.5),
        ("rmse", "<=", -2.0),
    ]
    assert rules[0].failure({"auc": 0.8}) is None
    assert rules[0].failure({"auc": 0.79}) == "metric auc = 0.79 does not satisfy auc >= 0.8"
    assert "missing" in (rules[1].failure({"loss": None}) or "")
