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
from typing import TYPE_CHECKING, Any

from clew.errors import ClewError

if TYPE_CHECKING:
    import pandas as pd

    from clew.client.client import Client
    from clew.client.run import ActiveRun
    from clew.domain.records import ArtifactRecord, RunRecord

# ``import clew`` stays cheap (no pandas, pyarrow, httpx, SQLAlchemy or capture machinery): the
# public names below are imported on first use, through the module ``__getattr__`` at the end.
_EXPORTS = {
    "ActiveRun": "clew.client.run",
    "ArtifactRecord": "clew.domain.records",
    "Client": "clew.client.client",
    "RunRecord": "clew.domain.records",
    "connect": "clew.client.default",
    "data_source": "clew.client.specs",
    "feature_group": "clew.client.specs",
    "get_client": "clew.client.default",
}
# Modules whose whole ``__all__`` is part of clew's API (registry, capture and trace functions).
_EXPORTING_MODULES = ("clew.client.governance", "clew.client.predictions")
_SUBPACKAGES = frozenset(
    {"cli", "client", "domain", "errors", "hookspecs", "integrations", "server", "service", "store"}
)

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


def seed(value: int) -> int:
    return _client().seed(value)


class _DefaultLineage:
    """``clew.lineage``: the default client's lineage queries."""

    def __getattr__(self, name: str) -> Any:
        return getattr(_client().lineage, name)


lineage = _DefaultLineage()


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
        value = _exported_by_modules(name)
    globals()[name] = value
    return value


def _exported_by_modules(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(f"module 'clew' has no attribute {name!r}")
    for module_name in _EXPORTING_MODULES:
        module = importlib.import_module(module_name)
        if name in module.__all__:
            return getattr(module, name)
    raise AttributeError(f"module 'clew' has no attribute {name!r}")


def __dir__() -> list[str]:
    names = set(globals()) | set(_EXPORTS) | {"__version__"}
    for module_name in _EXPORTING_MODULES:
        names.update(importlib.import_module(module_name).__all__)
    return sorted(names)
