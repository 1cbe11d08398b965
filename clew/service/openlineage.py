"""OpenLineage run events received into the lineage graph, one transaction per call.

Each event's run becomes (or updates) the clew run whose id is the event's ``runId``
(``domain.openlineage.run_id_for``), so START, RUNNING and COMPLETE/FAIL/ABORT pair into one
run however many calls bring them. Its job's namespace is the run's experiment, its datasets
are artifacts (described, not copied) with ``ContributedTo`` and ``Produced`` edges, a
``columnLineage`` facet adds ``DerivedFrom`` edges from the datasets it names, and every facet
is kept in the properties of the run or the dataset. Rows are written with one statement per
table (as bulk ingest does, ``lineage_ingest.py``) and each row's image is staged for the
call's one audit entry.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection

from clew.domain import ids, records, refs
from clew.domain.openlineage import (
    FINAL_STATUS,
    Dataset,
    Received,
    RunEvent,
    column_sources,
    merged,
    parse_events,
    safe_name,
)
from clew.errors import ConflictError, InvalidInputError
from clew.service import audit, bulk_rows, uploads
from clew.service.contexts import ensure_context
from clew.service.runs import now_ms
from clew.store import schema
from clew.store.id_sets import IdSetStatement
from clew.store.location import Store
from clew.store.metadata import DriverStatement

KEY = "openlineage"
# ``json.dumps(value, sort_keys=True)``, without building an encoder per call (twice per run).
_SORTED = json.JSONEncoder(sort_keys=True)
_RUNS = IdSetStatement(f"SELECT {', '.join(bulk_rows.RUN_COLUMNS)} FROM runs WHERE id IN ({{ids}})")
_BY_DIGEST = IdSetStatement("SELECT id, type, name, digest FROM artifacts WHERE digest IN ({ids})")
# The edges of runs this call updates (a run has a handful; a dataset may have millions).
_RUN_EDGES = IdSetStatement(
    "SELECT source_id, destination_id, association FROM edges WHERE source_id IN ({ids}) "
    "UNION ALL SELECT source_id, destination_id, association FROM edges "
    "WHERE destination_id IN ({ids})"
)


_UPDATE_RUN = DriverStatement(
    "UPDATE runs SET status = :status, start_ms = :start_ms, end_ms = :end_ms, "
    "properties = :properties WHERE id = :id"
)


class OpenLineageService:
    def __init__(self, store: Store) -> None:
        self.store = store

    def receive(self, events: Any, actor: str) -> Received:
        """Record OpenLineage RunEvents (one event or a list); nothing is written unless every
        event is valid and every run id is free or already an OpenLineage run."""
        parsed = parse_events(events)
        groups = merged(parsed)
        with self.store.db.write() as connection:
            writer = _Writer(connection, actor)
            result = writer.write(groups)
            audit.append_staged(
                connection,
                actor,
                "openlineage.receive",
                "lineage",
                {
                    "events": len(parsed),
                    "runs": len(groups),
                    "datasets": result.datasets,
                    "edges": result.edges,
                },
            )
        result.events = len(parsed)
        return result


@dataclass
class _Edges:
    """The edges a call wants, keyed like the table's unique constraint."""

    wanted: dict[tuple[str, str, str], tuple[str, str]] = field(default_factory=dict)

    def add(self, source: tuple[str, str], destination: tuple[str, str], association: str) -> None:
        self.wanted.setdefault(
            (source[0], destination[0], association), (source[1], destination[1])
        )


class _Writer:
    def __init__(self, connection: Connection, actor: str) -> None:
        self.connection = connection
        self.actor = actor
        self.created_ms = now_ms()
        self.edges = _Edges()
        self.experiments: dict[str, str] = {}

    def write(self, groups: dict[str, list[RunEvent]]) -> Received:
        datasets = self._datasets(groups)
        existing = {
            row[0]: dict(zip(bulk_rows.RUN_COLUMNS, row, strict=True))
            for row in _RUNS.all(self.connection, list(groups))
        }
        new_rows, updated = [], []
        for run_id, events in groups.items():
            row = existing.get(run_id)
            if row is None:
                row = self._new_row(events[0])
                new_rows.append(row)
            else:
                _check_owned(row, events[0])
                updated.append(row)
            _apply(row, events)
            self._link(run_id, row["experiment_id"], events, datasets)
        bulk_rows.INSERT_RUN.execute_many(self.connection, new_rows)
        _UPDATE_RUN.execute_many(self.connection, updated)
        audit.stage_many(self.connection, schema.runs, [*new_rows, *updated])
        edges = self._write_edges([row["id"] for row in updated])
        runs = {events[0].run_uuid: run_id for run_id, events in groups.items()}
        return Received(0, runs, len(datasets), edges)

    def _new_row(self, event: RunEvent) -> dict[str, Any]:
        experiment = safe_name(event.job_namespace, "openlineage")
        row: dict[str, Any] = dict.fromkeys(bulk_rows.RUN_COLUMNS)
        row.update(
            id=event.run_id,
            experiment_id=self._experiment(experiment),
            name=event.job_name[:200],
            kind=_kind(event),
            status=records.RUNNING,
            user_name=self.actor,
            start_ms=event.time_ms,
            # A dict until ``_apply`` folds the events in and encodes it once.
            properties={KEY: {"runId": event.run_uuid}},
        )
        return row

    def _experiment(self, name: str) -> str:
        if name not in self.experiments:
            self.experiments[name] = ensure_context(self.connection, "experiment", name, self.actor)
        return self.experiments[name]

    def _datasets(self, groups: dict[str, list[RunEvent]]) -> dict[tuple[str, str], str]:
        """Every dataset the events name (with those their column lineage names): its node id,
        an existing one or a new row."""
        named: dict[tuple[str, str, str], Dataset] = {}
        for events in groups.values():
            for event in events:
                for dataset in (*event.inputs, *event.outputs):
                    named.setdefault((dataset.namespace, dataset.name, dataset.digest), dataset)
                    for namespace, name in column_sources(dataset):
                        source = Dataset(namespace, name, {})
                        named.setdefault((namespace, name, source.digest), source)
        found = {
            (type_, name, digest): id_
            for id_, type_, name, digest in _BY_DIGEST.all(
                self.connection, list({key[2] for key in named})
            )
        }
        nodes: dict[tuple[str, str], str] = {}
        rows = []
        for (namespace, name, digest), dataset in named.items():
            identity = ("dataset", dataset.node_name, digest)
            if identity not in found:
                row = self._artifact_row(dataset)
                found[identity] = row["id"]
                rows.append(row)
            nodes[(namespace, name)] = found[identity]
        bulk_rows.INSERT_ARTIFACT.execute_many(self.connection, rows)
        audit.stage_many(self.connection, schema.artifacts, rows)
        return nodes

    def _artifact_row(self, dataset: Dataset) -> dict[str, Any]:
        refs.validate_name(dataset.node_name, "dataset name")
        facts = {"namespace": dataset.namespace, "name": dataset.name, "facets": dataset.facets}
        return {
            "id": ids.new_id(),
            "type": "dataset",
            "name": dataset.node_name,
            "digest": dataset.digest,
            "size": None,
            "uri": _uri(dataset),
            "properties": _SORTED.encode({KEY: facts}),
            "created_ms": self.created_ms,
            "created_by": self.actor,
        }

    def _link(
        self,
        run_id: str,
        experiment_id: str,
        events: Iterable[RunEvent],
        datasets: dict[tuple[str, str], str],
    ) -> None:
        run = (run_id, "run")
        self.edges.add(run, (experiment_id, "context"), records.ASSOCIATED_WITH)
        for event in events:
            for dataset in event.inputs:
                node = (datasets[(dataset.namespace, dataset.name)], "artifact")
                self.edges.add(node, run, records.CONTRIBUTED_TO)
            for dataset in event.outputs:
                node = (datasets[(dataset.namespace, dataset.name)], "artifact")
                self.edges.add(run, node, records.PRODUCED)
                for source in column_sources(dataset):
                    if datasets[source] != node[0]:
                        self.edges.add((datasets[source], "artifact"), node, records.DERIVED_FROM)

    def _write_edges(self, updated: Sequence[str]) -> int:
        """Edges of runs new in this call cannot exist yet and go in one statement; those of
        updated runs are looked up first; ``DerivedFrom`` edges between datasets go in one
        statement that skips those present (the database decides)."""
        wanted = self.edges.wanted
        for source, destination, association in _RUN_EDGES.all(self.connection, updated):
            wanted.pop((source, destination, association), None)
        rows: list[dict[str, Any]] = []
        derived: list[dict[str, Any]] = []
        created = self.created_ms
        for (source, destination, association), (source_kind, destination_kind) in wanted.items():
            row = {  # bulk_rows.EDGE_COLUMNS, as a literal: thousands per call
                "source_id": source,
                "source_kind": source_kind,
                "destination_id": destination,
                "destination_kind": destination_kind,
                "association": association,
                "created_ms": created,
            }
            (derived if association == records.DERIVED_FROM else rows).append(row)
        bulk_rows.INSERT_EDGE.execute_many(self.connection, rows)
        rows.extend(_insert_missing_edges(self.connection, derived))
        audit.stage_many(self.connection, schema.edges, rows)
        return len(rows)


# Edges that may exist already (a dataset's column lineage, sent again by each run of its
# job), inserted in one statement; the database says which were new, and only those are
# staged for the audit entry, even when another writer inserts the same edge meanwhile.
_EDGE_FIELDS = ", ".join(bulk_rows.EDGE_COLUMNS)
_INSERT_MISSING_EDGES = {
    "sqlite": DriverStatement(
        f"INSERT INTO edges ({_EDGE_FIELDS}) SELECT "
        + ", ".join(f"json_extract(value, '$.{column}')" for column in bulk_rows.EDGE_COLUMNS)
        + " FROM json_each(:rows) WHERE true ON CONFLICT DO NOTHING "
        "RETURNING source_id, destination_id, association"
    ),
    "postgresql": DriverStatement(
        f"INSERT INTO edges ({_EDGE_FIELDS}) SELECT {_EDGE_FIELDS} FROM "
        "jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(source_id text, source_kind text, "
        "destination_id text, destination_kind text, association text, created_ms bigint) "
        "ON CONFLICT DO NOTHING RETURNING source_id, destination_id, association"
    ),
}


def _insert_missing_edges(
    connection: Connection, rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Insert each edge of ``rows`` unless the same one exists; the rows that were new."""
    if not rows:
        return []
    statement = _INSERT_MISSING_EDGES[connection.dialect.name]
    inserted = set(statement.all(connection, {"rows": json.dumps(rows)}))
    return [
        row
        for row in rows
        if (row["source_id"], row["destination_id"], row["association"]) in inserted
    ]


def _kind(event: RunEvent) -> str:
    """The run kind: the job's ``jobType`` facet (``query``, ``dag``, ``task``) or processing."""
    job_type = event.job_facets.get("jobType", {}).get("jobType")
    if isinstance(job_type, str):
        return safe_name(job_type.lower(), "processing")[:40]
    return "processing"


def _uri(dataset: Dataset) -> str | None:
    """``namespace/name`` as the dataset's reference URI when it names an object store or a
    web address (a database's namespace stays in the properties)."""
    scheme = dataset.namespace.partition("://")[0].lower()
    if scheme not in uploads.REFERENCE_SCHEMES:
        return None
    try:
        return uploads.check_reference_uri(f"{dataset.namespace.rstrip('/')}/{dataset.name}")
    except InvalidInputError:
        return None


def _check_owned(row: dict[str, Any], event: RunEvent) -> None:
    """A runId may only continue a run that OpenLineage started, for the same job."""
    stored = json.loads(row["properties"] or "{}").get(KEY)
    if stored is None:
        raise ConflictError(
            f"run {row['id']} was not recorded from OpenLineage, so runId {event.run_uuid} can "
            "not update it; give the OpenLineage run its own runId."
        )
    if row["name"] != event.job_name[:200]:
        raise ConflictError(
            f"runId {event.run_uuid} belongs to job {row['name']!r}, not {event.job_name!r}; "
            "every run of a job needs its own runId."
        )


def _apply(row: dict[str, Any], events: Sequence[RunEvent]) -> None:
    """Fold a run's events (in time order) into its row: times, status and facets."""
    stored = row["properties"]
    properties = json.loads(stored) if isinstance(stored, str) else stored
    kept = properties[KEY]
    for event in events:
        if event.event_type == "START":
            row["start_ms"] = min(row["start_ms"], event.time_ms)
        final = FINAL_STATUS.get(event.event_type)
        if final is not None:
            row["status"] = final
            row["end_ms"] = event.time_ms
            row["start_ms"] = min(row["start_ms"], event.time_ms)
        kept["namespace"] = event.job_namespace
        counts = kept.setdefault("events", {})
        counts[event.event_type] = counts.get(event.event_type, 0) + 1
        kept.setdefault("run_facets", {}).update(event.run_facets)
        kept.setdefault("job_facets", {}).update(event.job_facets)
        if event.producer:
            kept["producer"] = event.producer
        for direction, datasets in (("inputs", event.inputs), ("outputs", event.outputs)):
            side = kept.setdefault(direction, {})
            for dataset in datasets:
                side.setdefault(f"{dataset.namespace}/{dataset.name}", {}).update(dataset.facets)
    row["properties"] = _SORTED.encode(properties)
