"""Bulk lineage ingest: many runs, artifacts and their edges in one call and one transaction.

Importers and pipelines that already know their graph (an orchestrator's history, a backfill)
should not pay one transaction per artifact. ``ingest`` takes plain JSON-able items, checks
every one before a row is written, and writes them with one cached statement per table
(``executemany`` on the driver's cursor), staging the image of every row it writes for the one
audit entry the transaction appends.

The rules are the per-call API's: an artifact is one node per (type, name, digest); an input
whose bytes some run produced (in the store or in this batch) is that output's node, the one
with the input's own type and name first, else the first produced; empty content never joins
(see ``artifacts.produced_node``). Artifacts are described, not uploaded: a batch records
digests the caller computed (data sources, tables, files kept elsewhere).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection

from clew.domain import ids, records, refs
from clew.domain.lineage import IngestResult
from clew.domain.run_fields import check_key, param_text
from clew.errors import InvalidInputError
from clew.service import audit, bulk_rows, uploads
from clew.service.artifacts import check_artifact
from clew.service.contexts import ensure_context
from clew.service.graph import add_edge
from clew.service.runs import check_run_name, now_ms
from clew.store import schema
from clew.store.id_sets import IdSetStatement
from clew.store.location import Store

MAX_ITEMS = 100_000
_RUN_COLUMNS = (
    "id",
    "experiment_id",
    "parent_id",
    "name",
    "kind",
    "status",
    "user_name",
    "start_ms",
    "end_ms",
    "command",
    "seed",
    "code_artifact_id",
    "environment_artifact_id",
    "properties",
)


_INSERT_RUN = bulk_rows.insert("runs", _RUN_COLUMNS)
_INSERT_PARAM = bulk_rows.insert("params", ("run_id", "key", "value"))
# Every edge written here touches a run this call creates, so none can exist yet: the plain
# bulk_rows.INSERT_EDGE, without ON CONFLICT.
_BY_DIGEST = IdSetStatement("SELECT id, type, name, digest FROM artifacts WHERE digest IN ({ids})")
_EXPERIMENTS = IdSetStatement(
    "SELECT name, id FROM contexts WHERE type = 'experiment' AND name IN ({ids})"
)
_PRODUCED = IdSetStatement(
    "SELECT a.id, a.type, a.name, a.digest FROM artifacts a "
    "JOIN edges e ON e.destination_id = a.id "
    "WHERE e.association = 'Produced' AND a.digest IN ({ids}) "
    "AND (a.size IS NULL OR a.size > 0) ORDER BY e.id"
)


@dataclass(frozen=True)
class ArtifactItem:
    key: str
    type: str
    name: str
    digest: str
    size: int | None
    uri: str | None
    properties: str
    derived_from: tuple[str, ...]


@dataclass(frozen=True)
class RunItem:
    key: str
    experiment: str
    name: str
    kind: str
    status: str
    params: dict[str, str]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    start_ms: int | None
    end_ms: int | None


Item = TypeVar("Item", ArtifactItem, RunItem)


def ingest(
    store: Store,
    artifacts: Sequence[Mapping[str, Any]],
    runs: Sequence[Mapping[str, Any]],
    actor: str,
) -> IngestResult:
    """Record ``artifacts`` and ``runs`` (with their inputs and outputs) in one transaction.

    Each artifact is ``{"key", "type", "name", "digest"}`` plus optional ``size``, ``uri``,
    ``properties`` and ``derived_from`` (keys); each run is ``{"key", "name"}`` plus optional
    ``experiment``, ``kind``, ``status`` (FINISHED), ``params``, ``inputs`` and ``outputs``
    (artifact keys), ``start_ms`` and ``end_ms``. Nothing is written unless every item is valid.
    """
    if len(artifacts) + len(runs) > MAX_ITEMS:
        raise InvalidInputError(
            f"a lineage batch holds at most {MAX_ITEMS:,} artifacts and runs together; this one "
            f"has {len(artifacts) + len(runs):,}, so send it in several calls."
        )
    artifact_items = _unique([_artifact_item(i, item) for i, item in enumerate(artifacts)])
    run_items = _unique([_run_item(i, item) for i, item in enumerate(runs)])
    _check_keys(artifact_items, run_items)
    with store.db.write() as connection:
        writer = _Writer(connection, actor)
        artifact_ids = writer.artifacts(artifact_items, run_items)
        run_ids = writer.runs(run_items, artifact_ids)
        for item in artifact_items.values():
            for source in item.derived_from:
                add_edge(
                    connection,
                    artifact_ids[source],
                    "artifact",
                    artifact_ids[item.key],
                    "artifact",
                    records.DERIVED_FROM,
                )
        summary = {"artifacts": len(artifact_ids), "runs": len(run_ids), "edges": writer.edges}
        audit.append_staged(connection, actor, "lineage.ingest", "lineage", summary)
    return IngestResult(artifact_ids, run_ids, writer.edges)


class _Writer:
    """The rows of one batch, written in one transaction with their images staged."""

    def __init__(self, connection: Connection, actor: str) -> None:
        self.connection = connection
        self.actor = actor
        self.created_ms = now_ms()
        self.edges = 0

    def artifacts(
        self, items: Mapping[str, ArtifactItem], runs: Mapping[str, RunItem]
    ) -> dict[str, str]:
        """Each artifact key's node id: an existing or produced node, else a new row."""
        produced_keys = {key for run in runs.values() for key in run.outputs}
        input_keys = {key for run in runs.values() for key in run.inputs} - produced_keys
        digests = list({item.digest for item in items.values()})
        existing = {
            (type_, name, digest): id_
            for id_, type_, name, digest in _BY_DIGEST.all(self.connection, digests)
        }
        found: dict[str, str] = {}
        rows: list[dict[str, Any]] = []
        for key, item in items.items():
            if key in input_keys:
                continue
            identity = (item.type, item.name, item.digest)
            if identity not in existing:
                row = self._artifact_row(item)
                existing[identity] = row["id"]
                rows.append(row)
            found[key] = existing[identity]
        producers = self._producers(
            [items[key] for key in input_keys if key in items], items, produced_keys, found
        )
        for key in input_keys & items.keys():
            item = items[key]
            identity = (item.type, item.name, item.digest)
            joined = _joined(item, producers.get(item.digest, []))
            if joined is None and identity not in existing:
                row = self._artifact_row(item)
                existing[identity] = row["id"]
                rows.append(row)
            found[key] = joined or existing[identity]
        bulk_rows.INSERT_ARTIFACT.execute_many(self.connection, rows)
        audit.stage_many(self.connection, schema.artifacts, rows)
        return found

    def _producers(
        self,
        inputs: list[ArtifactItem],
        items: Mapping[str, ArtifactItem],
        produced_keys: set[str],
        found: Mapping[str, str],
    ) -> dict[str, list[tuple[str, str, str]]]:
        """Per digest an input may join, its produced nodes (id, type, name), oldest first:
        the store's, then this batch's outputs."""
        wanted = [item.digest for item in inputs if item.size != 0]
        producers: dict[str, list[tuple[str, str, str]]] = {}
        if not wanted:
            return producers
        for id_, type_, name, digest in _PRODUCED.all(self.connection, list(set(wanted))):
            producers.setdefault(digest, []).append((id_, type_, name))
        for key in produced_keys & items.keys():
            item = items[key]
            if item.size != 0:
                producers.setdefault(item.digest, []).append((found[key], item.type, item.name))
        return producers

    def _artifact_row(self, item: ArtifactItem) -> dict[str, Any]:
        return {
            "id": ids.new_id(),
            "type": item.type,
            "name": item.name,
            "digest": item.digest,
            "size": item.size,
            "uri": item.uri,
            "properties": item.properties,
            "created_ms": self.created_ms,
            "created_by": self.actor,
        }

    def _experiments(self, names: list[str]) -> dict[str, str]:
        """Each experiment's context id: the existing ones read in one query (a batch names
        dozens, and a lookup each cost more than writing their runs), the others created."""
        found = dict(_EXPERIMENTS.all(self.connection, names)) if names else {}
        for name in names:
            if name not in found:
                found[name] = ensure_context(self.connection, "experiment", name, self.actor)
        return found

    def runs(self, items: Mapping[str, RunItem], artifact_ids: Mapping[str, str]) -> dict[str, str]:
        experiments = self._experiments(sorted({item.experiment for item in items.values()}))
        found: dict[str, str] = {}
        rows: list[dict[str, Any]] = []
        params: list[dict[str, Any]] = []
        edges: dict[tuple[str, str, str], dict[str, Any]] = {}
        for key, item in items.items():
            run_id = found[key] = ids.new_id()
            start_ms = self.created_ms if item.start_ms is None else item.start_ms
            end_ms = item.end_ms
            if end_ms is None and item.status != records.RUNNING:
                end_ms = start_ms
            row = dict.fromkeys(_RUN_COLUMNS)
            row.update(
                id=run_id,
                experiment_id=experiments[item.experiment],
                name=item.name,
                kind=item.kind,
                status=item.status,
                user_name=self.actor,
                start_ms=start_ms,
                end_ms=end_ms,
                properties="{}",
            )
            rows.append(row)
            params.extend({"run_id": run_id, "key": k, "value": v} for k, v in item.params.items())
            ends = [
                (run_id, "run", experiments[item.experiment], "context", records.ASSOCIATED_WITH),
                *(
                    (artifact_ids[k], "artifact", run_id, "run", records.CONTRIBUTED_TO)
                    for k in item.inputs
                ),
                *(
                    (run_id, "run", artifact_ids[k], "artifact", records.PRODUCED)
                    for k in item.outputs
                ),
            ]
            for end in ends:
                edge = dict(zip(bulk_rows.EDGE_COLUMNS, (*end, self.created_ms), strict=True))
                edges.setdefault((end[0], end[2], end[4]), edge)
        _INSERT_RUN.execute_many(self.connection, rows)
        if params:
            _INSERT_PARAM.execute_many(self.connection, params)
        if edges:
            bulk_rows.INSERT_EDGE.execute_many(self.connection, list(edges.values()))
        audit.stage_many(self.connection, schema.runs, rows)
        audit.stage_many(self.connection, schema.params, params)
        audit.stage_many(self.connection, schema.edges, edges.values())
        self.edges += len(edges)
        return found


def _joined(item: ArtifactItem, producers: list[tuple[str, str, str]]) -> str | None:
    """The produced node an input joins: the one with its own type and name, else the first."""
    if item.size == 0 or not producers:
        return None
    for id_, type_, name in producers:
        if (type_, name) == (item.type, item.name):
            return id_
    return producers[0][0]


def _unique(items: list[Item]) -> dict[str, Item]:
    found: dict[str, Item] = {}
    for item in items:
        if item.key in found:
            raise InvalidInputError(
                f"key {item.key!r} is used twice in this lineage batch; give every item its own."
            )
        found[item.key] = item
    return found


def _check_keys(artifacts: Mapping[str, ArtifactItem], runs: Mapping[str, RunItem]) -> None:
    """Every key a run or artifact refers to names an artifact of this batch."""
    for run in runs.values():
        for key in (*run.inputs, *run.outputs):
            if key not in artifacts:
                raise InvalidInputError(
                    f"run {run.key!r} lists artifact key {key!r}, which is not in this batch; "
                    "add the artifact (the same type, name and digest find the existing node)."
                )
    for item in artifacts.values():
        for key in item.derived_from:
            if key not in artifacts:
                raise InvalidInputError(
                    f"artifact {item.key!r} is derived from key {key!r}, which is not in this "
                    "batch; add that artifact too."
                )


def _artifact_item(index: int, raw: Mapping[str, Any]) -> ArtifactItem:
    what = f"artifact #{index}"
    fields = _fields(raw, what, {"key", "type", "name", "digest"}, _ARTIFACT_OPTIONAL)
    check_artifact(fields["type"], fields["name"], fields["digest"])
    size = fields.get("size")
    if size is not None and (type(size) is not int or not 0 <= size < 2**63):
        raise InvalidInputError(f"{what}: size {size!r} must be a non-negative integer.")
    properties = fields.get("properties") or {}
    if not isinstance(properties, dict):
        raise InvalidInputError(f"{what}: properties must be a JSON object.")
    return ArtifactItem(
        key=_key(fields["key"], what),
        type=fields["type"],
        name=fields["name"],
        digest=fields["digest"],
        size=size,
        uri=uploads.check_reference_uri(fields.get("uri")),
        properties=json.dumps(properties, sort_keys=True, default=str) if properties else "{}",
        derived_from=_keys(fields.get("derived_from"), f"{what} derived_from"),
    )


def _run_item(index: int, raw: Mapping[str, Any]) -> RunItem:
    what = f"run #{index}"
    fields = _fields(raw, what, {"key", "name"}, _RUN_OPTIONAL)
    experiment = fields.get("experiment", "default")
    kind = fields.get("kind", "training")
    refs.validate_name(experiment, "experiment name")
    refs.validate_name(kind, "run kind")
    status = fields.get("status", records.FINISHED)
    if status not in records.RUN_STATUSES:
        raise InvalidInputError(
            f"{what}: status {status!r} is unknown; use one of: {', '.join(records.RUN_STATUSES)}."
        )
    params = fields.get("params") or {}
    if not isinstance(params, dict):
        raise InvalidInputError(f"{what}: params must be a JSON object.")
    times = [fields.get("start_ms"), fields.get("end_ms")]
    for value in times:
        if value is not None and (type(value) is not int or not 0 <= value < 2**63):
            raise InvalidInputError(f"{what}: times must be integer milliseconds since 1970.")
    return RunItem(
        key=_key(fields["key"], what),
        experiment=experiment,
        name=check_run_name(fields["name"]),
        kind=kind,
        status=status,
        params={check_key(k, "param"): param_text(k, v) for k, v in params.items()},
        inputs=_keys(fields.get("inputs"), f"{what} inputs"),
        outputs=_keys(fields.get("outputs"), f"{what} outputs"),
        start_ms=times[0],
        end_ms=times[1],
    )


_ARTIFACT_OPTIONAL = {"size", "uri", "properties", "derived_from"}
_RUN_OPTIONAL = {
    "experiment",
    "kind",
    "status",
    "params",
    "inputs",
    "outputs",
    "start_ms",
    "end_ms",
}


def _fields(
    raw: Mapping[str, Any], what: str, required: set[str], optional: set[str]
) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise InvalidInputError(f"{what} must be a JSON object.")
    keys = raw.keys()
    if required <= keys and keys <= required | optional:
        return raw
    missing = sorted(required - raw.keys())
    unknown = sorted(raw.keys() - required - optional)
    if missing or unknown:
        problem = f"lacks {', '.join(missing)}" if missing else f"has unknown {', '.join(unknown)}"
        raise InvalidInputError(
            f"{what} {problem}; it takes {', '.join(sorted(required))} and optionally "
            f"{', '.join(sorted(optional))}."
        )
    return raw


def _key(value: Any, what: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 200:
        raise InvalidInputError(f"{what}: key {value!r} must be a string of 1 to 200 characters.")
    return value


def _keys(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple) or not all(isinstance(k, str) for k in value):
        raise InvalidInputError(f"{what} must be a list of artifact keys.")
    return tuple(dict.fromkeys(value))
