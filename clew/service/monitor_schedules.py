"""Monitor schedules: cron expressions ``clew server`` turns into monitor runs, each window once.

A schedule names a ref (``churn@production`` follows the alias: each window is checked on the
version the alias pointed at when the window closed), a five-field cron expression and a window
length. ``run_due`` runs every window whose firing time has passed within ``CATCH_UP_MS``
(starting with the newest one complete when the schedule was made), so a server that was down
catches up after a restart; the runner's idempotency per window
(``monitor_runs``) means a window already run is never run again. Exactly one runner works at a
time among every server on a store: a PostgreSQL session advisory lock, or on SQLite an
exclusive lock on a file beside the database (``runner_lock``).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select, text

from clew.domain import cron as crontab
from clew.domain import ids, monitor_windows
from clew.domain.monitor_runs import MonitorRun, MonitorSchedule
from clew.domain.monitoring import Window
from clew.domain.refs import ModelAliasRef
from clew.errors import ClewError, ConflictError, NotFoundError
from clew.service import audit, registry, signed_heads
from clew.service.monitor_runs import MonitorRunService, standard_checks
from clew.service.promotion import PromotionService
from clew.service.runs import now_ms
from clew.store import schema
from clew.store.location import Store

CATCH_UP_MS = 24 * 3_600_000
RUNNER = "clew-monitor"
# The advisory lock key of the schedule runner ("clewmon" in ASCII).
_PG_RUNNER_LOCK = 0x636C65776D6F6E
_log = logging.getLogger(__name__)


class MonitorScheduleService:
    """Storing, listing and deleting schedules, and running the windows that are due."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @signed_heads.checkpointed(decision=False)
    def schedule(self, ref: str, cron: str, window: str, actor: str) -> MonitorSchedule:
        """Store a schedule (the same one again returns the first); a cron expression or
        window that does not parse is one sentence and stores nothing."""
        expression = crontab.parse(cron)
        length = monitor_windows.parse_duration(window)
        parsed = registry.parse_model_ref(ref)
        with self.store.db.write() as connection:
            model = registry.get_model_row(connection, name=parsed.name)
            existing = _find(connection, ref, expression.text, length)
            if existing is not None:
                return existing
            row: dict[str, Any] = {
                "id": ids.new_id(),
                "model_id": model.id,
                "target": ref,
                "cron": expression.text,
                "window_ms": length,
                "created_ms": now_ms(),
                "created_by": actor,
            }
            connection.execute(schema.monitor_schedules.insert().values(**row))
            audit.stage(connection, schema.monitor_schedules, row)
            audit.append(connection, actor, "monitor.schedule", ref, row)
        return _record_of(row)

    def schedules(self, model: str | None = None) -> list[MonitorSchedule]:
        """Every schedule, or those of one model, oldest first."""
        table = schema.monitor_schedules
        query = select(table).order_by(table.c.created_ms, table.c.id)
        with self.store.db.read() as connection:
            if model is not None:
                found = registry.get_model_row(connection, name=model)
                query = query.where(table.c.model_id == found.id)
            return [_record(row) for row in connection.execute(query)]

    def get_schedule(self, schedule_id: str) -> MonitorSchedule:
        table = schema.monitor_schedules
        with self.store.db.read() as connection:
            row = connection.execute(select(table).where(table.c.id == schedule_id)).first()
        if row is None:
            raise NotFoundError(
                f"monitor schedule {schedule_id!r} does not exist; list them with "
                "`clew monitor schedules`."
            )
        return _record(row)

    @signed_heads.checkpointed(decision=False)
    def unschedule(self, schedule_id: str, actor: str) -> None:
        """Delete a schedule; windows it already ran keep their runs."""
        found = self.get_schedule(schedule_id)
        table = schema.monitor_schedules
        with self.store.db.write() as connection:
            deleted = connection.execute(table.delete().where(table.c.id == schedule_id))
            if deleted.rowcount != 1:
                raise ConflictError(f"monitor schedule {schedule_id!r} was deleted meanwhile.")
            audit.stage_stored(connection, table, {"id": schedule_id})
            audit.append(connection, actor, "monitor.unschedule", found.target, found.to_dict())

    def run_due(self, at_ms: int | None = None) -> list[MonitorRun]:
        """Run every due window of every schedule not run yet, if this process holds the
        runner lock (else nothing: another server is the runner)."""
        at_ms = now_ms() if at_ms is None else at_ms
        with runner_lock(self.store) as held:
            if not held:
                return []
            done = []
            for item in self.schedules():
                done += self._run_schedule(item, at_ms)
            return done

    def _run_schedule(self, item: MonitorSchedule, at_ms: int) -> list[MonitorRun]:
        expression = crontab.parse(item.cron)
        runner = MonitorRunService(self.store)
        done = []
        # The newest window complete when the schedule was made is its first.
        first = expression.previous(item.created_ms)
        since = max(item.created_ms if first is None else first - 1, at_ms - CATCH_UP_MS)
        for fire_ms in expression.fire_times(since, at_ms):
            try:
                window = self._window(item, fire_ms)
                if window is None or runner.find_run(window) is not None:
                    continue
                done.append(
                    runner.run_window(
                        window, RUNNER, checks=standard_checks(self.store, window), allow_empty=True
                    )
                )
            except ClewError as error:
                _log.warning("monitor schedule %s at %s failed: %s", item.id, fire_ms, error)
        return done

    def _window(self, item: MonitorSchedule, fire_ms: int) -> Window | None:
        """The window closing at ``fire_ms``, on the version the target named then."""
        parsed = registry.parse_model_ref(item.target)
        if isinstance(parsed, ModelAliasRef):
            version = PromotionService(self.store).alias_at(parsed.name, parsed.alias, fire_ms)
            if version is None:
                return None
            number = version.version
        else:
            number = parsed.version
        return monitor_windows.ending_at(parsed.name, number, fire_ms, item.window_ms)


@contextlib.contextmanager
def runner_lock(store: Store) -> Iterator[bool]:
    """Whether this process is the schedule runner for the block (never waits)."""
    if store.db.dialect == "postgresql":
        with store.db.engine.connect() as connection:
            held = bool(
                connection.execute(
                    text("SELECT pg_try_advisory_lock(:key)"), {"key": _PG_RUNNER_LOCK}
                ).scalar()
            )
            try:
                yield held
            finally:
                if held:
                    connection.execute(
                        text("SELECT pg_advisory_unlock(:key)"), {"key": _PG_RUNNER_LOCK}
                    )
                connection.commit()
        return
    path = Path(str(store.db.engine.url.database) + ".monitor-runner.lock")
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _find(
    connection: Connection, target: str, cron_text: str, window_ms: int
) -> MonitorSchedule | None:
    table = schema.monitor_schedules
    row = connection.execute(
        select(table).where(
            table.c.target == target, table.c.cron == cron_text, table.c.window_ms == window_ms
        )
    ).first()
    return None if row is None else _record(row)


def _record(row: Any) -> MonitorSchedule:
    return _record_of(row._mapping)


def _record_of(values: Mapping[str, Any]) -> MonitorSchedule:
    return MonitorSchedule(
        values["id"],
        values["target"],
        values["cron"],
        values["window_ms"],
        values["created_ms"],
        values["created_by"],
    )
