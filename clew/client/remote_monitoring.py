"""``RemoteMonitoring``: baselines and monitoring checks on a clew server, over HTTP.

A ref (``churn@production``) is resolved to its version first, so every route names the model
in its path and per-model grants apply. The server computes; this side only sends the window
and reads back the same ``Baseline`` and ``CheckReport`` values an embedded store returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clew.client.remote_registry import RemoteRegistry
from clew.client.transport import Transport
from clew.domain.baselines import Baseline
from clew.domain.monitoring import CheckReport, Window
from clew.errors import InvalidInputError, NotFoundError


class RemoteMonitoring:
    """``MonitoringService`` over HTTP."""

    def __init__(self, transport: Transport, registry: RemoteRegistry) -> None:
        self._t = transport
        self._registry = registry

    def _path(self, ref: str) -> str:
        version = self._registry.resolve(ref)
        return f"/models/{version.name}/versions/{version.version}/baseline"

    def create_baseline(
        self,
        ref: str,
        actor: str,
        *,
        dataset: str | None = None,
        prediction: str | None = None,
    ) -> Baseline:
        body = {"dataset": dataset, "prediction": prediction}
        return Baseline.from_dict(self._t.call("POST", self._path(ref), json_body=body))

    def import_baseline(
        self, ref: str, statistics: str, constraints: str | None, actor: str
    ) -> Baseline:
        body = {"statistics": statistics, "constraints": constraints}
        path = f"{self._path(ref)}/import"
        return Baseline.from_dict(self._t.call("POST", path, json_body=body))

    def find_baseline(self, ref: str) -> Baseline | None:
        try:
            return self.get_baseline(ref)
        except NotFoundError:
            return None

    def get_baseline(self, ref: str) -> Baseline:
        return Baseline.from_dict(self._t.call("GET", self._path(ref)))

    def edit_constraints(
        self, ref: str, edits: Mapping[str, Mapping[str, Any]], actor: str, reason: str = ""
    ) -> Baseline:
        body = {"edits": {k: dict(v) for k, v in edits.items()}, "reason": reason}
        path = f"{self._path(ref)}/constraints"
        return Baseline.from_dict(self._t.call("POST", path, json_body=body))

    def import_constraints(self, ref: str, constraints: str, actor: str) -> Baseline:
        path = f"{self._path(ref)}/constraints/import"
        answer = self._t.call("POST", path, json_body={"constraints": constraints})
        return Baseline.from_dict(answer)

    def check_data_quality(self, window: Window, scheduler: Any = None) -> CheckReport:
        return self._check("data_quality", window, scheduler)

    def check_drift(self, window: Window, scheduler: Any = None) -> CheckReport:
        return self._check("drift", window, scheduler)

    def check_all(self, window: Window, scheduler: Any = None) -> list[CheckReport]:
        answer = self._call("all", window, scheduler)
        return [CheckReport.from_dict(report) for report in answer["reports"]]

    def _check(self, check: str, window: Window, scheduler: Any) -> CheckReport:
        return CheckReport.from_dict(self._call(check, window, scheduler))

    def _call(self, check: str, window: Window, scheduler: Any) -> Any:
        if scheduler is not None:
            raise InvalidInputError(
                "a client of a clew server cannot choose a Dask scheduler (the server would run "
                "what it answers); the server's operator sets CLEW_MONITOR_DASK_SCHEDULER instead."
            )
        path = f"/models/{window.model}/versions/{window.version}/checks/{check}"
        body = {"start_ms": window.start_ms, "end_ms": window.end_ms, "last_n": window.last_n}
        return self._t.call("POST", path, json_body=body)
