"""``LoadedModel``: a registered model version loaded for inference.

It carries the version it came from, so every prediction can name the exact model that
made it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clew.domain.records import VersionRecord

if TYPE_CHECKING:
    from clew.client.client import Client


class LoadedModel:
    def __init__(self, model: Any, version: VersionRecord, client: Client) -> None:
        self.raw = model
        self.version = version
        self._client = client

    def __repr__(self) -> str:
        return f"<LoadedModel {self.version.ref} {self.version.digest[:19]}>"

    def predict(self, inputs: Any) -> Any:
        return self.raw.predict(inputs)
