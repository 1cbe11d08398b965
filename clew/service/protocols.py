"""One typed ``Protocol`` per service the SDK calls, and ``Backend``, the bundle of them.

Two backends implement them: the embedded one (the services of ``clew/service/`` over a local
store, ``client/embedded.py``) and the remote one (the same calls over HTTP,
``client/remote_backend.py``). ``Client`` and its mixins hold a ``Backend`` and never ask
which: a method one backend lacks, or a signature that drifted, is a type error here instead
of a surprise on the other backend (``tests/test_protocols.py`` checks both ways).

Only the methods the SDK calls are listed; a service may have more (the server calls those).
The ``actor`` arguments are the embedded caller's name; a server ignores them and attributes
every write to the token's user. Values are imported for type checking only, so importing this
module loads no store code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import pandas as pd

    from clew.domain import refs
    from clew.domain.audit import AuditEntry, AuditVerification
    from clew.domain.baselines import Baseline
    from clew.domain.captures import BatchWriter, CapturedPrediction
    from clew.domain.cards import Card
    from clew.domain.deployments import Deployment, DeploymentList, ShadowPair, ShadowReport
    from clew.domain.findings import Finding, Review, ReviewStatus
    from clew.domain.imports import DvcImportResult, MlflowImportResult
    from clew.domain.keys import RotationRequest, SignedStatement, SigningKey, UserKey
    from clew.domain.lineage import IngestResult, LineageResult
    from clew.domain.monitor_runs import MonitorRun, MonitorSchedule
    from clew.domain.monitoring import CheckReport, Window
    from clew.domain.openlineage import Received
    from clew.domain.pipelines import CachedStep, PipelineView
    from clew.domain.policy import StoredPolicy
    from clew.domain.quality import QualitySpec
    from clew.domain.records import (
        ArtifactRecord,
        MetricPoint,
        ModelRecord,
        RegistryEvent,
        RunPage,
        RunRecord,
        VersionRecord,
    )
    from clew.domain.reproduction import ReproductionPlan, ReproductionReport
    from clew.domain.sessions import SessionInfo
    from clew.domain.trace import Trace
    from clew.domain.webhooks import Delivery, DeliveryReport, NewSubscription, Subscription

# A metric point as the SDK sends it: key, value, step, timestamp in ms.
Point = tuple[str, float, int, int]


class Runs(Protocol):
    """Runs and what they log: params, tags, metric series, their end."""

    def create_run(
        self,
        *,
        experiment: str,
        name: str,
        kind: str,
        actor: str,
        parent_id: str | None = None,
        command: str | None = None,
        seed: int | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        code_artifact_id: str | None = None,
        environment_artifact_id: str | None = None,
        properties: Mapping[str, Any] | None = None,
    ) -> RunRecord: ...

    def log_params(self, run_id: str, params: Mapping[str, Any], actor: str) -> None: ...

    def set_tags(self, run_id: str, tags: Mapping[str, Any], actor: str) -> None: ...

    def log_metrics(
        self,
        run_id: str,
        points: Sequence[Point],
        actor: str,
        batch_key: str | None = None,
    ) -> None: ...

    def end_run(
        self,
        run_id: str,
        status: str,
        actor: str,
        points: Sequence[Point] = (),
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> None: ...

    def get_run(self, run_id: str) -> RunRecord: ...

    def metric_history(self, run_id: str, key: str) -> list[MetricPoint]: ...


class Artifacts(Protocol):
    """Recording artifacts (their bytes are already in the blob store) and getting them out."""

    def log(
        self,
        *,
        run_id: str | None,
        direction: str,
        type_: str,
        name: str,
        digest: str,
        actor: str,
        size: int | None = None,
        uri: str | None = None,
        properties: Mapping[str, Any] | None = None,
        blobs: Mapping[str, tuple[int, str]] | None = None,
        derived_from: list[str] | None = None,
    ) -> ArtifactRecord: ...

    def get(self, artifact_id: str) -> ArtifactRecord: ...

    def find(self, ref: refs.ArtifactRef) -> ArtifactRecord: ...

    def resolve(self, ref: str) -> ArtifactRecord: ...

    def export(self, artifact: ArtifactRecord, destination: Path) -> Path: ...

    def run_artifacts(self, run_id: str) -> dict[str, list[ArtifactRecord]]: ...


class Lineage(Protocol):
    """Walks of the lineage graph, the feature-lineage questions and bulk ingest."""

    def upstream(
        self, ref: str, max_depth: int = 10, types: Sequence[str] | None = None
    ) -> LineageResult: ...

    def downstream(
        self, ref: str, max_depth: int = 10, types: Sequence[str] | None = None
    ) -> LineageResult: ...

    def ingest(
        self,
        artifacts: Sequence[Mapping[str, Any]],
        runs: Sequence[Mapping[str, Any]],
        actor: str,
    ) -> IngestResult: ...

    def feature_groups_from_data_source(self, ref: str, max_depth: int = 10) -> pd.DataFrame: ...

    def data_sources_from_feature_group(self, ref: str, max_depth: int = 3) -> pd.DataFrame: ...

    def models_from_feature_group(self, ref: str, max_depth: int = 10) -> pd.DataFrame: ...

    def feature_groups_from_model(self, ref: str, max_depth: int = 10) -> pd.DataFrame: ...


class Registry(Protocol):
    """Registered models and their versions."""

    def create_model(
        self,
        name: str,
        actor: str,
        *,
        owner: str | None = None,
        description: str = "",
        risk_tier: str | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> ModelRecord: ...

    def get_model(self, name: str) -> ModelRecord: ...

    def list_models(self) -> list[ModelRecord]: ...

    def register(
        self,
        name: str,
        source: str,
        actor: str,
        *,
        description: str = "",
        signature: Mapping[str, Any] | None = None,
        owner: str | None = None,
        risk_tier: str | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> VersionRecord: ...

    def versions(self, name: str) -> list[VersionRecord]: ...

    def resolve(self, ref: str) -> VersionRecord: ...


class Approvals(Protocol):
    """Approve, reject, revoke (electronic signatures), archive, and the statement to sign."""

    def loadable(self, ref: str) -> VersionRecord: ...

    def approve(
        self,
        ref: str,
        actor: str,
        comment: str,
        *,
        evidence: Sequence[str] = (),
        meaning: str = "approved",
        signed: SignedStatement | None = None,
    ) -> RegistryEvent: ...

    def reject(
        self,
        ref: str,
        actor: str,
        comment: str,
        *,
        evidence: Sequence[str] = (),
        signed: SignedStatement | None = None,
    ) -> RegistryEvent: ...

    def revoke(
        self, ref: str, actor: str, comment: str, *, signed: SignedStatement | None = None
    ) -> RegistryEvent: ...

    def statement(
        self,
        ref: str,
        decision: str,
        actor: str,
        comment: str,
        *,
        evidence: Sequence[str] = (),
        meaning: str | None = None,
        alias: str | None = None,
    ) -> dict[str, Any]: ...

    def archive(self, ref: str, actor: str, comment: str) -> RegistryEvent: ...


class Promotion(Protocol):
    """Aliases (``churn@production``): promote, roll back, their history and status."""

    def promote(
        self,
        ref: str,
        alias: str,
        actor: str,
        comment: str = "",
        new_alias: bool = False,
        *,
        signed: SignedStatement | None = None,
    ) -> RegistryEvent: ...

    def rollback(self, name: str, alias: str, actor: str, comment: str = "") -> RegistryEvent: ...

    def alias_history(self, name: str, alias: str | None = None) -> list[RegistryEvent]: ...

    def model_history(self, name: str) -> list[RegistryEvent]: ...

    def alias_at(self, name: str, alias: str, when_ms: int) -> VersionRecord | None: ...

    def model_overview(self) -> list[dict[str, Any]]: ...

    def version_overview(self, name: str) -> list[dict[str, Any]]: ...

    def version_status(self, ref: str) -> dict[str, Any]: ...


class Policies(Protocol):
    """The governance policy in force, and setting the next version of it."""

    def set_policy(self, document: str, actor: str) -> int: ...

    def get_policy(self) -> StoredPolicy: ...


class UserKeys(Protocol):
    """Users' registered public keys, which sign their decisions."""

    def register(self, user: str, public_key: str, actor: str) -> UserKey: ...

    def list_keys(self, user: str | None = None) -> list[UserKey]: ...

    def revoke(self, key_id: str, actor: str) -> UserKey: ...


class Sessions(Protocol):
    """Web UI sessions as an admin sees them."""

    def list_sessions(self, user: str | None = None, ended: bool = False) -> list[SessionInfo]: ...

    def revoke(self, session_id: str, actor: str) -> SessionInfo: ...


class Webhooks(Protocol):
    """Webhook subscriptions (admins), their delivery log, and delivering what is due."""

    def add(
        self, url: str, actor: str, *, model: str | None = None, kinds: Sequence[str] = ()
    ) -> NewSubscription: ...

    def list_subscriptions(self, removed: bool = False) -> list[Subscription]: ...

    def remove(self, subscription_id: str, actor: str) -> Subscription: ...

    def deliveries(
        self, subscription_id: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[Delivery]: ...

    def deliver(self, limit: int = 1000) -> DeliveryReport: ...


class Predictions(Protocol):
    """Captured predictions: writing them, finding and tracing one, labels, signing keys."""

    def trace(self, prediction_id: str) -> Trace: ...

    def log_labels(
        self, prediction_ids: Sequence[str], labels: Sequence[Any], actor: str
    ) -> int: ...

    def labels_for(self, prediction_ids: Sequence[str]) -> dict[str, Any]: ...

    def public_key(self) -> str: ...

    def signing_keys(self) -> list[SigningKey]: ...

    def rotate_signing_key(self, request: RotationRequest, actor: str) -> SigningKey: ...

    def get_prediction(self, prediction_id: str) -> CapturedPrediction: ...

    def capture_writer(self, actor: str) -> BatchWriter: ...


class Monitoring(Protocol):
    """Baselines of model versions (SageMaker's statistics and constraints) and the data
    quality and drift checks over a window of captured predictions."""

    def create_baseline(
        self,
        ref: str,
        actor: str,
        *,
        dataset: str | None = None,
        prediction: str | None = None,
    ) -> Baseline: ...

    def import_baseline(
        self, ref: str, statistics: str, constraints: str | None, actor: str
    ) -> Baseline: ...

    def find_baseline(self, ref: str) -> Baseline | None: ...

    def get_baseline(self, ref: str) -> Baseline: ...

    def edit_constraints(
        self, ref: str, edits: Mapping[str, Mapping[str, Any]], actor: str, reason: str = ""
    ) -> Baseline: ...

    def import_constraints(self, ref: str, constraints: str, actor: str) -> Baseline: ...

    def check_data_quality(self, window: Window, scheduler: Any = None) -> CheckReport: ...

    def check_drift(self, window: Window, scheduler: Any = None) -> CheckReport: ...

    def check_all(self, window: Window, scheduler: Any = None) -> list[CheckReport]: ...


class Audit(Protocol):
    """The audit trail: its entries, its verification and signed checkpoint exports."""

    def entries(
        self,
        target: str | None = None,
        limit: int = 100,
        actor: str | None = None,
        action: str | None = None,
    ) -> list[AuditEntry]: ...

    def verify(self, against: str | None = None) -> AuditVerification: ...

    def export_checkpoints(self, destination: str, retain_days: int | None = None) -> int: ...


class StoreView(Protocol):
    """What the SDK sees of a store: its address (no password) and its blobs.

    ``blobs`` is typed once the blob stores share one protocol; until then the embedded and
    remote blob stores agree by their tests.
    """

    @property
    def uri(self) -> str: ...

    @property
    def blobs(self) -> Any: ...


class MonitorRuns(Protocol):
    """The monitor over one window: model quality, idempotent runs, resolving violations."""

    def check_quality(
        self,
        ref: str,
        actor: str,
        *,
        window: str | None = None,
        start: str | None = None,
        end: str | None = None,
        last: int | None = None,
        quality: QualitySpec | None = None,
    ) -> CheckReport: ...

    def run_monitor(
        self,
        ref: str,
        actor: str,
        *,
        window: str | None = None,
        start: str | None = None,
        end: str | None = None,
        last: int | None = None,
        rerun: bool = False,
        quality: QualitySpec | None = None,
    ) -> MonitorRun: ...

    def list_runs(self, ref: str, limit: int = 50) -> list[MonitorRun]: ...

    def resolve(self, ref: str, actor: str, comment: str) -> RegistryEvent: ...


class MonitorSchedules(Protocol):
    """Cron schedules of monitor runs that ``clew server`` keeps."""

    def schedule(self, ref: str, cron: str, window: str, actor: str) -> MonitorSchedule: ...

    def schedules(self, model: str | None = None) -> list[MonitorSchedule]: ...

    def unschedule(self, schedule_id: str, actor: str) -> None: ...


class Deployments(Protocol):
    """Serving deployments: started and stopped by ``clew serve``, read by time."""

    def start(
        self,
        endpoint: str,
        ref: str,
        actor: str,
        *,
        role: str = "champion",
        champion_id: str | None = None,
        address: str = "",
        run_id: str | None = None,
    ) -> Deployment: ...

    def stop(self, deployment_id: str, actor: str) -> Deployment: ...

    def at(self, endpoint: str | None, at_ms: int) -> DeploymentList: ...

    def history(self, endpoint: str | None = None, limit: int = 100) -> DeploymentList: ...

    def get(self, deployment_id: str) -> Deployment: ...


class Shadows(Protocol):
    """Shadow deployments: which champion call each shadow call answered, and the report."""

    def record_pairs(self, deployment_id: str, pairs: Sequence[ShadowPair], actor: str) -> int: ...

    def report(self, deployment_id: str, spec: QualitySpec | None = None) -> ShadowReport: ...


class OpenLineage(Protocol):
    """OpenLineage run events received into the lineage graph."""

    def receive(self, events: Any, actor: str) -> Received: ...


class Reproductions(Protocol):
    """What a version's reproduction needs, and its signed report."""

    def plan(self, ref: str) -> ReproductionPlan: ...

    def record(self, ref: str, findings: Mapping[str, Any], actor: str) -> ReproductionReport: ...


class Reports(Protocol):
    """The bias and explanation reports recorded as evidence for a version."""

    def reports(self, ref: str) -> list[dict[str, Any]]: ...


class Findings(Protocol):
    """Validation findings (SR 11-7) against model versions."""

    def add(
        self,
        ref: str,
        actor: str,
        *,
        severity: str,
        description: str,
        remediation: str = "",
        owner: str | None = None,
        due: str | None = None,
    ) -> Finding: ...

    def update(
        self,
        finding_id: str,
        actor: str,
        note: str,
        *,
        status: str | None = None,
        severity: str | None = None,
        remediation: str | None = None,
        owner: str | None = None,
        due: str | None = None,
    ) -> Finding: ...

    def get(self, finding_id: str) -> Finding: ...

    def list_findings(
        self,
        model: str | None = None,
        *,
        version: int | None = None,
        status: str | None = None,
        limit: int = 1000,
    ) -> list[Finding]: ...


class Reviews(Protocol):
    """Periodic model reviews by risk tier, overdue alerts and material changes."""

    def review(self, ref: str, actor: str, comment: str) -> Review: ...

    def reviews(self, model: str) -> list[Review]: ...

    def review_status(self, model: str, as_of: str | None = None) -> ReviewStatus: ...

    def review_statuses(self, as_of: str | None = None) -> list[ReviewStatus]: ...

    def raise_overdue(self, actor: str) -> list[RegistryEvent]: ...

    def set_review_due(self, model: str, due: str, actor: str, reason: str) -> RegistryEvent: ...


class Cards(Protocol):
    """Structured model cards: facts from lineage, edited fields versioned."""

    def card(self, ref: str) -> Card: ...

    def edit(self, ref: str, actor: str, changes: Mapping[str, Any], comment: str = "") -> Card: ...

    def import_sagemaker(
        self, ref: str, actor: str, document: Mapping[str, Any], comment: str = ""
    ) -> Card: ...


class Exports(Protocol):
    """Regulator-ready documents generated from the records."""

    def sr11_7_inventory(self) -> list[dict[str, Any]]: ...

    def annex_iv(self, ref: str) -> dict[str, Any]: ...


class MlflowImport(Protocol):
    """Pages of MLflow runs recorded in clew, idempotently."""

    def import_runs(self, runs: Sequence[Mapping[str, Any]], actor: str) -> MlflowImportResult: ...

    def import_models(
        self, page: Mapping[str, Any], actor: str, set_aliases: bool = True
    ) -> MlflowImportResult: ...


class DvcImport(Protocol):
    """DVC pipeline stages recorded in clew; stages imported before are left alone."""

    def import_stages(
        self, project: str, stages: Sequence[Mapping[str, Any]], actor: str
    ) -> DvcImportResult: ...


class Pipelines(Protocol):
    """The step cache and pipeline executions."""

    def find_cached_step(self, key: str) -> CachedStep | None: ...

    def show(self, ref: str) -> PipelineView: ...


class Backend(Protocol):
    """Every service of one store, in this process or behind a server."""

    @property
    def actor(self) -> str:
        """Whom writes are attributed to: the token's user on a server, else this process's."""
        ...

    @property
    def store(self) -> StoreView: ...

    @property
    def runs(self) -> Runs: ...

    @property
    def artifacts(self) -> Artifacts: ...

    @property
    def lineage(self) -> Lineage: ...

    @property
    def registry(self) -> Registry: ...

    @property
    def approvals(self) -> Approvals: ...

    @property
    def promotion(self) -> Promotion: ...

    @property
    def policies(self) -> Policies: ...

    @property
    def predictions(self) -> Predictions: ...

    @property
    def user_keys(self) -> UserKeys: ...

    @property
    def sessions(self) -> Sessions: ...

    @property
    def audit(self) -> Audit: ...

    @property
    def webhooks(self) -> Webhooks: ...

    @property
    def monitor_runs(self) -> MonitorRuns: ...

    @property
    def monitor_schedules(self) -> MonitorSchedules: ...

    @property
    def monitoring(self) -> Monitoring: ...

    @property
    def deployments(self) -> Deployments: ...

    @property
    def shadows(self) -> Shadows: ...

    @property
    def openlineage(self) -> OpenLineage: ...

    @property
    def reproductions(self) -> Reproductions: ...

    @property
    def explanations(self) -> Reports: ...

    @property
    def findings(self) -> Findings: ...

    @property
    def reviews(self) -> Reviews: ...

    @property
    def cards(self) -> Cards: ...

    @property
    def exports(self) -> Exports: ...

    @property
    def mlflow_import(self) -> MlflowImport: ...

    @property
    def dvc_import(self) -> DvcImport: ...

    @property
    def pipelines(self) -> Pipelines: ...

    def record_read(self, digest: str, actor: str) -> None: ...

    def search_runs(
        self,
        filter_text: str | None = None,
        order_by: Sequence[str] | None = None,
        max_results: int = 1000,
        experiments: Sequence[str] | None = None,
    ) -> list[RunRecord]: ...

    def search_run_page(
        self,
        filter_text: str | None = None,
        order_by: Sequence[str] | None = None,
        max_results: int = 1000,
        experiments: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> RunPage: ...

    def close(self) -> None: ...
