"""``RemoteOpenLineage``: OpenLineage run events sent to a clew server's OpenLineage endpoint,
returning the same values as ``OpenLineageService``."""

from __future__ import annotations

from typing import Any

from clew.client.transport import Transport
from clew.domain.openlineage import Received


class RemoteOpenLineage:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def receive(self, events: Any, actor: str) -> Received:
        """One request (``POST /api/v1/lineage``), one transaction on the server; ``actor`` is
        the token's user there."""
        data = self._t.call("POST", "/lineage", json_body=events)
        return Received(data["events"], data["runs"], data["datasets"], data["edges"])
