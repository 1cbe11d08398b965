"""A server forgets idempotency keys after a day: an expired key is claimed anew."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import update

from clew.service import idempotency
from clew.store import schema

if TYPE_CHECKING:
    from server_fixtures import RunningServer

pytest_plugins = ("server_fixtures",)


def _age_keys(server: RunningServer, ms: int) -> None:
    table = schema.idempotency_keys
    with server.store.db.write() as connection:
        connection.execute(update(table).values(created_ms=table.c.created_ms - ms))


def test_an_expired_key_is_claimed_anew(server: RunningServer) -> None:
    key = {"Idempotency-Key": "expiring-key-01"}
    with server.http(server.user("alice")) as http:
        first = http.post("/api/v1/runs", json={"name": "first"}, headers=key)
        replayed = http.post("/api/v1/runs", json={"name": "first"}, headers=key)
        _age_keys(server, idempotency.KEY_TTL_MS + 1000)
        # Before expiry a different body under this key was refused; now it is a new request.
        reused = http.post("/api/v1/runs", json={"name": "second"}, headers=key)
        again = http.post("/api/v1/runs", json={"name": "second"}, headers=key)
    assert first.status_code == replayed.status_code == reused.status_code == 201
    assert replayed.json()["id"] == first.json()["id"]
    assert reused.json()["name"] == "second" and reused.json()["id"] != first.json()["id"]
    assert again.json()["id"] == reused.json()["id"]


def test_a_claim_left_by_a_dead_request_expires(server: RunningServer) -> None:
    """A server killed mid-request leaves a claim without a response: "in progress" for a
    day, then the key is free again."""
    token = server.user("alice")
    with server.store.db.write() as connection:
        connection.execute(
            schema.idempotency_keys.insert().values(
                user_name="alice", key="stuck-key-001", request_digest="d", created_ms=0
            )
        )
    with server.http(token) as http:
        retried = http.post(
            "/api/v1/runs", json={"name": "late"}, headers={"Idempotency-Key": "stuck-key-001"}
        )
    assert retried.status_code == 201 and retried.json()["name"] == "late"
