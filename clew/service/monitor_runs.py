"""The monitor runner: the checks over one window, once, recorded in lineage and governance.

``run_monitor`` resolves ``churn@production`` (or ``churn/3``) to a version, names the window,
and returns the window's earlier run unless a rerun is asked for, so an external scheduler
(cron, Airflow) may call it as often as it likes. Otherwise it runs every check (each a
``(Window) -> CheckReport``, ``standard_checks``), records a run in lineage (the version's
model artifact and any baseline contribute to it; the reports are its output artifacts and
their figures its metrics), and stores one ``monitor_runs`` row. When the reports found
violations the policy's ``monitoring`` section says what that does (``Policy.action_for``): a
``violation`` registry event, audited, imaged and followed by a signed checkpoint like every
governance decision, which ``approvals.VersionState`` folds into the version's status and
promotion. ``resolve`` records the person lifting it (a ``revalidated`` event).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError as SqlIntegrityError

from clew.domain import ids, monitor_windows
from clew.domain.monitor_runs import MonitorRun
from clew.domain.monitoring import CheckReport, Window
from clew.domain.quality import QualitySpec
from clew.domain.records import FINISHED, RegistryEvent, VersionRecord
from clew.errors import ConflictError, InvalidInputError
from clew.service import audit, policy, registry, signed_heads
from clew.service.approvals import get_version_state
from clew.service.artifacts import ArtifactService, get_artifact_row
from clew.service.model_quality import ModelQualityService, describe, quality_check
from clew.service.monitoring_checks import BASELINE_KEY, MonitoringService
from clew.service.runs import RunService, now_ms
from clew.store import schema
from clew.store.location import Store

Check = Callable[[Window], CheckReport]
EXPERIMENT = "monitoring"
WINDOW_TAG = "clew.monitor.window"


def standard_checks(store: Store, span: Window, quality: QualitySpec | None = None) -> list[Check]:
    """The checks a monitor run performs over ``span``: model quality always; data quality and
    drift when the version has a baseline (both from one read of the window)."""
    checks: list[Check] = [quality_check(store, quality)]
    monitoring = MonitoringService(store)
    if monitoring.find_baseline(f"{span.model}/{span.version}") is None:
        return checks
    reports: dict[str, CheckReport] = {}

    def from_one_read(name: str) -> Check:
        def check(window: Window) -> CheckReport:
            if not reports:
                reports.update((report.check, report) for report in monitoring.check_all(window))
            return reports[name]

        return check

    return [*checks, from_one_read("data_quality"), from_one_read("drift")]


class MonitorRunService:
    """Runs of the monitor per window, model quality on demand, and resolving violations."""

    def __init__(self, store: Store) -> None:
        self.store = store

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
        """Model quality of one window, computed now from the labels stored so far."""
        version = self._version(ref)
        span = monitor_windows.window_for(
            version.name,
            version.version,
            now_ms(),
            duration=window,
            start=start,
            end=end,
            last=last,
        )
        report = ModelQualityService(self.store).check_quality(span, quality)
        if report.rows == 0:
            raise InvalidInputError(f"no predictions of {describe(span)} were captured; {_fix()}")
        return report

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
        """Run the checks over one window once (``rerun`` runs it again); see the module. The
        last N predictions are pinned to the time range they span now, so the run is the same
        until newer predictions arrive."""
        version = self._version(ref)
        span = monitor_windows.window_for(
            version.name,
            version.version,
            now_ms(),
            duration=window,
            start=start,
            end=end,
            last=last,
        )
        span = MonitoringService(self.store).pin_last_n(span)
        return self.run_window(
            span, actor, rerun=rerun, checks=standard_checks(self.store, span, quality)
        )

    def run_window(
        self,
        span: Window,
        actor: str,
        *,
        rerun: bool = False,
        checks: Sequence[Check],
        allow_empty: bool = False,
    ) -> MonitorRun:
        """The checks over ``span``; an empty window is one sentence unless ``allow_empty``
        (a schedule records it, so it is not tried again)."""
        earlier = self.find_run(span)
        if earlier is not None and not rerun:
            return earlier
        reports = [check(span) for check in checks]
        rows = max((report.rows for report in reports), default=0)
        if rows == 0 and not allow_empty:
            raise InvalidInputError(f"no predictions of {describe(span)} were captured; {_fix()}")
        with self.store.db.read() as connection:
            version = registry.get_version_row(connection, span.model, span.version)
        run_id, digest = self._record_lineage(span, version, reports, actor)
        attempt = 0 if earlier is None else earlier.attempt + 1
        try:
            result = self._store_run(span, version, attempt, run_id, digest, reports, rows, actor)
        except SqlIntegrityError:
            found = self.find_run(span)
            if found is None:
                raise
            return found
        if result.action is not None:
            signed_heads.after_write(self.store, decision=True)
        return result

    def find_run(self, span: Window) -> MonitorRun | None:
        """The newest run of ``span``, or None."""
        table = schema.monitor_runs
        with self.store.db.read() as connection:
            row = connection.execute(
                select(table)
                .where(table.c.window_key == span.key)
                .order_by(table.c.attempt.desc())
                .limit(1)
            ).first()
        if row is None:
            return None
        return self._loaded(row, span)

    def list_runs(self, ref: str, limit: int = 50) -> list[MonitorRun]:
        """The newest monitor runs of the version ``ref`` names, newest first."""
        version = self._version(ref)
        table = schema.monitor_runs
        with self.store.db.read() as connection:
            rows = connection.execute(
                select(table)
                .where(table.c.model_id == version.model_id, table.c.version == version.version)
                .order_by(table.c.created_ms.desc(), table.c.attempt.desc())
                .limit(limit)
            ).all()
        return [self._loaded(row, _window_of(row, version)) for row in rows]

    @signed_heads.checkpointed(decision=True)
    def resolve(self, ref: str, actor: str, comment: str) -> RegistryEvent:
        """Lift the version's open violations (all but those needing a fresh approval)."""
        if not isinstance(comment, str) or not comment.strip():
            raise InvalidInputError(
                "resolving a violation needs a comment saying why it is resolved."
            )
        with self.store.db.write() as connection:
            state = get_version_state(connection, ref)
            if not state.open_violations():
                raise ConflictError(f"{state.ref} has no open monitoring violation to resolve.")
            return registry.append_event(
                connection,
                state.model.id,
                state.model.name,
                state.version.version,
                registry.REVALIDATED,
                actor,
                comment=comment,
                evidence={"resolves": [event.id for event in state.open_violations()]},
            )

    def _version(self, ref: str) -> VersionRecord:
        if not isinstance(ref, str):
            raise InvalidInputError(f"model ref {ref!r} must be text such as churn@production.")
        with self.store.db.read() as connection:
            return registry.resolve_version(connection, registry.parse_model_ref(ref))

    def _record_lineage(
        self, span: Window, version: VersionRecord, reports: Sequence[CheckReport], actor: str
    ) -> tuple[str, str]:
        """The run in lineage: the model (and baselines) in, the reports out, figures as
        metrics. Returns the run id and the digest of the combined report."""
        runs, artifacts = RunService(self.store), ArtifactService(self.store)
        run = runs.create_run(
            experiment=EXPERIMENT,
            name=f"monitor {version.ref}",
            kind="monitoring",
            actor=actor,
            params=_window_params(span),
            tags={WINDOW_TAG: span.key, "clew.monitor.model": version.ref},
        )
        for artifact_id in _inputs(version, reports):
            with self.store.db.read() as connection:
                artifact = get_artifact_row(connection, artifact_id)
            artifacts.log(
                run_id=run.id,
                direction="input",
                type_=artifact.type,
                name=artifact.name,
                digest=artifact.digest,
                actor=actor,
            )
        combined = json.dumps([r.to_dict() for r in reports], sort_keys=True, default=str)
        digest = self._output(artifacts, run.id, "monitor-report.json", combined, actor)
        for report in reports:
            text = json.dumps(report.constraint_violations(), sort_keys=True)
            self._output(artifacts, run.id, f"{report.check}-violations.json", text, actor)
        stamp = now_ms()
        points = [(key, value, 0, stamp) for key, value in _figures(reports)]
        runs.end_run(run.id, FINISHED, actor, points)
        return run.id, digest

    def _output(
        self, artifacts: ArtifactService, run_id: str, name: str, text: str, actor: str
    ) -> str:
        data = text.encode()
        stored = self.store.blobs.put_bytes(data)
        artifacts.log(
            run_id=run_id,
            direction="output",
            type_="report",
            name=name,
            digest=stored.digest,
            actor=actor,
            size=stored.size,
            blobs={stored.digest: (stored.size, "file")},
        )
        return stored.digest

    def _store_run(
        self,
        span: Window,
        version: VersionRecord,
        attempt: int,
        run_id: str,
        digest: str,
        reports: Sequence[CheckReport],
        rows: int,
        actor: str,
    ) -> MonitorRun:
        violations = sum(len(report.violations) for report in reports)
        run_key, created = ids.new_id(), now_ms()
        with self.store.db.write() as connection:
            row: dict[str, Any] = {
                "id": run_key,
                "window_key": span.key,
                "attempt": attempt,
                "model_id": version.model_id,
                "version": version.version,
                "start_ms": span.start_ms,
                "end_ms": span.end_ms,
                "last_n": span.last_n,
                "run_id": run_id,
                "rows": rows,
                "violations": violations,
                "report_digest": digest,
                "created_ms": created,
                "created_by": actor,
            }
            connection.execute(schema.monitor_runs.insert().values(**row))
            audit.stage(connection, schema.monitor_runs, row)
            audit.append(connection, actor, "monitor.run", f"{version.ref}", row)
            action = _govern(connection, version, row, reports, actor) if violations else None
        return MonitorRun(
            run_key, span, attempt, run_id, rows, tuple(reports), action, created, actor
        )

    def _loaded(self, row: Any, span: Window) -> MonitorRun:
        """A stored run with its reports read back from the combined report artifact."""
        data = json.loads(self.store.blobs.read_bytes(row.report_digest))
        reports = tuple(CheckReport.from_dict(item) for item in data)
        with self.store.db.read() as connection:
            action = _action_of(connection, row.id)
        return MonitorRun(
            row.id,
            span,
            row.attempt,
            row.run_id,
            row.rows,
            reports,
            action,
            row.created_ms,
            row.created_by,
            reused=True,
        )


def _govern(
    connection: Connection,
    version: VersionRecord,
    row: dict[str, Any],
    reports: Sequence[CheckReport],
    actor: str,
) -> str:
    """Record the violation as a registry event carrying the policy's action; returns it."""
    model = registry.get_model_row(connection, model_id=version.model_id)
    action = policy.current(connection).rules.action_for(model.name, model.risk_tier)
    found = [v for report in reports for v in report.violations]
    first = found[0]
    more = f" and {len(found) - 1} more" if len(found) > 1 else ""
    registry.append_event(
        connection,
        model.id,
        model.name,
        version.version,
        registry.VIOLATION,
        actor,
        comment=f"{first.constraint_check_type} on {first.feature_name}: {first.description}{more}",
        evidence={
            "action": action,
            "monitor_run": row["id"],
            "run": row["run_id"],
            "window": row["window_key"],
            "violations": [v.to_sagemaker() for v in found],
        },
    )
    return action


def _action_of(connection: Connection, monitor_run_id: str) -> str | None:
    """The policy action recorded with a run's violation event, if it raised one."""
    table = schema.registry_events
    for evidence in connection.execute(
        select(table.c.evidence).where(
            table.c.kind == registry.VIOLATION,
            table.c.evidence.contains(monitor_run_id),
        )
    ).scalars():
        data = json.loads(evidence)
        if data.get("monitor_run") == monitor_run_id:
            action: str = data["action"]
            return action
    return None


def _window_of(row: Any, version: VersionRecord) -> Window:
    return Window(version.name, version.version, row.start_ms, row.end_ms, row.last_n)


def _window_params(span: Window) -> dict[str, Any]:
    values = {
        "model": span.model,
        "version": span.version,
        "start_ms": span.start_ms,
        "end_ms": span.end_ms,
        "last_n": span.last_n,
    }
    return {key: value for key, value in values.items() if value is not None}


def _inputs(version: VersionRecord, reports: Sequence[CheckReport]) -> list[str]:
    """The model artifact, then each baseline a report names (each once)."""
    found = [version.artifact_id]
    for report in reports:
        baseline = report.metrics.get(BASELINE_KEY)
        if isinstance(baseline, str) and baseline not in found:
            found.append(baseline)
    return found


def _figures(reports: Sequence[CheckReport]) -> list[tuple[str, float]]:
    """Every top-level number of every report as ``<check>.<figure>`` metrics."""
    points = []
    for report in reports:
        points.append((f"{report.check}.rows", float(report.rows)))
        points.append((f"{report.check}.violations", float(len(report.violations))))
        for name, value in report.metrics.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                points.append((f"{report.check}.{name}", float(value)))
    return points


def _fix() -> str:
    return "widen the window, check the model version, or flush captures if they are recent."
