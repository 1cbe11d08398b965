"""``RemoteBackend``: the same services as ``EmbeddedBackend``, spoken over HTTP to ``clew server``.

Every service has the embedded service's signatures and returns the same records (the
protocols in ``service/protocols.py``), so ``Client`` does not know which backend it holds.
The ``actor`` arguments are accepted and ignored: a server attributes every write to the owner
of the token, never to a name the client claims.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from clew.client.remote_artifacts import RemoteArtifacts
from clew.client.remote_audit import RemoteAudit
from clew.client.remote_blobs import RemoteBlobStore
from clew.client.remote_cards import RemoteCards
from clew.client.remote_deployments import RemoteDeployments
from clew.client.remote_explain import RemoteReports
from clew.client.remote_exports import RemoteExports
from clew.client.remote_findings import RemoteFindings, RemoteReviews
from clew.client.remote_imports import RemoteDvcImport, RemoteMlflowImport
from clew.client.remote_lineage import RemoteLineage
from clew.client.remote_monitor_runs import RemoteMonitorRuns, RemoteMonitorSchedules
from clew.client.remote_monitoring import RemoteMonitoring
from clew.client.remote_openlineage import RemoteOpenLineage
from clew.client.remote_pipelines import RemotePipelines
from clew.client.remote_policies import RemotePolicies
from clew.client.remote_predictions import RemotePredictions
from clew.client.remote_registry import RemoteApprovals, RemotePromotion, RemoteRegistry
from clew.client.remote_reproductions import RemoteReproductions
from clew.client.remote_runs import RemoteRuns
from clew.client.remote_sessions import RemoteSessions
from clew.client.remote_shadows import RemoteShadows
from clew.client.remote_user_keys import RemoteUserKeys
from clew.client.remote_webhooks import RemoteWebhooks
from clew.client.transport import Transport
from clew.domain.records import RunPage, RunRecord


class RemoteStore:
    """The part of ``Store`` a client touches: its address and its blobs."""

    def __init__(self, uri: str, transport: Transport) -> None:
        self.uri = uri
        self.blobs = RemoteBlobStore(transport)


class RemoteBackend:
    """Every service of a clew server's store, over one ``Transport`` (one connection pool)."""

    def __init__(
        self, uri: str, token: str | None = None, signing_token: str | None = None
    ) -> None:
        token = token or os.environ.get("CLEW_TOKEN") or None
        signing_token = signing_token or os.environ.get("CLEW_SIGNING_TOKEN") or None
        self._transport = Transport(uri, token)
        self.store = RemoteStore(uri, self._transport)
        self.runs = RemoteRuns(self._transport)
        self.artifacts = RemoteArtifacts(self._transport, self.store.blobs)
        self.lineage = RemoteLineage(self._transport)
        self.registry = RemoteRegistry(self._transport)
        self.approvals = RemoteApprovals(self._transport, self.registry, signing_token)
        self.promotion = RemotePromotion(self._transport, self.registry)
        self.policies = RemotePolicies(self._transport)
        self.predictions = RemotePredictions(self._transport)
        self.user_keys = RemoteUserKeys(self._transport)
        self.sessions = RemoteSessions(self._transport)
        self.audit = RemoteAudit(self._transport)
        self.webhooks = RemoteWebhooks(self._transport)
        self.monitor_runs = RemoteMonitorRuns(self._transport)
        self.monitor_schedules = RemoteMonitorSchedules(self._transport)
        self.monitoring = RemoteMonitoring(self._transport, self.registry)
        self.deployments = RemoteDeployments(self._transport)
        self.shadows = RemoteShadows(self._transport)
        self.openlineage = RemoteOpenLineage(self._transport)
        self.reproductions = RemoteReproductions(self._transport, self.registry)
        self.explanations = RemoteReports(self._transport, self.registry)
        self.findings = RemoteFindings(self._transport)
        self.reviews = RemoteReviews(self._transport)
        self.cards = RemoteCards(self._transport, self.registry)
        self.exports = RemoteExports(self._transport, self.registry)
        self.mlflow_import = RemoteMlflowImport(self._transport)
        self.dvc_import = RemoteDvcImport(self._transport)
        self.pipelines = RemotePipelines(self._transport)
        self._actor: str | None = None

    @property
    def actor(self) -> str:
        """The user the server knows this token as (every write is attributed to it)."""
        if self._actor is None:
            self._actor = self._transport.call("GET", "/whoami")["name"]
        return self._actor

    def record_read(self, digest: str, actor: str) -> None:
        """Nothing to do here: the server audits each download as it answers it."""

    def search_runs(
        self,
        filter_text: str | None = None,
        order_by: Sequence[str] | None = None,
        max_results: int = 1000,
        experiments: Sequence[str] | None = None,
    ) -> list[RunRecord]:
        return self.runs.search_runs(filter_text, order_by, max_results, experiments)

    def search_run_page(
        self,
        filter_text: str | None = None,
        order_by: Sequence[str] | None = None,
        max_results: int = 1000,
        experiments: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> RunPage:
        return self.runs.search_run_page(
            filter_text, order_by, max_results, experiments, page_token
        )

    def close(self) -> None:
        self._transport.close()
