"""clew: follow the thread from any prediction back to the model, approval, data and code.

import clew

with clew.start_run(experiment="churn", name="train", kind="training") as run:
    run.log_params({"model": "rf", "n_estimators": 200})
    run.log_input(train_df, name="churn-train")
    run.log_metric("auc", 0.91)
    run.log_model(model, name="churn-rf")

clew.search_runs("metrics.auc > 0.8 and params.model = 'rf'")
clew.lineage.upstream("churn/1").to_pandas()
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from clew.errors import ClewError

if TYPE_CHECKING:
    # What type checkers and IDEs see for the lazily served names below: their real types.
    import pandas as pd

    from clew.client.batch import BatchResult, predict_batch
    from clew.client.cards import card, edit_card, export_card, import_card
    from clew.client.client import Client, Lineage
    from clew.client.default import connect, get_client
    from clew.client.deployments import deployments, shadow_report, status
    from clew.client.explain import bias_report, explain, explain_prediction, version_reports
    from clew.client.exports import annex_iv, export_sr11_7, sr11_7_inventory
    from clew.client.findings import (
        add_finding,
        findings,
        get_finding,
        raise_overdue_reviews,
        review_model,
        review_status,
        review_statuses,
        reviews,
        set_review_due,
        update_finding,
    )
    from clew.client.governance import (
        alias_at,
        alias_history,
        alias_history_records,
        approve,
        archive,
        create_model,
        create_user_key,
        get_model,
        get_policy,
        get_version,
        list_model_records,
        list_models,
        load_model,
        model_history,
        model_version_records,
        model_versions,
        promote,
        register_model,
        register_user_key,
        reject,
        revoke,
        revoke_session,
        revoke_user_key,
        rollback,
        sessions,
        set_policy,
        user_keys,
        version_status,
    )
    from clew.client.monitor_runs import (
        check_model_quality,
        monitor_runs,
        monitor_schedules,
        monitor_status,
        resolve_violation,
        run_monitor,
        schedule_monitor,
        unschedule_monitor,
    )
    from clew.client.pipelines import pipeline, show_pipeline, step
    from clew.client.predictions import (
        capture_stats,
        flush_captures,
        get_prediction,
        log_labels,
        public_key,
        rotate_signing_key,
        signing_keys,
        trace,
    )
    from clew.client.reproduce import reproduce
    from clew.client.run import ActiveRun
    from clew.client.specs import data_source, feature_group
    from clew.client.webhooks import (
        add_webhook,
        deliver_webhooks,
        remove_webhook,
        verify_webhook,
        webhook_deliveries,
        webhooks,
    )
    from clew.domain.quality import QualitySpec
    from clew.domain.records import ArtifactRecord, RunPage, RunRecord

    __version__: str

# ``import clew`` stays cheap (no pandas, pyarrow, httpx, SQLAlchemy or capture machinery): the
# public names below are imported on first use, through the module ``__getattr__`` at the end.
_EXPORTS = {
    "ActiveRun": "clew.client.run",
    "ArtifactRecord": "clew.domain.records",
    "Client": "clew.client.client",
    "RunPage": "clew.domain.records",
    "RunRecord": "clew.domain.records",
    "connect": "clew.client.default",
    "data_source": "clew.client.specs",
    "feature_group": "clew.client.specs",
    "get_client": "clew.client.default",
    # the registry and approvals
    "alias_at": "clew.client.governance",
    "alias_history": "clew.client.governance",
    "alias_history_records": "clew.client.governance",
    "approve": "clew.client.governance",
    "archive": "clew.client.governance",
    "create_model": "clew.client.governance",
    "create_user_key": "clew.client.governance",
    "get_model": "clew.client.governance",
    "get_policy": "clew.client.governance",
    "get_version": "clew.client.governance",
    "list_models": "clew.client.governance",
    "list_model_records": "clew.client.governance",
    "load_model": "clew.client.governance",
    "model_history": "clew.client.governance",
    "model_versions": "clew.client.governance",
    "model_version_records": "clew.client.governance",
    "promote": "clew.client.governance",
    "register_model": "clew.client.governance",
    "register_user_key": "clew.client.governance",
    "reject": "clew.client.governance",
    "revoke": "clew.client.governance",
    "revoke_session": "clew.client.governance",
    "revoke_user_key": "clew.client.governance",
    "rollback": "clew.client.governance",
    "sessions": "clew.client.governance",
    "set_policy": "clew.client.governance",
    "user_keys": "clew.client.governance",
    "version_status": "clew.client.governance",
    # prediction capture and trace
    "capture_stats": "clew.client.predictions",
    "flush_captures": "clew.client.predictions",
    "get_prediction": "clew.client.predictions",
    "log_labels": "clew.client.predictions",
    "public_key": "clew.client.predictions",
    "rotate_signing_key": "clew.client.predictions",
    "signing_keys": "clew.client.predictions",
    "trace": "clew.client.predictions",
    # webhooks
    "add_webhook": "clew.client.webhooks",
    "deliver_webhooks": "clew.client.webhooks",
    "remove_webhook": "clew.client.webhooks",
    "verify_webhook": "clew.client.webhooks",
    "webhook_deliveries": "clew.client.webhooks",
    "webhooks": "clew.client.webhooks",
    # monitoring: model quality, monitor runs, violations and schedules
    "QualitySpec": "clew.domain.quality",
    "check_model_quality": "clew.client.monitor_runs",
    "monitor_runs": "clew.client.monitor_runs",
    "monitor_schedules": "clew.client.monitor_runs",
    "monitor_status": "clew.client.monitor_runs",
    "resolve_violation": "clew.client.monitor_runs",
    "run_monitor": "clew.client.monitor_runs",
    "schedule_monitor": "clew.client.monitor_runs",
    "unschedule_monitor": "clew.client.monitor_runs",
    # batch scoring
    "BatchResult": "clew.client.batch",
    "predict_batch": "clew.client.batch",
    # serving deployments
    "deployments": "clew.client.deployments",
    "status": "clew.client.deployments",
    "shadow_report": "clew.client.deployments",
    # reproduction
    "reproduce": "clew.client.reproduce",
    # explanations and bias reports, recorded as approval evidence
    "bias_report": "clew.client.explain",
    "explain": "clew.client.explain",
    "explain_prediction": "clew.client.explain",
    "version_reports": "clew.client.explain",
    # model cards
    "card": "clew.client.cards",
    "edit_card": "clew.client.cards",
    "export_card": "clew.client.cards",
    "import_card": "clew.client.cards",
    # regulator exports
    "annex_iv": "clew.client.exports",
    "export_sr11_7": "clew.client.exports",
    "sr11_7_inventory": "clew.client.exports",
    # validation findings and model reviews
    "add_finding": "clew.client.findings",
    "findings": "clew.client.findings",
    "get_finding": "clew.client.findings",
    "raise_overdue_reviews": "clew.client.findings",
    "review_model": "clew.client.findings",
    "review_status": "clew.client.findings",
    "review_statuses": "clew.client.findings",
    "reviews": "clew.client.findings",
    "update_finding": "clew.client.findings",
    "set_review_due": "clew.client.findings",
    # pipelines
    "pipeline": "clew.client.pipelines",
    "show_pipeline": "clew.client.pipelines",
    "step": "clew.client.pipelines",
}
_SUBPACKAGES = frozenset(
    {"cli", "client", "domain", "errors", "hookspecs", "integrations", "server", "service", "store"}
)

__all__ = [
    "ActiveRun",
    "ArtifactRecord",
    "BatchResult",
    "ClewError",
    "Client",
    "QualitySpec",
    "RunPage",
    "RunRecord",
    "__version__",
    "active_run",
    "add_finding",
    "add_webhook",
    "alias_at",
    "alias_history",
    "alias_history_records",
    "annex_iv",
    "approve",
    "archive",
    "bias_report",
    "capture_stats",
    "card",
    "check_model_quality",
    "connect",
    "create_model",
    "create_user_key",
    "data_source",
    "deliver_webhooks",
    "deployments",
    "edit_card",
    "explain",
    "explain_prediction",
    "export_card",
    "export_sr11_7",
    "feature_group",
    "findings",
    "flush_captures",
    "get_client",
    "get_finding",
    "get_model",
    "get_policy",
    "get_prediction",
    "get_run",
    "get_version",
    "import_card",
    "lineage",
    "list_model_records",
    "list_models",
    "load_model",
    "log_input",
    "log_labels",
    "log_metric",
    "log_metrics",
    "log_output",
    "log_param",
    "log_params",
    "model_history",
    "model_version_records",
    "model_versions",
    "monitor_runs",
    "monitor_schedules",
    "monitor_status",
    "pipeline",
    "predict_batch",
    "promote",
    "public_key",
    "raise_overdue_reviews",
    "register_model",
    "register_user_key",
    "reject",
    "remove_webhook",
    "reproduce",
    "resolve_violation",
    "review_model",
    "review_status",
    "review_statuses",
    "reviews",
    "revoke",
    "revoke_session",
    "revoke_user_key",
    "rollback",
    "rotate_signing_key",
    "run_monitor",
    "schedule_monitor",
    "search_run_records",
    "search_runs",
    "seed",
    "sessions",
    "set_policy",
    "set_review_due",
    "set_tag",
    "set_tags",
    "shadow_report",
    "show_pipeline",
    "signing_keys",
    "sr11_7_inventory",
    "start_run",
    "status",
    "step",
    "trace",
    "unschedule_monitor",
    "update_finding",
    "user_keys",
    "verify_webhook",
    "version_reports",
    "version_status",
    "webhook_deliveries",
    "webhooks",
]


def _client() -> Client:
    from clew.client.default import get_client

    return get_client()


def start_run(
    experiment: str = "default",
    name: str | None = None,
    kind: str = "training",
    **options: Any,
) -> ActiveRun:
    return _client().start_run(experiment, name, kind, **options)


def active_run() -> ActiveRun | None:
    return _client().active_run()


def _require_active() -> ActiveRun:
    run = _client().active_run()
    if run is None:
        raise ClewError("there is no active run; wrap your code in `with clew.start_run():`.")
    return run


def log_param(key: str, value: Any) -> None:
    _require_active().log_param(key, value)


def log_params(params: Mapping[str, Any]) -> None:
    _require_active().log_params(params)


def log_metric(key: str, value: float, step: int | None = None) -> None:
    _require_active().log_metric(key, value, step)


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    _require_active().log_metrics(metrics, step)


def set_tag(key: str, value: Any) -> None:
    _require_active().set_tag(key, value)


def set_tags(tags: Mapping[str, Any]) -> None:
    _require_active().set_tags(tags)


def log_input(obj: Any, name: str | None = None, type: str | None = None) -> ArtifactRecord:
    return _require_active().log_input(obj, name, type)


def log_output(obj: Any, name: str | None = None, type: str | None = None) -> ArtifactRecord:
    return _require_active().log_output(obj, name, type)


def get_run(run_id: str) -> RunRecord:
    return _client().get_run(run_id)


def search_runs(
    filter: str | None = None,
    order_by: Sequence[str] | None = None,
    max_results: int = 1000,
    experiments: Sequence[str] | None = None,
) -> pd.DataFrame:
    return _client().search_runs(filter, order_by, max_results, experiments)


def search_run_records(
    filter: str | None = None,
    order_by: Sequence[str] | None = None,
    max_results: int = 1000,
    experiments: Sequence[str] | None = None,
    page_token: str | None = None,
) -> RunPage:
    return _client().search_run_records(filter, order_by, max_results, experiments, page_token)


def seed(value: int) -> int:
    return _client().seed(value)


class _DefaultLineage:
    """``clew.lineage``: the default client's lineage queries."""

    def __getattr__(self, name: str) -> Any:
        return getattr(_client().lineage, name)


lineage = cast("Lineage", _DefaultLineage())


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("clew")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0"


def __getattr__(name: str) -> Any:
    """Import a public name on first use and keep it, so later lookups are plain attributes."""
    if name == "__version__":
        value: Any = _version()
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f"clew.{name}")
    else:
        raise AttributeError(f"module 'clew' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | {"__version__"})
