"""A monitor run and a monitor schedule as values, the same from either backend.

A monitor run is one pass of the checks over one window of one version
(clew/service/monitor_runs.py); a schedule says when ``clew server`` makes one
(clew/service/monitor_schedules.py). Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clew.domain.monitoring import CheckReport, Window
from clew.domain.records import ms_to_iso


@dataclass(frozen=True)
class MonitorRun:
    """One run of the monitor over one window: its reports, the lineage run holding them, and
    what the policy made of its violations (``action``; None when it found none).

    ``reused`` says this answer is an earlier run of the same window, returned because the
    caller did not ask for a rerun.
    """

    id: str
    window: Window
    attempt: int
    run_id: str
    rows: int
    reports: tuple[CheckReport, ...]
    action: str | None
    created_ms: int
    created_by: str
    reused: bool = False

    @property
    def violations(self) -> int:
        return sum(len(report.violations) for report in self.reports)

    @property
    def passed(self) -> bool:
        return self.violations == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "window": self.window.to_dict(),
            "window_key": self.window.key,
            "attempt": self.attempt,
            "run_id": self.run_id,
            "rows": self.rows,
            "passed": self.passed,
            "violations": self.violations,
            "action": self.action,
            "reports": [report.to_dict() for report in self.reports],
            "created_at": ms_to_iso(self.created_ms),
            "created_ms": self.created_ms,
            "created_by": self.created_by,
            "reused": self.reused,
        }


def monitor_run_from_dict(data: Mapping[str, Any]) -> MonitorRun:
    return MonitorRun(
        id=data["id"],
        window=Window.from_dict(data["window"]),
        attempt=int(data["attempt"]),
        run_id=data["run_id"],
        rows=int(data["rows"]),
        reports=tuple(CheckReport.from_dict(report) for report in data["reports"]),
        action=data["action"],
        created_ms=int(data["created_ms"]),
        created_by=data["created_by"],
        reused=bool(data["reused"]),
    )


@dataclass(frozen=True)
class MonitorSchedule:
    """A cron schedule of monitor runs of ``target`` (a ref; an alias follows its moves)."""

    id: str
    target: str
    cron: str
    window_ms: int
    created_ms: int
    created_by: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "target": self.target,
            "cron": self.cron,
            "window_ms": self.window_ms,
            "created_at": ms_to_iso(self.created_ms),
            "created_ms": self.created_ms,
            "created_by": self.created_by,
        }


def schedule_from_dict(data: Mapping[str, Any]) -> MonitorSchedule:
    return MonitorSchedule(
        data["id"],
        data["target"],
        data["cron"],
        int(data["window_ms"]),
        int(data["created_ms"]),
        data["created_by"],
    )
