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

from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import pandas as pd

from clew.client import governance, predictions  # noqa: F401 - their __all__ joins ours
from clew.client.client import Client
from clew.client.default import connect, get_client
from clew.client.governance import *  # noqa: F403 - the registry functions, listed in its __all__
from clew.client.predictions import *  # noqa: F403 - capture and trace functions
from clew.client.run import ActiveRun
from clew.client.specs import data_source, feature_group
from clew.domain.records import ArtifactRecord, RunRecord
from clew.errors import ClewError

try:
    __version__ = version("clew")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "ActiveRun",
    "ArtifactRecord",
    "ClewError",
    "Client",
    "RunRecord",
    "__version__",
    "active_run",
    "connect",
    "data_source",
    "feature_group",
    "get_client",
    "get_run",
    "lineage",
    "log_input",
    "log_metric",
    "log_metrics",
    "log_output",
    "log_param",
    "log_params",
    "search_runs",
    "seed",
    "set_tag",
    "set_tags",
    "start_run",
]


def start_run(
    experiment: str = "default",
    name: str | None = None,
    kind: str = "training",
    **options: Any,
) -> ActiveRun:
    return get_client().start_run(experiment, name, kind, **options)


def active_run() -> ActiveRun | None:
    return get_client().active_run()


def _require_active() -> ActiveRun:
    run = get_client().active_run()
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
    return get_client().get_run(run_id)


def search_runs(
    filter: str | None = None,
    order_by: Sequence[str] | None = None,
    max_results: int = 1000,
    experiments: Sequence[str] | None = None,
) -> pd.DataFrame:
    return get_client().search_runs(filter, order_by, max_results, experiments)


def seed(value: int) -> int:
    return get_client().seed(value)


class _DefaultLineage:
    """``clew.lineage``: the default client's lineage queries."""

    def __getattr__(self, name: str) -> Any:
        return getattr(get_client().lineage, name)


lineage = _DefaultLineage()
