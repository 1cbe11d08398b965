"""Model cards over HTTP; the server attributes edits to the token's user."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clew.client.remote_registry import RemoteRegistry
from clew.client.transport import Transport, path_segment
from clew.domain.cards import Card


class RemoteCards:
    """``CardService`` over HTTP."""

    def __init__(self, transport: Transport, registry: RemoteRegistry) -> None:
        self._t = transport
        self._registry = registry

    def card(self, ref: str) -> Card:
        return Card.from_dict(self._t.call("GET", self._path(ref)))

    def edit(self, ref: str, actor: str, changes: Mapping[str, Any], comment: str = "") -> Card:
        body = {"changes": dict(changes), "comment": comment}
        return Card.from_dict(self._t.call("POST", self._path(ref), json_body=body))

    def import_sagemaker(
        self, ref: str, actor: str, document: Mapping[str, Any], comment: str = ""
    ) -> Card:
        body = {"document": dict(document), "comment": comment}
        path = f"{self._path(ref)}/sagemaker"
        return Card.from_dict(self._t.call("POST", path, json_body=body))

    def _path(self, ref: str) -> str:
        """The card's path names the model (its per-model grant applies) and the version, so
        an alias is resolved to its version first."""
        version = self._registry.resolve(ref)
        return f"/models/{path_segment(version.name)}/versions/{version.version}/card"
