"""The monitor over HTTP: model quality, runs per window, resolving violations, schedules.

Answers come back as the same values an embedded store returns (``CheckReport``,
``MonitorRun``, ``MonitorSchedule``, ``RegistryEvent``); the server attributes every write to
the token's user, so the ``actor`` arguments are ignored.
"""

from __future__ import annotations

from typing import Any

from clew.client.transport import Transport
from clew.domain.monitor_runs import (
    MonitorRun,
    MonitorSchedule,
    monitor_run_from_dict,
    schedule_from_dict,
)
from clew.domain.monitoring import CheckReport
from clew.domain.quality import QualitySpec
from clew.domain.records import RegistryEvent


class RemoteMonitorRuns:
    """``MonitorRunService`` over HTTP."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

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
    ) -> CheckReport:
        body = _window_body(ref, window, start, end, last, quality)
        return CheckReport.from_dict(self._t.call("POST", "/monitor/quality", json_body=body))

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
    ) -> MonitorRun:
        body = {**_window_body(ref, window, start, end, last, quality), "rerun": rerun}
        return monitor_run_from_dict(self._t.call("POST", "/monitor/runs", json_body=body))

    def list_runs(self, ref: str, limit: int = 50) -> list[MonitorRun]:
        rows = self._t.call("GET", "/monitor/runs", params={"ref": ref, "limit": limit})
        return [monitor_run_from_dict(row) for row in rows]

    def resolve(self, ref: str, actor: str, comment: str) -> RegistryEvent:
        body = {"ref": ref, "comment": comment}
        return self._t.record(RegistryEvent, "POST", "/monitor/resolve", json_body=body)


class RemoteMonitorSchedules:
    """``MonitorScheduleService`` over HTTP."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def schedule(self, ref: str, cron: str, window: str, actor: str) -> MonitorSchedule:
        body = {"ref": ref, "cron": cron, "window": window}
        return schedule_from_dict(self._t.call("POST", "/monitor/schedules", json_body=body))

    def schedules(self, model: str | None = None) -> list[MonitorSchedule]:
        params = {"model": model} if model is not None else None
        rows = self._t.call("GET", "/monitor/schedules", params=params)
        return [schedule_from_dict(row) for row in rows]

    def unschedule(self, schedule_id: str, actor: str) -> None:
        self._t.call("DELETE", f"/monitor/schedules/{schedule_id}")


def _window_body(
    ref: str,
    window: str | None,
    start: str | None,
    end: str | None,
    last: int | None,
    quality: QualitySpec | None,
) -> dict[str, Any]:
    return {
        "ref": ref,
        "window": window,
        "start": start,
        "end": end,
        "last": last,
        "quality": quality.to_dict() if quality is not None else None,
    }
