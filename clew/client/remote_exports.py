"""Regulator exports over HTTP: the server reads its records and signs the pack with its key."""

from __future__ import annotations

from typing import Any

from clew.client.remote_registry import RemoteRegistry
from clew.client.transport import Transport, path_segment


class RemoteExports:
    """``ExportService`` over HTTP."""

    def __init__(self, transport: Transport, registry: RemoteRegistry) -> None:
        self._t = transport
        self._registry = registry

    def sr11_7_inventory(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self._t.call("GET", "/exports/sr11-7")
        return rows

    def annex_iv(self, ref: str) -> dict[str, Any]:
        version = self._registry.resolve(ref)
        path = f"/models/{path_segment(version.name)}/versions/{version.version}/annex-iv"
        pack: dict[str, Any] = self._t.call("POST", path)
        return pack
