"""MLflow runs brought into clew: the rules, once, for the embedded store and the server.

The SDK reads an MLflow tracking store with MLflow's own client (``integrations/mlflow_store``)
and hands this module pages of plain values: runs with their params, tags, full metric
histories and the digests of their artifacts (whose bytes it has already put in clew's blob
store). Each page is one transaction. An MLflow run id is a UUID, so its clew run id is the
same 128 bits written as a ULID (as OpenLineage's are): a run already imported is found by
primary key and skipped, which makes an import idempotent and lets an interrupted one simply
run again.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from clew.domain import ids, records
from clew.domain.imports import MlflowImportResult
from clew.domain.openlineage import safe_name, ulid_from_int
from clew.domain.run_fields import check_key, param_text
from clew.errors import ConflictError, InvalidInputError
from clew.service import audit, bulk_rows
from clew.service.artifacts import check_artifact, record_blob
from clew.service.contexts import ensure_context
from clew.service.mlflow_models import MlflowModels
from clew.service.runs import check_run_name, now_ms
from clew.store import schema
from clew.store.id_sets import IdSetStatement
from clew.store.location import Store
from clew.store.metadata import DriverStatement, driver_execute_many

KEY = "mlflow"
MAX_RUNS = 1_000
MAX_POINTS = 2_000_000
_STATUSES = {
    "FINISHED": records.FINISHED,
    "FAILED": records.FAILED,
    "KILLED": records.KILLED,
    "RUNNING": records.RUNNING,
    "SCHEDULED": records.RUNNING,
}
_RUNS = IdSetStatement("SELECT id, properties FROM runs WHERE id IN ({ids})")


_INSERT_KEY_VALUE = {
    name: bulk_rows.insert(name, ("run_id", "key", "value")) for name in ("params", "tags")
}
_UPSERT_LATEST = DriverStatement(
    "INSERT INTO latest_metrics (run_id, key, step, timestamp_ms, value) "
    "VALUES (:run_id, :key, :step, :timestamp_ms, :value) "
    "ON CONFLICT (run_id, key) DO UPDATE SET step = excluded.step, "
    "timestamp_ms = excluded.timestamp_ms, value = excluded.value "
    "WHERE excluded.step > latest_metrics.step OR (excluded.step = latest_metrics.step "
    "AND excluded.timestamp_ms >= latest_metrics.timestamp_ms)"
)


@dataclass(frozen=True)
class _Run:
    mlflow_id: str
    run_id: str
    experiment: str
    experiment_id: str
    name: str
    status: str
    start_ms: int
    end_ms: int | None
    user: str
    params: dict[str, str]
    tags: dict[str, str]
    points: list[tuple[str, int, int, float | None]]
    artifacts: list[tuple[str, str, int]]


def run_id_for(mlflow_id: str) -> str:
    """The clew run id of an MLflow run id (32 hex digits): the same 128 bits as a ULID."""
    return ulid_from_int(int(mlflow_id, 16))


class MlflowImportService:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._models = MlflowModels(store)

    def import_models(
        self, page: Mapping[str, Any], actor: str, set_aliases: bool = True
    ) -> MlflowImportResult:
        """Record a page of MLflow logged models and registered models with their versions
        and aliases (see ``clew.service.mlflow_models`` for the rules). ``set_aliases`` False
        records every alias as a fact and sets none, saying so (the server passes it for a
        caller who may not move the model's aliases)."""
        return self._models.import_page(page, actor, set_aliases)

    def import_runs(self, runs: Sequence[Mapping[str, Any]], actor: str) -> MlflowImportResult:
        """Record one page of MLflow runs in one transaction; runs already imported are
        counted and left as they are. Nothing is written unless every run is valid and every
        artifact's bytes are in the store."""
        if len(runs) > MAX_RUNS:
            raise InvalidInputError(
                f"an MLflow import page holds at most {MAX_RUNS} runs; this one has {len(runs)}."
            )
        items = [_run(index, raw) for index, raw in enumerate(runs)]
        if sum(len(item.points) for item in items) > MAX_POINTS:
            raise InvalidInputError(
                f"an MLflow import page holds at most {MAX_POINTS:,} metric points; send "
                "fewer runs per page."
            )
        result = MlflowImportResult()
        with self.store.db.write() as connection:
            existing = dict(_RUNS.all(connection, [item.run_id for item in items]))
            new = [item for item in items if item.run_id not in existing]
            for item in items:
                if item.run_id in existing:
                    _check_imported(existing[item.run_id], item)
                    result.already += 1
            result.imported = len(new)
            if new:
                _Writer(self.store, connection, actor).write(new, result)
                audit.append_staged(
                    connection,
                    actor,
                    "mlflow.import",
                    "lineage",
                    {"runs": len(new), "metric_points": result.metric_points},
                )
        result.runs = {item.mlflow_id: item.run_id for item in items}
        return result


class _Writer:
    def __init__(self, store: Store, connection: Connection, actor: str) -> None:
        self.store = store
        self.connection = connection
        self.actor = actor
        self.created_ms = now_ms()
        self.experiments: dict[str, str] = {}

    def write(self, items: Sequence[_Run], result: MlflowImportResult) -> None:
        rows: list[dict[str, Any]] = []
        params: list[dict[str, Any]] = []
        tags: list[dict[str, Any]] = []
        points: list[tuple[str, str, int, int, float | None]] = []
        edges: list[dict[str, Any]] = []
        for item in items:
            experiment_id = self._experiment(item.experiment)
            rows.append(self._run_row(item, experiment_id))
            params.extend(
                {"run_id": item.run_id, "key": k, "value": v} for k, v in item.params.items()
            )
            tags.extend({"run_id": item.run_id, "key": k, "value": v} for k, v in item.tags.items())
            points.extend((item.run_id, *point) for point in item.points)
            edges.append(
                self._edge(item.run_id, "run", experiment_id, "context", records.ASSOCIATED_WITH)
            )
            for path, digest, size in item.artifacts:
                artifact_id = self._artifact(path, digest, size, item)
                edges.append(
                    self._edge(item.run_id, "run", artifact_id, "artifact", records.PRODUCED)
                )
                result.artifacts += 1
        bulk_rows.INSERT_RUN.execute_many(self.connection, rows)
        audit.stage_many(self.connection, schema.runs, rows)
        for name, found in (("params", params), ("tags", tags)):
            if found:
                _INSERT_KEY_VALUE[name].execute_many(self.connection, found)
        audit.stage_many(self.connection, schema.params, params)
        self._points(points)
        result.metric_points += len(points)
        for edge in edges:
            if bulk_rows.INSERT_EDGE_ONCE.execute(self.connection, edge).rowcount == 1:
                audit.stage(self.connection, schema.edges, edge)

    def _experiment(self, name: str) -> str:
        if name not in self.experiments:
            self.experiments[name] = ensure_context(self.connection, "experiment", name, self.actor)
        return self.experiments[name]

    def _run_row(self, item: _Run, experiment_id: str) -> dict[str, Any]:
        row: dict[str, Any] = dict.fromkeys(bulk_rows.RUN_COLUMNS)
        kept = {"run_id": item.mlflow_id, "experiment_id": item.experiment_id, "user": item.user}
        row.update(
            id=item.run_id,
            experiment_id=experiment_id,
            name=item.name,
            kind="training",
            status=item.status,
            user_name=self.actor,
            start_ms=item.start_ms,
            end_ms=item.end_ms,
            properties=json.dumps({KEY: kept}, sort_keys=True),
        )
        return row

    def _edge(
        self, source: str, source_kind: str, destination: str, kind: str, association: str
    ) -> dict[str, Any]:
        ends = (source, source_kind, destination, kind, association, self.created_ms)
        return dict(zip(bulk_rows.EDGE_COLUMNS, ends, strict=True))

    def _artifact(self, path: str, digest: str, size: int, item: _Run) -> str:
        name = safe_name(path, "artifact")
        found = bulk_rows.FIND_ARTIFACT.first(
            self.connection, {"type": "file", "name": name, "digest": digest}
        )
        if found:
            return str(found[0])
        record_blob(self.connection, self.store.blobs, digest, size, "file")
        row = {
            "id": ids.new_id(),
            "type": "file",
            "name": name,
            "digest": digest,
            "size": size,
            "uri": None,
            "properties": json.dumps({KEY: {"run_id": item.mlflow_id, "path": path}}),
            "created_ms": self.created_ms,
            "created_by": self.actor,
        }
        bulk_rows.INSERT_ARTIFACT.execute(self.connection, row)
        audit.stage(self.connection, schema.artifacts, row)
        return str(row["id"])

    def _points(self, points: list[tuple[str, str, int, int, float | None]]) -> None:
        if not points:
            return
        mark = "?" if self.connection.dialect.paramstyle == "qmark" else "%s"
        driver_execute_many(
            self.connection,
            "INSERT INTO metrics (run_id, key, step, timestamp_ms, value) "
            f"VALUES ({', '.join([mark] * 5)})",
            points,
        )
        latest: dict[tuple[str, str], tuple[str, str, int, int, float | None]] = {}
        for point in points:
            current = latest.get(point[:2])
            if current is None or point[2:4] >= current[2:4]:
                latest[point[:2]] = point
        _UPSERT_LATEST.execute_many(
            self.connection,
            [
                {"run_id": r, "key": k, "step": s, "timestamp_ms": t, "value": v}
                for r, k, s, t, v in latest.values()
            ],
        )


def _check_imported(properties: str, item: _Run) -> None:
    if json.loads(properties or "{}").get(KEY) is None:
        raise ConflictError(
            f"run {item.run_id} exists and was not imported from MLflow, so MLflow run "
            f"{item.mlflow_id} cannot be imported over it."
        )


def _run(index: int, raw: Mapping[str, Any]) -> _Run:
    what = f"MLflow run #{index}"
    if not isinstance(raw, Mapping):
        raise InvalidInputError(f"{what} must be a JSON object.")
    mlflow_id = raw.get("run_id")
    if not isinstance(mlflow_id, str) or len(mlflow_id) != 32 or not _is_hex(mlflow_id):
        raise InvalidInputError(f"{what}: run_id {mlflow_id!r} is not an MLflow run id (32 hex).")
    status = _STATUSES.get(str(raw.get("status")))
    if status is None:
        raise InvalidInputError(
            f"{what}: status {raw.get('status')!r} is unknown; MLflow's are {', '.join(_STATUSES)}."
        )
    start_ms, end_ms = _ms(raw.get("start_ms"), what), raw.get("end_ms")
    return _Run(
        mlflow_id=mlflow_id,
        run_id=run_id_for(mlflow_id),
        experiment=safe_name(str(raw.get("experiment", "")), "mlflow"),
        experiment_id=str(raw.get("experiment_id", "")),
        name=check_run_name(str(raw.get("name") or mlflow_id)[:200]),
        status=status,
        start_ms=start_ms,
        end_ms=None if end_ms is None else _ms(end_ms, what),
        user=str(raw.get("user", ""))[:200],
        params={
            check_key(k, "param"): param_text(k, v) for k, v in _map(raw, "params", what).items()
        },
        tags={check_key(k, "tag"): str(v) for k, v in _map(raw, "tags", what).items()},
        points=_metric_points(raw.get("metrics", []), what),
        artifacts=_artifacts(raw.get("artifacts", []), what),
    )


def _is_hex(text: str) -> bool:
    return all(char in "0123456789abcdef" for char in text.lower())


def _ms(value: Any, what: str) -> int:
    if type(value) is not int or not 0 <= value < 2**63:
        raise InvalidInputError(f"{what}: times must be integer milliseconds since 1970.")
    return value


def _map(raw: Mapping[str, Any], name: str, what: str) -> Mapping[str, Any]:
    found = raw.get(name) or {}
    if not isinstance(found, Mapping):
        raise InvalidInputError(f"{what}: {name} must be a JSON object.")
    return found


def _metric_points(value: Any, what: str) -> list[tuple[str, int, int, float | None]]:
    """``[key, value, step, timestamp_ms]`` lists as rows; NaN is stored as NULL."""
    if not isinstance(value, list):
        raise InvalidInputError(f"{what}: metrics must be a list of [key, value, step, ms].")
    points = []
    for point in value:
        if not isinstance(point, list | tuple) or len(point) != 4:
            raise InvalidInputError(f"{what}: each metric point is [key, value, step, ms].")
        key, number, step, stamp = point
        if not isinstance(number, int | float) or isinstance(number, bool):
            raise InvalidInputError(f"{what}: metric {key!r} has a value that is not a number.")
        if type(step) is not int or type(stamp) is not int:
            raise InvalidInputError(f"{what}: metric {key!r} needs integer step and time.")
        stored = None if isinstance(number, float) and math.isnan(number) else float(number)
        points.append((check_key(key, "metric"), step, stamp, stored))
    return points


def _artifacts(value: Any, what: str) -> list[tuple[str, str, int]]:
    if not isinstance(value, list):
        raise InvalidInputError(f"{what}: artifacts must be a list.")
    found = []
    for item in value:
        if not isinstance(item, Mapping):
            raise InvalidInputError(f"{what}: each artifact is {{path, digest, size}}.")
        path, digest, size = item.get("path"), item.get("digest"), item.get("size")
        if not isinstance(path, str) or type(size) is not int or size < 0:
            raise InvalidInputError(f"{what}: each artifact is {{path, digest, size}}.")
        check_artifact("file", safe_name(path, "artifact"), str(digest))
        found.append((path, str(digest), size))
    return found
