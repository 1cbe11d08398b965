"""Registry over HTTP: roles, per-model grants, e-signatures and separation of duties apply to
the authenticated user."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

from clew.domain import digests
from clew.service import accounts

if TYPE_CHECKING:
    from server_fixtures import RunningServer

pytest_plugins = ("server_fixtures",)


def register_version(http: httpx.Client, name: str = "churn") -> dict[str, Any]:
    """A run that produced a model artifact, registered as the next version of ``name``."""
    data = b"model bytes " + name.encode()
    digest = digests.digest_bytes(data)
    assert http.put(f"/api/v1/blobs/{digest}", content=data).status_code == 201
    run_id = http.post("/api/v1/runs", json={"name": "train"}).json()["id"]
    artifact = http.post(
        "/api/v1/artifacts",
        json={
            "run_id": run_id,
            "direction": "output",
            "type": "model",
            "name": f"{name}-model",
            "digest": digest,
            "size": len(data),
            "blobs": {digest: [len(data), "file"]},
        },
    ).json()
    assert http.post(f"/api/v1/runs/{run_id}/end", json={"status": "FINISHED"}).status_code == 204
    response = http.post(
        f"/api/v1/models/{name}/versions", json={"source": f"artifact:{artifact['id']}"}
    )
    assert response.status_code == 201, response.text
    return response.json()


def signing_token(server: RunningServer, user: str) -> str:
    return accounts.create_token(server.store, user, actor="admin", purpose="signing").secret


APPROVAL = {"comment": "validated on holdout", "meaning": "reviewed"}


def test_register_resolve_approve_promote(server: RunningServer) -> None:
    with server.http(server.user("carol")) as carol:
        version = register_version(carol)
    assert version["version"] == 1 and version["created_by"] == "carol"
    victor = server.user("victor", "approver")
    with server.http(victor) as http:
        approved = http.post(
            "/api/v1/models/churn/versions/1/approve",
            json=APPROVAL,
            headers={"X-Clew-Signing-Token": signing_token(server, "victor")},
        )
        assert approved.status_code == 201, approved.text
        assert approved.json()["actor"] == "victor"
        assert approved.json()["evidence"]["meaning"] == "reviewed"
        promoted = http.post("/api/v1/models/churn/aliases/production", json={"version": 1})
        assert promoted.status_code == 201, promoted.text
        resolved = http.get("/api/v1/resolve", params={"ref": "churn@production"})
    assert resolved.json()["version"] == 1
    assert resolved.json()["digest"] == version["digest"]


def test_a_contributor_cannot_approve(server: RunningServer) -> None:
    with server.http(server.user("carol")) as carol:
        register_version(carol)
        response = carol.post(
            "/api/v1/models/churn/versions/1/approve",
            json=APPROVAL,
            headers={"X-Clew-Signing-Token": signing_token(server, "carol")},
        )
    assert response.status_code == 403
    assert "needs the approver role" in response.json()["message"]


def test_an_approver_cannot_approve_their_own_model(server: RunningServer) -> None:
    with server.http(server.user("ann", "approver")) as ann:
        register_version(ann)
        response = ann.post(
            "/api/v1/models/churn/versions/1/approve",
            json=APPROVAL,
            headers={"X-Clew-Signing-Token": signing_token(server, "ann")},
        )
    assert response.status_code == 403
    assert response.json()["code"] == "policy_violation"


def test_approvals_need_the_approvers_own_signing_token(server: RunningServer) -> None:
    with server.http(server.user("carol")) as carol:
        register_version(carol)
    server.user("mallory", "approver")
    mallory_signs = signing_token(server, "mallory")
    with server.http(server.user("victor", "approver")) as victor:
        unsigned = victor.post("/api/v1/models/churn/versions/1/approve", json=APPROVAL)
        forged = victor.post(
            "/api/v1/models/churn/versions/1/approve",
            json=APPROVAL,
            headers={"X-Clew-Signing-Token": mallory_signs},
        )
        api_token_as_signature = victor.post(
            "/api/v1/models/churn/versions/1/approve",
            json=APPROVAL,
            headers={"X-Clew-Signing-Token": server.tokens["victor"]},
        )
        history = victor.get("/api/v1/audit", params={"target": "model:churn"}).json()
    assert unsigned.status_code == 401 and "electronic signature" in unsigned.json()["message"]
    assert forged.status_code == 401 and "another user" in forged.json()["message"]
    assert api_token_as_signature.status_code == 401
    assert not [entry for entry in history if "approve" in entry["action"]]


def test_a_per_model_grant_raises_the_role_for_that_model_only(server: RunningServer) -> None:
    with server.http(server.user("carol")) as carol:
        register_version(carol, "churn")
        register_version(carol, "fraud")
    server.user("val", "viewer")
    accounts.grant(server.store, "val", "churn", "approver", actor="admin")
    with server.http(server.tokens["val"]) as val:
        headers = {"X-Clew-Signing-Token": signing_token(server, "val")}
        churn = val.post("/api/v1/models/churn/versions/1/approve", json=APPROVAL, headers=headers)
        fraud = val.post("/api/v1/models/fraud/versions/1/approve", json=APPROVAL, headers=headers)
    assert churn.status_code == 201, churn.text
    assert fraud.status_code == 403 and "viewer on model 'fraud'" in fraud.json()["message"]
