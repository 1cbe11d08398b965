"""Experiment runs: creation, params, metric series, tags, status and search.

Rules enforced here (so the embedded client and the server agree): a finished run takes no
more writes; a param, once logged, keeps its value; metric values must be numbers (NaN and
±inf are stored faithfully); every write lands in the audit chain.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Connection, bindparam, func, select

from clew.domain import ids, records, refs
from clew.domain.records import MetricPoint, RunPage, RunRecord
from clew.domain.run_fields import check_key, param_text
from clew.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    RunFinishedError,
)
from clew.service import audit
from clew.service.contexts import ensure_context
from clew.store import schema
from clew.store.location import Store
from clew.store.metadata import DriverStatement, driver_execute_many

MAX_RESULTS = 50_000  # runs one search returns at most (docs/runs.md)
SEARCH_TIMEOUT_ENV = "CLEW_PG_SEARCH_TIMEOUT_MS"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def check_run_name(name: Any) -> str:
    """Run names are free text (not part of any ref) but must fit the column."""
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise InvalidInputError(
            f"run name {name!r} is not allowed; use a non-empty string of at most 200 characters."
        )
    return name


# A run's writes are the SDK's hot path: they run on the DBAPI cursor (see DriverStatement),
# whose cost stays near the database's own, instead of through SQLAlchemy's execution layer.
_RUN_STATUS = DriverStatement("SELECT status FROM runs WHERE id = :run_id")
_RUN_COLUMNS = (
    "id, experiment_id, parent_id, name, kind, status, user_name, start_ms, end_ms, command, "
    "seed, code_artifact_id, environment_artifact_id, properties"
)
_INSERT_RUN = DriverStatement(
    f"INSERT INTO runs ({_RUN_COLUMNS}) "
    f"VALUES ({', '.join(':' + name for name in _RUN_COLUMNS.split(', '))})"
)
_RUN_PARAMS = DriverStatement("SELECT key, value FROM params WHERE run_id = :run_id")
_INSERT_KEY_VALUE = {
    table: DriverStatement(
        f"INSERT INTO {table} (run_id, key, value) VALUES (:run_id, :key, :value)"
    )
    for table in (schema.params.name, schema.tags.name)
}
_DELETE_TAGS = schema.tags.delete().where(
    schema.tags.c.run_id == bindparam("run_id"),
    schema.tags.c.key.in_(bindparam("keys", expanding=True)),
)
_END_RUN = DriverStatement("UPDATE runs SET status = :status, end_ms = :end_ms WHERE id = :run_id")
_METRIC_COLUMNS = "run_id, key, step, timestamp_ms, value"


class RunService:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._experiment_ids: dict[str, str] = {}

    def create_run(
        self,
        *,
        experiment: str,
        name: str,
        kind: str,
        actor: str,
        parent_id: str | None = None,
        command: str | None = None,
        seed: int | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        code_artifact_id: str | None = None,
        environment_artifact_id: str | None = None,
        properties: Mapping[str, Any] | None = None,
    ) -> RunRecord:
        refs.validate_name(kind, "run kind")
        refs.validate_name(experiment, "experiment name")
        check_run_name(name)
        param_rows = {check_key(k, "param"): param_text(k, v) for k, v in (params or {}).items()}
        tag_rows = {check_key(k, "tag"): str(v) for k, v in (tags or {}).items()}
        run_id = ids.new_id()
        started = now_ms()
        with self.store.db.write() as connection:
            if parent_id:
                self._require_running(connection, parent_id)
            experiment_id = self._experiment_ids.get(experiment) or ensure_context(
                connection, "experiment", experiment, actor
            )
            row = {
                "id": run_id,
                "experiment_id": experiment_id,
                "parent_id": parent_id,
                "name": name,
                "kind": kind,
                "status": records.RUNNING,
                "user_name": actor,
                "start_ms": started,
                "end_ms": None,
                "command": command,
                "seed": seed,
                "code_artifact_id": code_artifact_id,
                "environment_artifact_id": environment_artifact_id,
                "properties": json.dumps(dict(properties or {}), sort_keys=True),
            }
            _INSERT_RUN.execute(connection, row)
            audit.stage(connection, schema.runs, row)
            _insert_key_values(connection, schema.params, run_id, param_rows)
            _insert_key_values(connection, schema.tags, run_id, tag_rows)
            self._link_run(
                connection, run_id, experiment_id, code_artifact_id, environment_artifact_id
            )
            audit.append(
                connection,
                actor,
                "run.create",
                f"run:{run_id}",
                {"run": row, "params": param_rows, "tags": tag_rows},
            )
        # Cached only once committed: a rolled-back transaction may not leave a stale id.
        self.store.db.after_commit(
            lambda: self._experiment_ids.setdefault(experiment, experiment_id)
        )
        return RunRecord(
            id=run_id,
            experiment=experiment,
            name=name,
            kind=kind,
            status=records.RUNNING,
            user=actor,
            start_ms=started,
            end_ms=None,
            parent_id=parent_id,
            command=command,
            seed=seed,
            code_artifact_id=code_artifact_id,
            environment_artifact_id=environment_artifact_id,
            params=param_rows,
            tags=tag_rows,
            properties=dict(properties or {}),
        )

    @staticmethod
    def _link_run(
        connection: Connection, run_id: str, experiment_id: str, *inputs: str | None
    ) -> None:
        from clew.service.graph import add_edge

        add_edge(connection, run_id, "run", experiment_id, "context", records.ASSOCIATED_WITH)
        for artifact_id in inputs:
            if artifact_id:
                add_edge(connection, artifact_id, "artifact", run_id, "run", records.CONTRIBUTED_TO)

    def log_params(self, run_id: str, params: Mapping[str, Any], actor: str) -> None:
        """Record params; re-logging the same value is a no-op, a different one a conflict."""
        rows = {check_key(k, "param"): param_text(k, v) for k, v in params.items()}
        if not rows:
            return
        with self.store.db.write() as connection:
            self._require_running(connection, run_id)
            new = _add_params(connection, run_id, rows)
            if new:
                audit.append(connection, actor, "run.log_params", f"run:{run_id}", new)

    def set_tags(self, run_id: str, tags: Mapping[str, Any], actor: str) -> None:
        """Set tags; unlike params, a tag may be overwritten (the audit log keeps history)."""
        rows = {check_key(k, "tag"): str(v) for k, v in tags.items()}
        if not rows:
            return
        with self.store.db.write() as connection:
            self._require_running(connection, run_id)
            _replace_tags(connection, run_id, rows)
            audit.append(connection, actor, "run.set_tags", f"run:{run_id}", rows)

    def log_metrics(
        self,
        run_id: str,
        points: Sequence[tuple[str, float, int, int]],
        actor: str,
        batch_key: str | None = None,
    ) -> None:
        """Insert a batch of (key, value, step, timestamp_ms) points in one transaction.

        ``batch_key`` matters only to the remote client (see ``RemoteRuns.log_metrics``): here
        the batch is one transaction, so a failed write inserted nothing to deduplicate.

        Values must already be floats (see ``check_metric_value``); NaN is stored as NULL.
        ``latest_metrics`` is kept current in the same transaction so search stays fast.
        """
        if not points:
            return
        with self.store.db.write() as connection:
            self._require_running(connection, run_id)
            summary = _write_points(connection, run_id, points)
            audit.append(connection, actor, "run.log_metrics", f"run:{run_id}", summary)

    def end_run(
        self,
        run_id: str,
        status: str,
        actor: str,
        points: Sequence[tuple[str, float, int, int]] = (),
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> None:
        """Mark the run ended, writing its last params, tags and metric points in the same
        transaction: the SDK holds them until the run ends (or a flush), so a short run costs
        two commits, its start and its end, whatever it logged."""
        if status not in records.RUN_STATUSES or status == records.RUNNING:
            raise InvalidInputError(
                f"run status {status!r} is not a final status; use FINISHED, FAILED or KILLED."
            )
        param_rows = {check_key(k, "param"): param_text(k, v) for k, v in (params or {}).items()}
        tag_rows = {check_key(k, "tag"): str(v) for k, v in (tags or {}).items()}
        with self.store.db.write() as connection:
            self._require_running(connection, run_id, ending_as=status)
            ended = now_ms()
            payload: dict[str, Any] = {"status": status, "end_ms": ended}
            if param_rows and (new := _add_params(connection, run_id, param_rows)):
                payload["params"] = new
            if tag_rows:
                payload["tags"] = _replace_tags(connection, run_id, tag_rows)
            if points:
                payload["metrics"] = _write_points(connection, run_id, points)
            _END_RUN.execute(connection, {"run_id": run_id, "status": status, "end_ms": ended})
            audit.stage_stored(connection, schema.runs, {"id": run_id})
            audit.append(connection, actor, "run.end", f"run:{run_id}", payload)

    def get_run(self, run_id: str) -> RunRecord:
        with self.store.db.read() as connection:
            found = find_run(connection, run_id)
        if found is None:
            raise NotFoundError(f"run {run_id} does not exist; list runs with `clew runs list`.")
        return found

    def metric_history(self, run_id: str, key: str) -> list[MetricPoint]:
        table = schema.metrics
        query = (
            select(table.c.key, table.c.value, table.c.step, table.c.timestamp_ms)
            .where(table.c.run_id == run_id, table.c.key == key)
            .order_by(table.c.step, table.c.timestamp_ms)
        )
        with self.store.db.read() as connection:
            return [
                MetricPoint(k, math.nan if v is None else v, s, t)
                for k, v, s, t in connection.execute(query)
            ]

    def _require_running(
        self, connection: Connection, run_id: str, ending_as: str | None = None
    ) -> None:
        found = _RUN_STATUS.first(connection, {"run_id": run_id})
        if found is None:
            raise NotFoundError(f"run {run_id} does not exist; list runs with `clew runs list`.")
        if found[0] == records.RUNNING:
            return
        if ending_as is not None:
            raise RunFinishedError(
                f"run {run_id} has already ended ({found[0]}), so it can not end again as "
                f"{ending_as}; start a new run to log more."
            )
        raise RunFinishedError(
            f"run {run_id} has already ended ({found[0]}); start a new run to log more."
        )


def _write_points(
    connection: Connection, run_id: str, points: Sequence[tuple[str, float, int, int]]
) -> dict[str, Any]:
    """Insert points as plain tuples (the fast DB-API path) and refresh ``latest_metrics``.

    NaN becomes NULL (SQLite has no NaN in a REAL column; PostgreSQL uses the same encoding).
    Returns the summary recorded in the audit log.
    """
    rows = [
        (run_id, key, step, stamp, None if value != value else value)
        for key, value, step, stamp in points
    ]
    mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    driver_execute_many(
        connection,
        f"INSERT INTO metrics ({_METRIC_COLUMNS}) VALUES ({', '.join([mark] * 5)})",
        rows,
    )
    _UPSERT_LATEST.execute_many(connection, _latest_per_key(rows))
    return {"count": len(rows), "first": list(rows[0]), "last": list(rows[-1])}


def _add_params(connection: Connection, run_id: str, rows: Mapping[str, str]) -> dict[str, str]:
    """Insert the params the run does not have yet and return them; a param it has with
    another value is a conflict (params are immutable), the same value a no-op."""
    existing = dict(_RUN_PARAMS.all(connection, {"run_id": run_id}))
    for key, value in rows.items():
        if key in existing and existing[key] != value:
            raise ConflictError(
                f"param {key!r} of run {run_id} is already {existing[key]!r} and cannot "
                f"change to {value!r}; params are immutable, start a new run instead."
            )
    new = {k: v for k, v in rows.items() if k not in existing}
    _insert_key_values(connection, schema.params, run_id, new)
    return new


def _replace_tags(
    connection: Connection, run_id: str, rows: Mapping[str, str]
) -> Mapping[str, str]:
    """Set the tags (a tag may be overwritten; the audit log keeps the history)."""
    connection.execute(_DELETE_TAGS, {"run_id": run_id, "keys": list(rows)})
    _insert_key_values(connection, schema.tags, run_id, rows)
    return rows


def _insert_key_values(
    connection: Connection, table: Any, run_id: str, values: Mapping[str, str]
) -> None:
    if not values:
        return
    rows = [{"run_id": run_id, "key": k, "value": v} for k, v in values.items()]
    _INSERT_KEY_VALUE[table.name].execute_many(connection, rows)
    if table is schema.params:
        audit.stage_many(connection, table, rows)


def _latest_per_key(
    rows: Iterable[tuple[str, str, int, int, float | None]],
) -> list[dict[str, Any]]:
    """The newest point per key (highest step, then latest timestamp), as upsert rows."""
    latest: dict[str, tuple[str, str, int, int, float | None]] = {}
    for row in rows:
        current = latest.get(row[1])
        if current is None or (row[2], row[3]) >= (current[2], current[3]):
            latest[row[1]] = row
    return [
        {"run_id": run_id, "key": key, "step": step, "timestamp_ms": stamp, "value": value}
        for run_id, key, step, stamp, value in latest.values()
    ]


# Keep the newest point per (run, key): an older step arriving late never wins. Plain SQL
# that SQLite and PostgreSQL both accept, run on the driver's cursor like the insert above.
_UPSERT_LATEST = DriverStatement(
    "INSERT INTO latest_metrics (run_id, key, step, timestamp_ms, value) "
    "VALUES (:run_id, :key, :step, :timestamp_ms, :value) "
    "ON CONFLICT (run_id, key) DO UPDATE SET step = excluded.step, "
    "timestamp_ms = excluded.timestamp_ms, value = excluded.value "
    "WHERE excluded.step > latest_metrics.step OR (excluded.step = latest_metrics.step "
    "AND excluded.timestamp_ms >= latest_metrics.timestamp_ms)"
)


# One run by id, the server's most frequent read: two statements on the DBAPI cursor instead of
# read_runs' four SQLAlchemy selects (their compilation cost more than PostgreSQL's work).
_ONE_RUN = DriverStatement(
    "SELECT r.id, c.name AS experiment_name, r.name, r.kind, r.status, r.user_name, "
    "r.start_ms, r.end_ms, r.parent_id, r.command, r.seed, r.code_artifact_id, "
    "r.environment_artifact_id, r.properties "
    "FROM runs r JOIN contexts c ON c.id = r.experiment_id WHERE r.id = :run_id"
)
_ONE_RUN_VALUES = DriverStatement(
    "SELECT 'params', key, value, CAST(NULL AS DOUBLE PRECISION) FROM params "
    "WHERE run_id = :run_id UNION ALL "
    "SELECT 'tags', key, value, NULL FROM tags WHERE run_id = :run_id UNION ALL "
    "SELECT 'metrics', key, NULL, value FROM latest_metrics WHERE run_id = :run_id"
)


def find_run(connection: Connection, run_id: str) -> RunRecord | None:
    """The full record of one run (as ``read_runs`` gives it), None when there is none."""
    found = _ONE_RUN.first_mapping(connection, {"run_id": run_id})
    if found is None:
        return None
    record = _run_record(SimpleNamespace(**found))
    for field, key, text, number in _ONE_RUN_VALUES.all(connection, {"run_id": run_id}):
        if field == "metrics":
            record.metrics[key] = math.nan if number is None else number
        else:
            getattr(record, field)[key] = text
    return record


def read_runs(connection: Connection, run_ids: Sequence[str]) -> list[RunRecord]:
    """Full records (params, latest metrics, tags) for the given ids, in the given order."""
    if not run_ids:
        return []
    runs_table, contexts = schema.runs, schema.contexts
    found: dict[str, RunRecord] = {}
    for chunk in _chunks(run_ids, 900):
        query = (
            select(runs_table, contexts.c.name.label("experiment_name"))
            .join(contexts, contexts.c.id == runs_table.c.experiment_id)
            .where(runs_table.c.id.in_(chunk))
        )
        for row in connection.execute(query):
            found[row.id] = _run_record(row)
        _attach(connection, schema.params, chunk, found, "params")
        _attach(connection, schema.tags, chunk, found, "tags")
        _attach(connection, schema.latest_metrics, chunk, found, "metrics")
    return [found[run_id] for run_id in run_ids if run_id in found]


def _run_record(row: Any) -> RunRecord:
    return RunRecord(
        id=row.id,
        experiment=row.experiment_name,
        name=row.name,
        kind=row.kind,
        status=row.status,
        user=row.user_name,
        start_ms=row.start_ms,
        end_ms=row.end_ms,
        parent_id=row.parent_id,
        command=row.command,
        seed=row.seed,
        code_artifact_id=row.code_artifact_id,
        environment_artifact_id=row.environment_artifact_id,
        properties=json.loads(row.properties or "{}"),
    )


def _attach(
    connection: Connection,
    table: Any,
    chunk: Sequence[str],
    found: dict[str, RunRecord],
    field: str,
) -> None:
    query = select(table.c.run_id, table.c.key, table.c.value).where(table.c.run_id.in_(chunk))
    for run_id, key, value in connection.execute(query):
        if field == "metrics" and value is None:
            value = math.nan
        getattr(found[run_id], field)[key] = value


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def count_runs(store: Store) -> int:
    with store.db.read() as connection:
        return connection.execute(select(func.count()).select_from(schema.runs)).scalar_one()


def unknown_keys(store: Store, filter_text: str | None) -> list[str]:
    """One sentence per metric, param or tag key the filter names that no run has, with the
    nearest keys that exist: ``metrics.acu > 0.8`` is a typo, not a search with no result."""
    from clew.service.search import ENTITY_TABLES, referenced_keys

    messages = []
    with store.db.read() as connection:
        for entity, key in dict.fromkeys(referenced_keys(filter_text)):
            table = ENTITY_TABLES[entity]
            if connection.execute(select(table.c.key).where(table.c.key == key).limit(1)).first():
                continue
            known = connection.execute(select(table.c.key).distinct()).scalars().all()
            nearest = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
            hint = f"nearest: {', '.join(nearest)}" if nearest else "no similar key"
            messages.append(
                f"no run has {entity.rstrip('s')} {key!r} ({hint}); check {entity}.{key} "
                "in the filter."
            )
    return messages


def search_runs(
    store: Store,
    filter_text: str | None = None,
    order_by: Sequence[str] | None = None,
    max_results: int = 1000,
    experiments: Sequence[str] | None = None,
) -> list[RunRecord]:
    return search_run_page(store, filter_text, order_by, max_results, experiments).runs


def search_run_page(
    store: Store,
    filter_text: str | None = None,
    order_by: Sequence[str] | None = None,
    max_results: int = 1000,
    experiments: Sequence[str] | None = None,
    page_token: str | None = None,
) -> RunPage:
    """Up to ``max_results`` runs after ``page_token``'s row, and the token for the next page
    (one extra row is read to know whether there is one)."""
    from clew.service.search import build_plan
    from clew.service.search_pages import encode_token, query_digest

    if not isinstance(max_results, int) or not 1 <= max_results <= MAX_RESULTS:
        raise InvalidInputError(f"max_results {max_results!r} must be from 1 to {MAX_RESULTS:,}.")
    plan = build_plan(filter_text, order_by, experiments, page_token)
    timeout_ms = search_timeout_ms()
    too_slow = (
        f"the search ran past its {timeout_ms / 1000:g} s limit ({SEARCH_TIMEOUT_ENV}) and was "
        "cancelled; narrow the filter, name experiments or lower max_results."
    )
    with store.db.read_within(timeout_ms, too_slow) as connection:
        rows = plan.rows(connection, max_results + 1)
        page, more = rows[:max_results], len(rows) > max_results
        runs = read_runs(connection, [row[0] for row in page])
    digest = query_digest(filter_text, order_by, experiments)
    token = encode_token(digest, list(page[-1][1:])) if more else None
    return RunPage(runs, token)


def search_timeout_ms() -> int:
    """How long one search may run on PostgreSQL (``CLEW_PG_SEARCH_TIMEOUT_MS``, 15 s by
    default): shorter than the statement timeout, so a heavy search gives its connection
    back long before writes would time out."""
    from clew.store.metadata import PostgresLimits

    text = os.environ.get(SEARCH_TIMEOUT_ENV, "").strip() or "15000"
    if not text.isdigit():
        raise InvalidInputError(
            f"{SEARCH_TIMEOUT_ENV}={text!r} is not a whole number of milliseconds; use 0 "
            "(no limit but the statement timeout) or more."
        )
    search, statement = int(text), PostgresLimits.from_environment().statement_timeout_ms
    return min(search, statement) if search and statement else search or statement
