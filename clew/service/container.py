"""``ServiceContainer``: the services of one opened store, built once for every caller.

The embedded client, the HTTP server's routes and the web UI all ask the same container for
their services instead of constructing them, so a service's collaborators (its store: the
metadata database, the blob store and the store's settings) are wired in exactly one place.
Each service keeps no per-caller state, so one of each is shared by every request and thread.

A service is built, and its module imported, the first time someone asks for it: a command
that reads the registry does not pay for the monitoring services' numpy and pyarrow, nor for
twenty-odd modules it never calls (tests/test_cli_startup.py checks what a command imports).
Two threads racing on the first use may each build one; services are stateless, so either
serves.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from clew.store.location import Store

if TYPE_CHECKING:
    from clew.service.approvals import ApprovalService
    from clew.service.artifacts import ArtifactService
    from clew.service.baselines import BaselineService
    from clew.service.bias import ReportService
    from clew.service.cards import CardService
    from clew.service.deployments import DeploymentService
    from clew.service.dvc_import import DvcImportService
    from clew.service.exports import ExportService
    from clew.service.findings import FindingService
    from clew.service.lineage import LineageService
    from clew.service.mlflow_import import MlflowImportService
    from clew.service.model_quality import ModelQualityService
    from clew.service.monitor_runs import MonitorRunService
    from clew.service.monitor_schedules import MonitorScheduleService
    from clew.service.monitoring_checks import MonitoringService
    from clew.service.openlineage import OpenLineageService
    from clew.service.pipelines import PipelineService
    from clew.service.policy import PolicyService
    from clew.service.promotion import PromotionService
    from clew.service.registry import RegistryService
    from clew.service.reproduction import ReproductionService
    from clew.service.reviews import ReviewService
    from clew.service.runs import RunService
    from clew.service.sessions import SessionService
    from clew.service.shadows import ShadowService
    from clew.service.user_keys import UserKeyService
    from clew.service.webhooks import WebhookService


class ServiceContainer:
    """Every store-backed service of ``store``; the one place a service is constructed."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @cached_property
    def runs(self) -> RunService:
        from clew.service.runs import RunService

        return RunService(self.store)

    @cached_property
    def artifacts(self) -> ArtifactService:
        from clew.service.artifacts import ArtifactService

        return ArtifactService(self.store)

    @cached_property
    def lineage(self) -> LineageService:
        from clew.service.lineage import LineageService

        return LineageService(self.store)

    @cached_property
    def registry(self) -> RegistryService:
        from clew.service.registry import RegistryService

        return RegistryService(self.store)

    @cached_property
    def approvals(self) -> ApprovalService:
        from clew.service.approvals import ApprovalService

        return ApprovalService(self.store)

    @cached_property
    def promotion(self) -> PromotionService:
        from clew.service.promotion import PromotionService

        return PromotionService(self.store)

    @cached_property
    def policies(self) -> PolicyService:
        from clew.service.policy import PolicyService

        return PolicyService(self.store)

    @cached_property
    def user_keys(self) -> UserKeyService:
        from clew.service.user_keys import UserKeyService

        return UserKeyService(self.store)

    @cached_property
    def sessions(self) -> SessionService:
        from clew.service.sessions import SessionService

        return SessionService(self.store)

    @cached_property
    def webhooks(self) -> WebhookService:
        from clew.service.webhooks import WebhookService

        return WebhookService(self.store)

    @cached_property
    def model_quality(self) -> ModelQualityService:
        from clew.service.model_quality import ModelQualityService

        return ModelQualityService(self.store)

    @cached_property
    def monitor_runs(self) -> MonitorRunService:
        from clew.service.monitor_runs import MonitorRunService

        return MonitorRunService(self.store)

    @cached_property
    def monitor_schedules(self) -> MonitorScheduleService:
        from clew.service.monitor_schedules import MonitorScheduleService

        return MonitorScheduleService(self.store)

    @cached_property
    def monitoring(self) -> MonitoringService:
        from clew.service.monitoring_checks import MonitoringService

        return MonitoringService(self.store)

    @cached_property
    def baselines(self) -> BaselineService:
        from clew.service.baselines import BaselineService

        return BaselineService(self.store)

    @cached_property
    def deployments(self) -> DeploymentService:
        from clew.service.deployments import DeploymentService

        return DeploymentService(self.store)

    @cached_property
    def shadows(self) -> ShadowService:
        from clew.service.shadows import ShadowService

        return ShadowService(self.store)

    @cached_property
    def openlineage(self) -> OpenLineageService:
        from clew.service.openlineage import OpenLineageService

        return OpenLineageService(self.store)

    @cached_property
    def reproductions(self) -> ReproductionService:
        from clew.service.reproduction import ReproductionService

        return ReproductionService(self.store)

    @cached_property
    def explanations(self) -> ReportService:
        from clew.service.bias import ReportService

        return ReportService(self.store)

    @cached_property
    def findings(self) -> FindingService:
        from clew.service.findings import FindingService

        return FindingService(self.store)

    @cached_property
    def reviews(self) -> ReviewService:
        from clew.service.reviews import ReviewService

        return ReviewService(self.store)

    @cached_property
    def cards(self) -> CardService:
        from clew.service.cards import CardService

        return CardService(self.store)

    @cached_property
    def exports(self) -> ExportService:
        from clew.service.exports import ExportService

        return ExportService(self.store)

    @cached_property
    def mlflow_import(self) -> MlflowImportService:
        from clew.service.mlflow_import import MlflowImportService

        return MlflowImportService(self.store)

    @cached_property
    def dvc_import(self) -> DvcImportService:
        from clew.service.dvc_import import DvcImportService

        return DvcImportService(self.store)

    @cached_property
    def pipelines(self) -> PipelineService:
        from clew.service.pipelines import PipelineService

        return PipelineService(self.store)

    def close(self) -> None:
        """Release the store's database connections (the container's services stop working)."""
        self.store.close()
