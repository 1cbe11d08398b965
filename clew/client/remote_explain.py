"""``RemoteReports``: a version's bias and explanation reports from a clew server."""

from __future__ import annotations

from typing import Any

from clew.client.remote_registry import RemoteRegistry
from clew.client.transport import Transport


class RemoteReports:
    """``ReportService`` over HTTP (the ref is resolved first so the path names the model)."""

    def __init__(self, transport: Transport, registry: RemoteRegistry) -> None:
        self._t = transport
        self._registry = registry

    def reports(self, ref: str) -> list[dict[str, Any]]:
        version = self._registry.resolve(ref)
        path = f"/models/{version.name}/versions/{version.version}/reports"
        answer: list[dict[str, Any]] = self._t.call("GET", path)
        return answer
