"""Audit entries carry the id of the request that wrote them (server) or of their write
transaction (embedded), so an operator can join the audit log with the request log."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from typer.testing import CliRunner

import clew
from clew.cli.main import app
from clew.domain.audit import AuditEntry
from clew.service import audit
from clew.store.location import Store

if TYPE_CHECKING:
    from server_fixtures import RunningServer

pytest_plugins = ("server_fixtures",)

CLIENT_ID = "abc-request-0001-" + "z" * 40  # a sane X-Request-ID longer than clew's own ids


def _entries_about(store: Store, target: str) -> list[AuditEntry]:
    return audit.entries(store, target, newest_first=False)


def test_a_server_request_id_is_the_request_id_of_its_audit_entries(
    server: RunningServer,
) -> None:
    with server.http(server.user("alice")) as http:
        created = http.post(
            "/api/v1/runs", json={"name": "traced"}, headers={"X-Request-ID": CLIENT_ID}
        )
        run_id = created.json()["id"]
        logged = http.post(f"/api/v1/runs/{run_id}/params", json={"params": {"depth": "3"}})
        listed = http.get("/api/v1/audit", params={"target": f"run:{run_id}"}).json()
    assert created.headers["x-request-id"] == CLIENT_ID
    by_action = {entry["action"]: entry["request_id"] for entry in listed}
    assert by_action["run.create"] == CLIENT_ID
    # A second request without a header gets the server's own id, also on its entries.
    assert by_action["run.log_params"] == logged.headers["x-request-id"] != CLIENT_ID


def test_two_server_requests_get_different_audit_request_ids(server: RunningServer) -> None:
    with server.http(server.user("alice")) as http:
        first = http.post("/api/v1/runs", json={"name": "one"})
        second = http.post("/api/v1/runs", json={"name": "two"})
    ids = {
        entry.request_id
        for response in (first, second)
        for entry in _entries_about(server.store, f"run:{response.json()['id']}")
    }
    assert ids == {first.headers["x-request-id"], second.headers["x-request-id"]}
    assert len(ids) == 2


@pytest.mark.embedded_only
def test_embedded_entries_share_one_id_per_write_transaction(client: clew.Client) -> None:
    store = client.store
    with store.db.write() as connection:
        first = audit.append(connection, "alice", "test.one", "thing:1", {})
        second = audit.append(connection, "alice", "test.two", "thing:1", {})
    with store.db.write() as connection:
        third = audit.append(connection, "alice", "test.three", "thing:1", {})
    assert first.request_id == second.request_id
    assert third.request_id != first.request_id


@pytest.mark.embedded_only
def test_embedded_sdk_calls_get_their_own_request_ids(client: clew.Client) -> None:
    with client.start_run("ids", name="embedded") as run:
        run.log_param("depth", 3)
    entries = _entries_about(client.store, f"run:{run.id}")
    assert len(entries) >= 2
    assert len({entry.request_id for entry in entries}) == len(entries)


def test_clew_audit_log_shows_a_server_request_id(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator's view: ``clew audit log`` on the server's store names the request."""
    if server.store.db.dialect == "sqlite":  # else CLEW_URI already names the server's store
        monkeypatch.setenv("CLEW_URI", str(server.root))
    with server.http(server.user("alice")) as http:
        created = http.post(
            "/api/v1/runs", json={"name": "cli"}, headers={"X-Request-ID": CLIENT_ID}
        )
    target = f"run:{created.json()['id']}"
    result = CliRunner().invoke(app, ["audit", "log", "--target", target, "-f", "json"])
    assert result.exit_code == 0, result.output
    assert [entry["request_id"] for entry in json.loads(result.stdout)["entries"]] == [CLIENT_ID]
