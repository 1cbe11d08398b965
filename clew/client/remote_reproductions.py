"""``RemoteReproductions``: reproduction plans and signed reports on a clew server.

A ref (``churn@production``) is resolved to its version first, so the route names the model
in its path and per-model grants apply; the server judges and signs, this side re-runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clew.client.remote_registry import RemoteRegistry
from clew.client.transport import Transport
from clew.domain.reproduction import ReproductionPlan, ReproductionReport


class RemoteReproductions:
    """``ReproductionService`` over HTTP."""

    def __init__(self, transport: Transport, registry: RemoteRegistry) -> None:
        self._t = transport
        self._registry = registry

    def _path(self, ref: str) -> str:
        version = self._registry.resolve(ref)
        return f"/models/{version.name}/versions/{version.version}"

    def plan(self, ref: str) -> ReproductionPlan:
        return ReproductionPlan.from_dict(
            self._t.call("GET", f"{self._path(ref)}/reproduction-plan")
        )

    def record(self, ref: str, findings: Mapping[str, Any], actor: str) -> ReproductionReport:
        answer = self._t.call(
            "POST", f"{self._path(ref)}/reproductions", json_body={"findings": dict(findings)}
        )
        return ReproductionReport.from_dict(answer)
