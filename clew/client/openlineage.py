"""``client.openlineage``: OpenLineage run events into the lineage graph, through the SDK."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from clew.domain.openlineage import Received

if TYPE_CHECKING:
    from clew.client.client import Client


class OpenLineage:
    """Receive OpenLineage events here (embedded, or on the server the client talks to)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def receive(self, events: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> Received:
        """Record one RunEvent or a list of them (as dicts, the spec's JSON) in one transaction;
        events sharing a ``runId`` pair into one run, whatever call brings them."""
        body = [dict(event) for event in events] if isinstance(events, Sequence) else dict(events)
        return self._client._service.openlineage.receive(body, self._client.actor)
