"""Monitoring: one model's monitor runs, their figures over time, violations and two windows
side by side; and the monitor status shown on the inventory, model and version pages.

Everything comes from the monitor's own service (``monitor_runs.list_runs``) and the version's
governance status (``promotion.version_status``), so the page says what ``clew monitor status``
says. A report's figures are read generically: every number in ``CheckReport.metrics``, at any
depth, is one figure of one subject (the keys above it, such as a feature or a segment), so a
new check or a renamed drift measure shows up without a change here. Nothing on the page writes.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from starlette.responses import Response

from clew.domain.monitor_runs import MonitorRun
from clew.domain.monitoring import CheckReport, Window
from clew.domain.records import ModelRecord, VersionRecord
from clew.errors import InvalidInputError
from clew.server.ui.pages import Page
from clew.server.ui.rendering import format_time, to_json
from clew.service import approvals, inventory, registry

RUNS_SHOWN = 50
VERSIONS_SHOWN = 20
MAX_CHARTS = 400
WHOLE_WINDOW = "whole window"
# Configuration a report echoes back (how it judged), not something it measured.
NOT_FIGURES = frozenset({"spec"})
CHECK_TITLES = {
    "drift": "Drift",
    "data_quality": "Data quality",
    "model_quality": "Model quality",
}
# Figures a check always carries: rows read and constraints broken.
ROWS, VIOLATIONS = "rows", "violations"
QUALITY_CHECK = "model_quality"

FigureKey = tuple[str, str, str]  # (check, subject, figure)


@dataclass(frozen=True)
class MonitorSummary:
    """A version's monitor status in one line: its newest run and open violations."""

    ref: str
    last_ms: int | None
    passed: bool | None
    violations: int
    action: str | None
    open_violations: int

    @property
    def outcome(self) -> str:
        """``passed``, ``failed`` or ``not monitored``, for a badge."""
        if self.passed is None:
            return "not monitored"
        return "passed" if self.passed else "failed"


@dataclass
class Chart:
    """One figure of one subject of one check across the runs, oldest first."""

    key: str
    check: str
    subject: str
    figure: str
    points: list[tuple[int, float, bool]] = field(default_factory=list)

    @property
    def latest(self) -> float:
        return self.points[-1][1]


@dataclass
class CheckSection:
    """A check's charts grouped by subject (a feature, a segment, the whole window)."""

    check: str
    title: str
    subjects: dict[str, list[Chart]]


@dataclass(frozen=True)
class ComparedFigure:
    check: str
    subject: str
    figure: str
    first: float | None
    second: float | None

    @property
    def change(self) -> float | None:
        if self.first is None or self.second is None:
            return None
        return self.second - self.first


def add_routes(router: APIRouter, page: Any, action: Any) -> None:
    @router.get("/models/{name}/monitoring", name="ui.monitoring")
    def monitoring(
        name: str,
        current: Annotated[Page, Depends(page)],
        version: Annotated[int | None, Query(ge=1, le=2**31)] = None,
        a: str = "",
        b: str = "",
    ) -> Response:
        overview = inventory.model_overview(current.store, name, VERSIONS_SHOWN)
        latest = _latest_runs(current, name, [s.version.version for s in overview.versions])
        chosen = version or _default_version(latest, overview.model.last_version)
        if chosen > overview.model.last_version:
            raise InvalidInputError(
                f"{name} has no version {chosen}; its newest is {overview.model.last_version}."
            )
        ref = f"{name}/{chosen}"
        runs = current.services.monitor_runs.list_runs(ref, RUNS_SHOWN)
        first, second = _pair(runs, a, b)
        charts = chart_series(runs)
        return current.render(
            "monitoring.html",
            overview=overview,
            latest=latest,
            chosen=chosen,
            ref=ref,
            runs=runs,
            status=current.services.promotion.version_status(ref),
            sections=sections(charts),
            charts_json=to_json({c.key: c.points for c in charts}),
            truncated=len(charts) >= MAX_CHARTS,
            violations=violation_rows(runs),
            first=first,
            second=second,
            compared=compare(first, second),
            window_label=window_label,
            quality_note=quality_note(runs),
        )


def _latest_runs(current: Page, name: str, versions: Iterable[int]) -> list[MonitorRun | None]:
    """Each listed version's newest monitor run (None when it has none), newest version first."""
    service = current.services.monitor_runs
    return [next(iter(service.list_runs(f"{name}/{number}", 1)), None) for number in versions]


def _default_version(latest: Sequence[MonitorRun | None], newest: int) -> int:
    """The newest version that has been monitored, else the newest version."""
    for run in latest:
        if run is not None:
            return run.window.version
    return max(newest, 1)


def _pair(runs: Sequence[MonitorRun], a: str, b: str) -> tuple[MonitorRun | None, ...]:
    """The two runs to compare: those asked for, else the two newest (older one first)."""
    by_id = {run.id: run for run in runs}
    for wanted in (a, b):
        if wanted and wanted not in by_id:
            raise InvalidInputError(
                f"monitor run {wanted!r} is not among this version's newest {RUNS_SHOWN} runs; "
                "pick the windows from the lists on the page."
            )
    if a or b:
        return by_id.get(a), by_id.get(b)
    if len(runs) >= 2:
        return runs[1], runs[0]
    return (runs[0] if runs else None), None


def figures(report: CheckReport) -> dict[tuple[str, str], float]:
    """Every number a report carries as ``(subject, figure) -> value``: a number at the top of
    ``metrics`` is the whole window's; one nested under keys (a feature, a segment) belongs to
    the subject those keys name. Text, booleans and lists (a confusion matrix) are not charted."""
    found: dict[tuple[str, str], float] = {
        (WHOLE_WINDOW, ROWS): float(report.rows),
        (WHOLE_WINDOW, VIOLATIONS): float(len(report.violations)),
    }

    def walk(path: tuple[str, ...], value: Any) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                walk((*path, str(key)), item)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            subject = " / ".join(path[:-1]) or WHOLE_WINDOW
            found[(subject, path[-1])] = float(value)

    for key, value in report.metrics.items():
        if key not in NOT_FIGURES:
            walk((str(key),), value)
    return found


def run_figures(run: MonitorRun) -> dict[FigureKey, float]:
    return {
        (report.check, subject, figure): value
        for report in run.reports
        for (subject, figure), value in figures(report).items()
    }


def chart_series(runs: Sequence[MonitorRun]) -> list[Chart]:
    """One chart per figure, its points the runs oldest first (at most ``MAX_CHARTS``)."""
    charts: dict[FigureKey, Chart] = {}
    for run in sorted(runs, key=lambda r: (r.created_ms, r.attempt)):
        for key, value in run_figures(run).items():
            chart = charts.get(key)
            if chart is None:
                if len(charts) >= MAX_CHARTS:
                    continue
                chart = charts[key] = Chart(f"c{len(charts)}", *key)
            chart.points.append((run.created_ms, value, run.passed))
    return list(charts.values())


def sections(charts: Iterable[Chart]) -> list[CheckSection]:
    """Charts by check (known checks first, in the order people read them), then subject,
    the whole window's figures first."""
    found: dict[str, CheckSection] = {}
    for chart in charts:
        section = found.setdefault(
            chart.check, CheckSection(chart.check, CHECK_TITLES.get(chart.check, chart.check), {})
        )
        section.subjects.setdefault(chart.subject, []).append(chart)
    order = list(CHECK_TITLES)
    ordered = sorted(
        found.values(),
        key=lambda s: (order.index(s.check) if s.check in order else len(order), s.check),
    )
    for section in ordered:
        section.subjects = dict(
            sorted(section.subjects.items(), key=lambda item: (item[0] != WHOLE_WINDOW, item[0]))
        )
    return ordered


def violation_rows(runs: Sequence[MonitorRun]) -> list[dict[str, Any]]:
    """Every violation the listed runs found, newest run first, with the policy's action."""
    return [
        {
            "run": run,
            "check": report.check,
            "violation": violation,
            "action": run.action or "none",
        }
        for run in runs
        for report in run.reports
        for violation in report.violations
    ]


def compare(first: MonitorRun | None, second: MonitorRun | None) -> list[ComparedFigure]:
    """Both runs' figures side by side, by check, subject and figure."""
    if first is None or second is None:
        return []
    left, right = run_figures(first), run_figures(second)
    keys = sorted(set(left) | set(right), key=lambda k: (k[0], k[1] != WHOLE_WINDOW, k[1], k[2]))
    return [ComparedFigure(*key, left.get(key), right.get(key)) for key in keys]


def quality_note(runs: Sequence[MonitorRun]) -> str | None:
    """Why the newest run judged no model quality (too few labels yet), or None."""
    for report in runs[0].reports if runs else ():
        note = report.metrics.get("note")
        if report.check == QUALITY_CHECK and isinstance(note, str):
            return note
    return None


def window_label(window: Window) -> str:
    """A window as people say it: a time range, or the newest N predictions."""
    if window.last_n is not None:
        return f"last {window.last_n} predictions"
    start = format_time(window.start_ms) if window.start_ms is not None else "the start"
    end = format_time(window.end_ms) if window.end_ms is not None else "now"
    return f"{start} to {end}"


def summary(current: Page, ref: str, status: Mapping[str, Any] | None = None) -> MonitorSummary:
    """The version's newest monitor run and open violations, for a status line; ``status`` is
    the version's ``version_status`` when the page already holds it."""
    runs = current.services.monitor_runs.list_runs(ref, 1)
    status = status or current.services.promotion.version_status(ref)
    return _summary(ref, runs[0] if runs else None, len(status["open_violations"]))


def summaries(current: Page, rows: Iterable[inventory.InventoryRow]) -> dict[str, MonitorSummary]:
    """The inventory page's monitor status by model name. Only versions that have been
    monitored are asked for their open violations (violations come only from monitor runs)."""
    found = {}
    for row in rows:
        if row.latest is None:
            continue
        ref = row.latest.ref
        runs = current.services.monitor_runs.list_runs(ref, 1)
        if not runs:
            found[row.model.name] = _summary(ref, None, 0)
            continue
        open_count = _open_violations(current, row.model, row.latest)
        found[row.model.name] = _summary(ref, runs[0], open_count)
    return found


def _open_violations(current: Page, model: ModelRecord, version: VersionRecord) -> int:
    """How many violations hold, folded from the version's events by the rule its status uses
    (``approvals.fold_decisions``), as the inventory folds its status column: one query, not
    the full ``version_status`` with every signature checked (the version page does that)."""
    with current.store.db.read() as connection:
        events = registry.read_events(
            connection,
            model,
            version=version.version,
            kinds=registry.STATUS_KINDS,
            newest_first=False,
        )
    return len(approvals.fold_decisions(model, version, events).open_violations())


def _summary(ref: str, run: MonitorRun | None, open_violations: int) -> MonitorSummary:
    if run is None:
        return MonitorSummary(ref, None, None, 0, None, open_violations)
    return MonitorSummary(
        ref, run.created_ms, run.passed, run.violations, run.action, open_violations
    )
