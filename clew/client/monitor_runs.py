"""Monitoring methods of ``Client``: model quality, monitor runs, violations and schedules.

``run_monitor`` is what an external scheduler (cron, Airflow) calls: it runs the checks over
one window once and answers the same run when asked again (``rerun=True`` runs it anew).
Violations change the version's governance state as the policy's ``monitoring`` section says;
``resolve_violation`` lifts that (see docs/monitoring-governance.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clew.domain.monitor_runs import MonitorRun, MonitorSchedule
from clew.domain.monitoring import CheckReport
from clew.domain.quality import QualitySpec
from clew.domain.records import RegistryEvent, VersionRecord

if TYPE_CHECKING:
    import pandas as pd

    from clew.client.client import Client
    from clew.service.protocols import Backend

__all__ = [
    "check_model_quality",
    "monitor_runs",
    "monitor_schedules",
    "monitor_status",
    "resolve_violation",
    "run_monitor",
    "schedule_monitor",
    "unschedule_monitor",
]

VersionRef = str | VersionRecord
RUN_COLUMNS = [
    "id",
    "window_key",
    "attempt",
    "rows",
    "violations",
    "action",
    "run_id",
    "created_at",
]


class MonitorMixin:
    """The monitor through the SDK, on either backend."""

    if TYPE_CHECKING:
        _service: Backend

        @property
        def actor(self) -> str: ...

    def check_model_quality(
        self,
        ref: VersionRef,
        *,
        window: str | None = None,
        start: str | None = None,
        end: str | None = None,
        last: int | None = None,
        quality: QualitySpec | None = None,
    ) -> CheckReport:
        """Model quality of one window from the labels logged so far (``log_labels``); ask
        again after more labels arrive for the new figures (``metrics["label_coverage"]``)."""
        return self._service.monitor_runs.check_quality(
            _ref(ref), self.actor, window=window, start=start, end=end, last=last, quality=quality
        )

    def run_monitor(
        self,
        ref: VersionRef,
        *,
        window: str | None = None,
        start: str | None = None,
        end: str | None = None,
        last: int | None = None,
        rerun: bool = False,
        quality: QualitySpec | None = None,
    ) -> MonitorRun:
        """Run the checks over one window, once: the same window again returns the first run
        (``reused``) unless ``rerun``. ``window="1h"`` is the newest complete hour."""
        return self._service.monitor_runs.run_monitor(
            _ref(ref),
            self.actor,
            window=window,
            start=start,
            end=end,
            last=last,
            rerun=rerun,
            quality=quality,
        )

    def monitor_runs(self, ref: VersionRef, limit: int = 50) -> pd.DataFrame:
        """The version's newest monitor runs, one row each."""
        runs = self._service.monitor_runs.list_runs(_ref(ref), limit)
        import pandas as pd  # loaded on first use: connecting must stay light

        return pd.DataFrame([_run_row(run) for run in runs], columns=RUN_COLUMNS)

    def resolve_violation(self, ref: VersionRef, comment: str) -> RegistryEvent:
        """Lift the version's open violations (a ``revalidated`` event); those the policy says
        need a fresh approval are lifted only by one."""
        return self._service.monitor_runs.resolve(_ref(ref), self.actor, comment)

    def monitor_status(self, ref: VersionRef) -> dict[str, Any]:
        """The version's status with its open violations, newest runs and schedules."""
        status = self._service.promotion.version_status(_ref(ref))
        runs = self._service.monitor_runs.list_runs(_ref(ref), 10)
        return {
            "ref": status["ref"],
            "status": status["status"],
            "open_violations": status["open_violations"],
            "runs": [_run_row(run) for run in runs],
            "schedules": [
                item.to_dict() for item in self._service.monitor_schedules.schedules(status["name"])
            ],
        }

    def schedule_monitor(self, ref: VersionRef, cron: str, window: str = "1h") -> MonitorSchedule:
        """Have ``clew server`` run the monitor on ``ref`` at each ``cron`` time, over the
        ``window`` before it (five-field cron, UTC)."""
        return self._service.monitor_schedules.schedule(_ref(ref), cron, window, self.actor)

    def monitor_schedules(self, model: str | None = None) -> list[MonitorSchedule]:
        return self._service.monitor_schedules.schedules(model)

    def unschedule_monitor(self, schedule_id: str) -> None:
        self._service.monitor_schedules.unschedule(schedule_id, self.actor)


def _ref(ref: VersionRef) -> str:
    return ref.ref if isinstance(ref, VersionRecord) else ref


def _run_row(run: MonitorRun) -> dict[str, Any]:
    data = run.to_dict()
    return {column: data[column] for column in RUN_COLUMNS}


def _client() -> Client:
    from clew.client.default import get_client

    return get_client()


def check_model_quality(ref: VersionRef, **options: Any) -> CheckReport:
    return _client().check_model_quality(ref, **options)


def run_monitor(ref: VersionRef, **options: Any) -> MonitorRun:
    return _client().run_monitor(ref, **options)


def monitor_runs(ref: VersionRef, limit: int = 50) -> pd.DataFrame:
    return _client().monitor_runs(ref, limit)


def monitor_status(ref: VersionRef) -> dict[str, Any]:
    return _client().monitor_status(ref)


def resolve_violation(ref: VersionRef, comment: str) -> RegistryEvent:
    return _client().resolve_violation(ref, comment)


def schedule_monitor(ref: VersionRef, cron: str, window: str = "1h") -> MonitorSchedule:
    return _client().schedule_monitor(ref, cron, window)


def monitor_schedules(model: str | None = None) -> list[MonitorSchedule]:
    return _client().monitor_schedules(model)


def unschedule_monitor(schedule_id: str) -> None:
    _client().unschedule_monitor(schedule_id)
