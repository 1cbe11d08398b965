"""The server's own guarantees: fail-closed permissions, authentication, errors, operations."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fastapi import APIRouter
from sqlalchemy import update

import clew
from clew.server.app import create_app
from clew.server.permissions import RULES, check_routes, route_keys
from clew.service import accounts
from clew.store import schema
from clew.store.location import open_store

if TYPE_CHECKING:
    from server_fixtures import RunningServer

pytest_plugins = ("server_fixtures",)


def test_every_route_has_exactly_one_permission_rule(tmp_path: Path) -> None:
    app = create_app(open_store(tmp_path / "store"))
    served = route_keys(app)
    assert set(served) == set(RULES)
    assert all(guarded or RULES[key].role is None for key, guarded in served.items())
    assert ("PUT", "/api/v1/blobs/{digest}") in served


def test_a_route_without_a_rule_refuses_to_start(tmp_path: Path) -> None:
    app = create_app(open_store(tmp_path / "store"))
    extra = APIRouter()

    @extra.delete("/api/v1/runs/{run_id}")
    def delete_run(run_id: str) -> None:
        """A route someone forgot to put in the permission table."""

    app.include_router(extra)
    with pytest.raises(RuntimeError, match=r"without a permission: \[\('DELETE'"):
        check_routes(app)


def test_public_operations_endpoints(server: RunningServer) -> None:
    with server.http() as http:
        assert http.get("/api/v1/health").json() == {"status": "ok"}
        assert http.get("/api/v1/ready").json() == {"status": "ready"}
        schema_doc = http.get("/api/v1/openapi.json").json()
        assert "/api/v1/runs" in schema_doc["paths"]
        response = http.get("/api/v1/runs/01J00000000000000000000000")
        assert response.status_code == 401
        metrics = http.get("/metrics").text
    assert 'route="/api/v1/runs/{run_id}",status="401"' in metrics
    assert "clew_http_request_seconds_count" in metrics


def test_request_ids_are_echoed_or_made(server: RunningServer) -> None:
    with server.http(server.user("alice")) as http:
        mine = http.get("/api/v1/whoami", headers={"X-Request-ID": "abc-123"})
        hostile = http.get("/api/v1/whoami", headers={"X-Request-ID": "a\tb<script>"})
        failed = http.get("/api/v1/runs/01J00000000000000000000000")
    assert mine.headers["x-request-id"] == "abc-123"
    assert len(hostile.headers["x-request-id"]) == 26
    assert failed.json()["request_id"] == failed.headers["x-request-id"]
    assert failed.json()["code"] == "not_found"


@pytest.mark.parametrize(
    ("header", "fragment"),
    [
        (None, "needs an API token"),
        ("Basic dXNlcjpwYXNz", "Bearer <token>"),
        ("Bearer clew_not-a-real-token", "not recognised"),
    ],
)
def test_requests_without_a_valid_token_are_refused(
    server: RunningServer, header: str | None, fragment: str
) -> None:
    with server.http() as http:
        headers = {"Authorization": header} if header else {}
        response = http.post("/api/v1/runs", json={"name": "x"}, headers=headers)
    assert response.status_code == 401
    assert response.json()["code"] == "unauthenticated"
    assert fragment in response.json()["message"]
    assert response.headers["www-authenticate"] == "Bearer"


def test_expired_and_revoked_tokens_are_refused(server: RunningServer) -> None:
    token = server.user("alice")
    issued = accounts.create_token(server.store, "alice", actor="admin")
    with server.store.db.write() as connection:
        connection.execute(
            update(schema.api_tokens)
            .where(schema.api_tokens.c.id == issued.id)
            .values(expires_ms=1)
        )
    with server.http(issued.secret) as http:
        expired = http.get("/api/v1/whoami")
    assert expired.status_code == 401 and "has expired" in expired.json()["message"]
    with server.http(token) as http:
        assert http.get("/api/v1/whoami").status_code == 200
        token_id = accounts.authenticate(server.store, token).token_id
        assert token_id is not None
        accounts.revoke_token(server.store, token_id, actor="admin")
        revoked = http.get("/api/v1/whoami")
    assert revoked.status_code == 401 and "was revoked" in revoked.json()["message"]


def test_signing_tokens_are_not_bearer_tokens(server: RunningServer) -> None:
    server.user("alice")
    signing = accounts.create_token(server.store, "alice", actor="admin", purpose="signing")
    with server.http(signing.secret) as http:
        response = http.get("/api/v1/whoami")
    assert response.status_code == 401
    assert "signing token" in response.json()["message"]


def test_viewer_cannot_write(server: RunningServer) -> None:
    with server.http(server.user("victor", "viewer")) as http:
        assert http.get("/api/v1/whoami").json()["role"] == "viewer"
        response = http.post("/api/v1/runs", json={"name": "x"})
    assert response.status_code == 403
    assert response.json()["code"] == "policy_violation"
    assert "needs the contributor role" in response.json()["message"]


def test_writes_are_attributed_to_the_token_owner_not_a_claimed_name(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLEW_USER", "mallory")
    client = clew.connect(server.url, token=server.user("alice"))
    with client.start_run("churn", name="train") as run:
        run.log_param("depth", 3)
    assert client.get_run(run.id).user == "alice"
    actors = {entry.actor for entry in clew.service.audit.entries(server.store)}  # type: ignore[attr-defined]
    assert "mallory" not in actors and "alice" in actors
    client.close()


def test_nobody_writes_into_someone_elses_run(server: RunningServer) -> None:
    with server.http(server.user("alice")) as alice:
        run_id = alice.post("/api/v1/runs", json={"name": "mine"}).json()["id"]
    with server.http(server.user("bob")) as bob:
        response = bob.post(f"/api/v1/runs/{run_id}/params", json={"params": {"x": "1"}})
    assert response.status_code == 403
    assert "belongs to 'alice'" in response.json()["message"]
    assert server.store.db is not None
    with server.http(server.tokens["alice"]) as alice:
        assert alice.get(f"/api/v1/runs/{run_id}").json()["params"] == {}


def test_anonymous_read_is_off_by_default_and_read_only_when_on(tmp_path: Path) -> None:
    from server_fixtures import serve

    root = tmp_path / "anon-store"
    for running in serve(open_store(root), root, anonymous_read=True):
        with running.http(running.user("alice")) as alice:
            run_id = alice.post("/api/v1/runs", json={"name": "public"}).json()["id"]
        with running.http() as anonymous:
            assert anonymous.get(f"/api/v1/runs/{run_id}").json()["name"] == "public"
            refused = anonymous.post("/api/v1/runs", json={"name": "sneaky"})
        assert refused.status_code == 401


def test_a_retried_post_with_the_same_key_acts_once(server: RunningServer) -> None:
    with server.http(server.user("alice")) as http:
        key = {"Idempotency-Key": "create-run-0001"}
        first = http.post("/api/v1/runs", json={"name": "once"}, headers=key)
        again = http.post("/api/v1/runs", json={"name": "once"}, headers=key)
        assert first.status_code == again.status_code == 201
        assert first.json()["id"] == again.json()["id"]
        assert len(http.post("/api/v1/runs/search", json={}).json()) == 1
        run_id = first.json()["id"]
        batch = {"points": [["loss", 0.5, 0, 1], ["loss", 0.4, 1, 2]]}
        for _ in range(3):
            sent = http.post(
                f"/api/v1/runs/{run_id}/metrics",
                json=batch,
                headers={"Idempotency-Key": "batch-0001"},
            )
            assert sent.status_code == 204
        history = http.get(f"/api/v1/runs/{run_id}/metric-history", params={"key": "loss"})
        assert [row[1] for row in history.json()] == [0, 1]
        reused = http.post("/api/v1/runs", json={"name": "other"}, headers=key)
        assert reused.status_code == 422 and "different request" in reused.json()["message"]


def test_a_failed_attempt_releases_its_key(server: RunningServer) -> None:
    with server.http(server.user("alice")) as http:
        key = {"Idempotency-Key": "retry-after-failure"}
        refused = http.post("/api/v1/runs", json={"name": "x", "kind": "bad kind!"}, headers=key)
        assert refused.status_code == 400
        invalid = http.post("/api/v1/runs", json={"name": 5}, headers=key)
        assert invalid.status_code == 422
        fixed = http.post("/api/v1/runs", json={"name": "x"}, headers=key)
        assert fixed.status_code == 201
        assert http.post("/api/v1/runs", json={"name": "x"}, headers=key).json() == fixed.json()
        bad_key = http.post("/api/v1/runs", json={"name": "x"}, headers={"Idempotency-Key": "<>"})
        assert bad_key.status_code == 422 and "Idempotency-Key" in bad_key.json()["message"]


@pytest.mark.parametrize("headers", [{}, {"Range": "bytes=0-0"}])
def test_a_blob_the_store_lacks_is_a_404_whole_or_in_ranges(
    server: RunningServer, headers: dict[str, str]
) -> None:
    missing = "sha256:" + "0" * 64
    with server.http(server.user("vera", "viewer")) as http:
        response = http.get(f"/api/v1/blobs/{missing}", headers=headers)
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
