"""``ServiceContainer``: the services of one opened store, built once for every caller.

The embedded client, the HTTP server's routes and the web UI all ask the same container for
their services instead of constructing them, so a service's collaborators (its store: the
metadata database, the blob store and the store's settings) are wired in exactly one place.
Each service is cheap to build and keeps no per-caller state, so all of them are built up
front and shared by every request and thread.
"""

from __future__ import annotations

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
from clew.store.location import Store


class ServiceContainer:
    """Every store-backed service of ``store``; the one place a service is constructed."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.runs = RunService(store)
        self.artifacts = ArtifactService(store)
        self.lineage = LineageService(store)
        self.registry = RegistryService(store)
        self.approvals = ApprovalService(store)
        self.promotion = PromotionService(store)
        self.policies = PolicyService(store)
        self.user_keys = UserKeyService(store)
        self.sessions = SessionService(store)
        self.webhooks = WebhookService(store)
        self.model_quality = ModelQualityService(store)
        self.monitor_runs = MonitorRunService(store)
        self.monitor_schedules = MonitorScheduleService(store)
        self.monitoring = MonitoringService(store)
        self.baselines = BaselineService(store)
        self.deployments = DeploymentService(store)
        self.shadows = ShadowService(store)
        self.openlineage = OpenLineageService(store)
        self.reproductions = ReproductionService(store)
        self.explanations = ReportService(store)
        self.findings = FindingService(store)
        self.reviews = ReviewService(store)
        self.cards = CardService(store)
        self.exports = ExportService(store)
        self.mlflow_import = MlflowImportService(store)
        self.dvc_import = DvcImportService(store)
        self.pipelines = PipelineService(store)

    def close(self) -> None:
        """Release the store's database connections (the container's services stop working)."""
        self.store.close()
