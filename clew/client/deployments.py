"""Serving deployments through the SDK: ``clew.status(endpoint, at=T)`` and the history.

``clew serve`` records each deployment as it starts and stops (``start_deployment``): a row the
audit chain covers, plus a run of kind ``deployment`` that consumed the model artifact, so
lineage walks from a model to every place it served.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from clew.domain.deployments import (
    Deployment,
    DeploymentList,
    ShadowReport,
    check_endpoint,
    time_ms,
)
from clew.domain.records import FAILED, FINISHED
from clew.errors import NotFoundError

if TYPE_CHECKING:  # QualitySpec brings numpy, which status and deployments do not need
    from clew.client.client import Client
    from clew.client.loaded_model import LoadedModel
    from clew.client.run import ActiveRun
    from clew.domain.quality import QualitySpec
    from clew.service.protocols import Backend

EXPERIMENT = "deployments"
RUN_KIND = "deployment"


@dataclass
class Serving:
    """A deployment being served, and the run that stands for it in lineage."""

    deployment: Deployment
    run: ActiveRun


class DeploymentsMixin:
    """``Client.status``, ``Client.deployments`` and recording ``clew serve``'s deployments."""

    if TYPE_CHECKING:
        _service: Backend

        @property
        def actor(self) -> str: ...

        def start_run(
            self,
            experiment: str,
            name: str | None,
            kind: str,
            *,
            params: dict[str, Any],
            capture_code: bool,
        ) -> ActiveRun: ...

    def status(
        self, endpoint: str | None = None, at: dt.datetime | str | int | None = None
    ) -> DeploymentList:
        """The deployments that answered ``endpoint`` (every endpoint when None) at ``at``
        (a datetime, ISO 8601 text or epoch ms; now when None), champion first."""
        from clew.service.runs import now_ms

        at_ms = time_ms(at, now_ms())
        found = self._service.deployments.at(endpoint, at_ms)
        return DeploymentList(sorted(found, key=lambda d: (d.endpoint, d.role != "champion")))

    def deployments(self, endpoint: str | None = None, limit: int = 100) -> DeploymentList:
        """Deployments newest first (of ``endpoint`` when given)."""
        return self._service.deployments.history(endpoint, limit)

    def shadow_report(
        self,
        endpoint: str,
        *,
        deployment: str | None = None,
        quality: QualitySpec | None = None,
    ) -> ShadowReport:
        """How the newest shadow of ``endpoint`` (or shadow ``deployment``) compared with its
        champion: agreement on the same requests, and quality side by side once labels for
        the champion's predictions arrive (``clew.log_labels``)."""
        check_endpoint(endpoint)
        if deployment is None:
            shadows = [d for d in self.deployments(endpoint, 1000) if d.role == "shadow"]
            if not shadows:
                raise NotFoundError(
                    f"endpoint {endpoint} never had a shadow; serve one with "
                    "clew serve MODEL@champion --shadow MODEL@challenger."
                )
            deployment = shadows[0].id
        return self._service.shadows.report(deployment, quality)

    def start_deployment(
        self,
        model: LoadedModel,
        endpoint: str,
        *,
        role: str = "champion",
        champion: Deployment | None = None,
        address: str = "",
    ) -> Serving:
        """Record that ``model`` starts answering ``endpoint``: a ``deployment`` run that
        consumed the model's artifact, and the audited deployment row pointing at it."""
        check_endpoint(endpoint)
        artifact = self._service.artifacts.resolve(f"artifact:{model.version.artifact_id}")
        run = self.start_run(
            EXPERIMENT,
            f"{endpoint}: {model.version.ref}" + (" (shadow)" if role == "shadow" else ""),
            RUN_KIND,
            params={"endpoint": endpoint, "version": model.version.ref, "role": role},
            capture_code=False,
        )
        try:
            run.log_input(artifact)
            deployment = self._service.deployments.start(
                endpoint,
                model.version.ref,
                self.actor,
                role=role,
                champion_id=champion.id if champion else None,
                address=address,
                run_id=run.id,
            )
        except BaseException:
            run.end(FAILED)
            raise
        return Serving(deployment, run)

    def stop_deployment(self, serving: Serving) -> Deployment:
        """Record that the deployment stopped answering; its run ends."""
        stopped = self._service.deployments.stop(serving.deployment.id, self.actor)
        serving.run.end(FINISHED)
        return stopped


def _client() -> Client:
    from clew.client.default import get_client

    return get_client()


def status(
    endpoint: str | None = None, at: dt.datetime | str | int | None = None
) -> DeploymentList:
    return _client().status(endpoint, at)


def deployments(endpoint: str | None = None, limit: int = 100) -> DeploymentList:
    return _client().deployments(endpoint, limit)


def shadow_report(
    endpoint: str, *, deployment: str | None = None, quality: QualitySpec | None = None
) -> ShadowReport:
    return _client().shadow_report(endpoint, deployment=deployment, quality=quality)
