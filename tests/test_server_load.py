"""Many clients at once through one real server: every write lands, none waits out the pool.

Writes queue for one lock (SQLite's write lock, PostgreSQL's advisory lock) while holding a
pooled connection, so more concurrent writers than the pool has connections (8 + 16 overflow on
PostgreSQL) is where a write path that takes a second connection, or a reader starved behind
queued writers, turns into pool timeouts and 503s. 32 clients, each running the load
benchmark's mix once (a run, params, a signed capture batch, a registration, its approval by a
second user's e-signature, an alias resolution and a run read), must all get 2xx, and the store
must hold exactly what they were told: versions 1..n, every batch once, an intact audit chain.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
from server_fixtures import RunningServer
from sqlalchemy import select
from test_server_registry import APPROVAL, register_version

from clew.client.remote_capture import ARROW_STREAM, encode
from clew.domain import ids
from clew.domain.captures import Call, CaptureTarget
from clew.service import audit, capture_verification
from clew.store import schema

pytest_plugins = ("server_fixtures",)

CLIENTS = 32  # above the PostgreSQL pool's 24 connections, within the server's 40 threads


def _one_client(server: RunningServer, first: dict[str, Any], number: int) -> dict[str, Any]:
    """The mix once, in order; returns what the server said it stored."""
    target = CaptureTarget(first["id"], "churn", 1, first["digest"])
    source = {"source": f"artifact:{first['artifact_id']}"}
    signed = {"X-Clew-Signing-Token": server.signing["victor"]}
    with server.http(server.tokens["carol"]) as http, server.http(server.tokens["victor"]) as val:
        run = _ok(http.post("/api/v1/runs", json={"name": f"load-{number}", "params": {"n": 1}}))
        _ok(http.post(f"/api/v1/runs/{run['id']}/params", json={"params": {"lr": 0.1}}))
        batch = ids.new_id()
        call = Call(ids.new_id(), 1_700_000_000_000, 10, np.arange(10), None)
        body = encode(target, [call])
        captures = "/api/v1/models/churn/versions/1/captures"
        headers = {"Content-Type": ARROW_STREAM}
        _ok(http.post(captures, params={"batch": batch}, content=body, headers=headers))
        version = _ok(http.post("/api/v1/models/churn/versions", json=source))["version"]
        approve = f"/api/v1/models/churn/versions/{version}/approve"
        _ok(val.post(approve, json=APPROVAL, headers=signed))
        _ok(http.get("/api/v1/resolve", params={"ref": "churn/1"}))
        _ok(http.get(f"/api/v1/runs/{run['id']}"))
    return {"batch": batch, "version": version}


def _ok(response: httpx.Response) -> Any:
    assert response.status_code in (200, 201, 204), (str(response.request.url), response.text)
    return response.json() if response.content else None


def test_thirty_two_clients_writing_at_once_all_land_and_the_store_holds_each_once(
    server: RunningServer,
) -> None:
    server.user("victor", "approver")
    with server.http(server.user("carol")) as carol:
        first = register_version(carol)
    with ThreadPoolExecutor(CLIENTS) as pool:
        stored = list(pool.map(lambda n: _one_client(server, first, n), range(CLIENTS)))
    with server.store.db.read() as connection:
        versions = sorted(connection.execute(select(schema.model_versions.c.version)).scalars())
        approvals = connection.execute(
            select(schema.registry_events.c.version).where(
                schema.registry_events.c.kind == "approved"
            )
        ).scalars()
        approved = sorted(approvals)
    assert versions == list(range(1, CLIENTS + 2))
    assert sorted(entry["version"] for entry in stored) == versions[1:] == approved
    batches = sorted(batch.id for batch in capture_verification.all_batches(server.store))
    assert batches == sorted(entry["batch"] for entry in stored)
    assert capture_verification.verify_batches(server.store) == (CLIENTS, [])
    assert audit.verify_chain(server.store)[1] is None
