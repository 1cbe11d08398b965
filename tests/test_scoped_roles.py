"""Finer roles (issue 14, finding 12): a contributor scoped to one model or a name prefix, and
no grant on a model name that does not exist yet.

A real ``clew server`` over its own store (SQLite, or PostgreSQL + S3 under
``CLEW_TEST_BACKEND=postgres-s3``); the CLI runs ``clew admin grant`` on that store.
"""

from __future__ import annotations

import pytest
from server_fixtures import RunningServer
from test_server_registry import register_version
from typer.testing import CliRunner

from clew.cli.main import app as cli
from clew.errors import InvalidInputError, NameConflictError, NotFoundError
from clew.service import accounts

pytest_plugins = ("server_fixtures",)


def test_a_contributor_scoped_to_one_model_registers_there_only(server: RunningServer) -> None:
    with server.http(server.user("carol")) as carol:
        register_version(carol, "churn")
        register_version(carol, "fraud")
    server.user("sam", "viewer")
    accounts.grant(server.store, "sam", "churn", "contributor", actor="admin")
    with server.http(server.tokens["sam"]) as sam:
        assert register_version(sam, "churn")["version"] == 2
        other = sam.post("/api/v1/models/fraud/versions", json={"source": "artifact:x"})
        new = sam.post("/api/v1/models", json={"name": "pricing"})
        keys = sam.post("/api/v1/policy", json={"document": "roles: {}"})
    assert other.status_code == 403
    assert other.json()["message"] == (
        "user 'sam' is a viewer on model 'fraud' and this needs the contributor role; ask an "
        "admin for access."
    )
    assert new.status_code == 403 and "viewer on model 'pricing'" in new.json()["message"]
    assert keys.status_code == 403 and "needs the admin role" in keys.json()["message"]


def test_a_prefix_grant_covers_models_made_under_it(server: RunningServer) -> None:
    server.user("sam", "viewer")
    accounts.grant(server.store, "sam", "fraud-*", "contributor", actor="admin")
    with server.http(server.tokens["sam"]) as sam:
        assert register_version(sam, "fraud-eu")["version"] == 1
        assert sam.post("/api/v1/models", json={"name": "fraud-us"}).status_code == 201
        outside = sam.post("/api/v1/models", json={"name": "fraudulent"})
    assert outside.status_code == 403 and "viewer on model 'fraudulent'" in outside.text


def test_a_grant_on_a_model_that_does_not_exist_is_refused(server: RunningServer) -> None:
    server.user("val", "viewer")
    with server.http(server.user("carol")) as carol:
        register_version(carol, "churn")
    with pytest.raises(NotFoundError) as missing:
        accounts.grant(server.store, "val", "ghost", "approver", actor="admin")
    assert str(missing.value) == (
        "model 'ghost' does not exist, so nobody can be granted a role on it (whoever created it "
        "later would hand over its rights); register it first, or grant on a name prefix such "
        "as 'ghost*'."
    )
    with pytest.raises(NameConflictError, match="model 'Churn' does not exist; it is 'churn'"):
        accounts.grant(server.store, "val", "Churn", "approver", actor="admin")
    for bad in ("*", "fraud eu*", "a*b*"):
        with pytest.raises(InvalidInputError, match="name prefix"):
            accounts.grant(server.store, "val", bad, "contributor", actor="admin")
    uri = str(server.store.db.url) if "postgresql" in server.store.db.url else str(server.root)
    result = CliRunner().invoke(cli, ["admin", "grant", "val", "ghost", "approver", "--uri", uri])
    assert result.exit_code == 1
    assert "model 'ghost' does not exist" in result.output and "Traceback" not in result.output
    with server.http(server.tokens["val"]) as val:
        assert val.get("/api/v1/whoami").status_code == 200
    granted = CliRunner().invoke(cli, ["admin", "grant", "val", "churn", "approver", "--uri", uri])
    assert granted.exit_code == 0, granted.output
