"""Serving deployments over HTTP: started, stopped and read by time, shaped like the service."""

from __future__ import annotations

from clew.client.transport import Transport
from clew.domain.deployments import Deployment, DeploymentList


class RemoteDeployments:
    """``DeploymentService`` over HTTP; writes are the token's user's, whatever ``actor`` is."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def start(
        self,
        endpoint: str,
        ref: str,
        actor: str,
        *,
        role: str = "champion",
        champion_id: str | None = None,
        address: str = "",
        run_id: str | None = None,
    ) -> Deployment:
        body = {
            "endpoint": endpoint,
            "ref": ref,
            "role": role,
            "champion_id": champion_id,
            "address": address,
            "run_id": run_id,
        }
        return Deployment.from_wire(self._t.call("POST", "/deployments", json_body=body))

    def stop(self, deployment_id: str, actor: str) -> Deployment:
        answer = self._t.call("POST", f"/deployments/{deployment_id}/stop", json_body={})
        return Deployment.from_wire(answer)

    def at(self, endpoint: str | None, at_ms: int) -> DeploymentList:
        params = {"at_ms": at_ms, **({"endpoint": endpoint} if endpoint is not None else {})}
        answer = self._t.call("GET", "/deployments/at", params=params)
        return DeploymentList(Deployment.from_wire(item) for item in answer)

    def history(self, endpoint: str | None = None, limit: int = 100) -> DeploymentList:
        params = {"limit": limit, **({"endpoint": endpoint} if endpoint is not None else {})}
        answer = self._t.call("GET", "/deployments", params=params)
        return DeploymentList(Deployment.from_wire(item) for item in answer)

    def get(self, deployment_id: str) -> Deployment:
        return Deployment.from_wire(self._t.call("GET", f"/deployments/{deployment_id}"))
