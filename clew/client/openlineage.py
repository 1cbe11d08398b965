"""``client.openlineage``: OpenLineage run events into the lineage graph, and clew's own runs
sent out as OpenLineage events to any consumer (Marquez, another clew) through
openlineage-python's HTTP transport."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from clew.domain.openlineage import Received, run_events
from clew.errors import InvalidInputError, ServerUnavailableError
from clew.extras import require_extra

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

    def emit(
        self,
        run_id: str,
        url: str,
        *,
        api_key: str | None = None,
        namespace: str = "clew",
        endpoint: str = "api/v1/lineage",
        compress: bool = True,
    ) -> int:
        """Send run ``run_id`` to the OpenLineage consumer at ``url`` (START, then COMPLETE,
        FAIL or ABORT once it ended, with its inputs and outputs); returns the events sent.
        Its runId is the run's id as a UUID, so sending again is recognised downstream."""
        require_extra("openlineage", "emitting OpenLineage events")
        import requests
        from openlineage.client.transport.http import (
            ApiKeyTokenProvider,
            HttpCompression,
            HttpConfig,
            HttpTransport,
            TokenProvider,
        )

        run = self._client.get_run(run_id)
        sides = self._client._service.artifacts.run_artifacts(run.id)
        events = run_events(run, sides["inputs"], sides["outputs"], namespace)
        config = HttpConfig(
            url=url,
            endpoint=endpoint,
            auth=ApiKeyTokenProvider({"apiKey": api_key}) if api_key else TokenProvider({}),
            compression=HttpCompression.GZIP if compress else None,
            retry={"total": 2},
        )
        transport = HttpTransport(config)
        try:
            for event in events:
                transport.emit(event)  # type: ignore[arg-type]
        except requests.HTTPError as error:
            said = "" if error.response is None else f"{error.response.status_code}: "
            said += "" if error.response is None else error.response.text[:200]
            raise InvalidInputError(
                f"the OpenLineage consumer at {url} refused run {run.id} ({said}); check the "
                "URL, token and endpoint."
            ) from None
        except requests.RequestException as error:
            raise ServerUnavailableError(
                f"the OpenLineage consumer at {url} could not be reached "
                f"({error.__class__.__name__}); check the URL and retry."
            ) from None
        finally:
            transport.close()
        return len(events)
