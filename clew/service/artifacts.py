"""Artifacts: immutable, digest-named things (datasets, models, code, environments, ...).

An artifact row is created once per (type, name, digest) and reused afterwards, so logging
the same dataset twice yields one node with two edges. An input whose bytes a run already
produced is that run's output node, whatever type and name the input call used (see
``produced_node``): one node per content, so files handed from step to step by path keep the
thread. Bytes are always in the blob store before the metadata transaction that points at
them commits.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select

from clew.domain import digests, ids, records, refs
from clew.domain.artifacts import artifact_ref, export_artifact
from clew.domain.records import ArtifactRecord, from_fields
from clew.errors import InvalidInputError, NotFoundError
from clew.service import audit, uploads
from clew.service.graph import add_edge
from clew.service.runs import RunService, now_ms
from clew.store import schema
from clew.store.blobs import BlobBackend
from clew.store.location import Store
from clew.store.metadata import DriverStatement

ARTIFACT_TYPES = (
    "dataset",
    "model",
    "code",
    "environment",
    "feature_group",
    "feature_set",
    "data_source",
    "endpoint",
    "report",
    "file",
    "directory",
    "diff",
)
DIRECTIONS = {"input": records.CONTRIBUTED_TO, "output": records.PRODUCED}
# Logging an artifact is the SDK's hot path (every log_input/log_output): its statements run on
# the driver's cursor (see DriverStatement), not rebuilt and cache-keyed by SQLAlchemy per call.
_ARTIFACT_COLUMNS = tuple(schema.artifacts.columns.keys())
_FIND_ARTIFACT = DriverStatement(
    f"SELECT {', '.join(_ARTIFACT_COLUMNS)} FROM artifacts "
    "WHERE type = :type AND name = :name AND digest = :digest"
)
_INSERT_ARTIFACT = DriverStatement(
    f"INSERT INTO artifacts ({', '.join(_ARTIFACT_COLUMNS)}) "
    f"VALUES ({', '.join(':' + column for column in _ARTIFACT_COLUMNS)})"
)
_LOAD_ARTIFACT = DriverStatement(
    f"SELECT {', '.join(_ARTIFACT_COLUMNS)} FROM artifacts WHERE id = :id"
)
_FIND_BLOB = DriverStatement("SELECT digest FROM blobs WHERE digest = :digest")
_PRODUCED_NODES = DriverStatement(
    "SELECT a.id, a.type, a.name FROM artifacts a JOIN edges e ON e.destination_id = a.id "
    "WHERE a.digest = :digest AND e.association = 'Produced' "
    "AND (a.size IS NULL OR a.size > 0) ORDER BY e.id LIMIT 50"
)


def check_type(type_: str) -> str:
    if type_ not in ARTIFACT_TYPES:
        raise InvalidInputError(
            f"artifact type {type_!r} is unknown; use one of: {', '.join(ARTIFACT_TYPES)}."
        )
    return type_


def check_artifact(type_: str, name: str, digest: str) -> None:
    """Refuse an unknown type, a bad name or a malformed digest (before any row is touched)."""
    check_type(type_)
    refs.validate_name(name, "artifact name")
    if not digests.is_digest(digest):
        raise InvalidInputError(f"{digest!r} is not a sha256 digest; expected sha256:<64 hex>.")


def record_artifact(
    connection: Connection,
    *,
    type_: str,
    name: str,
    digest: str,
    actor: str,
    size: int | None = None,
    uri: str | None = None,
    properties: Mapping[str, Any] | None = None,
) -> tuple[ArtifactRecord, bool]:
    """Get-or-create the artifact row: its record, and True if this call created it.

    A new row's image is staged (``audit.stage``) for the caller's audit entry, so logging an
    artifact and linking it to its run is one entry, not two.
    """
    check_artifact(type_, name, digest)
    existing = _FIND_ARTIFACT.first(connection, {"type": type_, "name": name, "digest": digest})
    if existing:
        return _artifact_from_row(existing), False
    row = {
        "id": ids.new_id(),
        "type": type_,
        "name": name,
        "digest": digest,
        "size": size,
        "uri": uri,
        "properties": json.dumps(dict(properties or {}), sort_keys=True, default=str),
        "created_ms": now_ms(),
        "created_by": actor,
    }
    _INSERT_ARTIFACT.execute(connection, row)
    audit.stage(connection, schema.artifacts, row)
    return from_fields(ArtifactRecord, row), True


def record_blob(
    connection: Connection, blobs: BlobBackend, digest: str, size: int, kind: str
) -> None:
    """Remember that a blob exists (for verify and gc); idempotent.

    A blob not recorded yet is looked up inside the write transaction: ``clew gc`` decides
    and deletes under the same write lock, so an old orphan that an upload found already
    present is either still there when recorded (and then safe) or reported missing here,
    never recorded after gc removed it.
    """
    table = schema.blobs
    if _FIND_BLOB.first(connection, {"digest": digest}):
        return
    if not blobs.exists(digest):
        raise NotFoundError(f"blob {digest} has not been uploaded; upload it first.")
    connection.execute(
        table.insert().values(digest=digest, size=size, kind=kind, created_ms=now_ms())
    )


def produced_node(connection: Connection, type_: str, name: str, digest: str) -> str | None:
    """The artifact a run already produced with exactly these bytes, if any.

    An input that matches one is the same node (one node per content), so a file written by
    one step and read by the next links the two runs. The node logged under the same type and
    name wins (as it always did), else the first one produced: whoever produces the same bytes
    later can not take over the thread of data that already had a producer. Empty content
    never joins: any two empty files share a digest without sharing a history.
    """
    found = _PRODUCED_NODES.all(connection, {"digest": digest})
    for id_, found_type, found_name in found:
        if (found_type, found_name) == (type_, name):
            return str(id_)
    return str(found[0][0]) if found else None


class ArtifactService:
    def __init__(self, store: Store) -> None:
        self.store = store

    def log(
        self,
        *,
        run_id: str | None,
        direction: str,
        type_: str,
        name: str,
        digest: str,
        actor: str,
        size: int | None = None,
        uri: str | None = None,
        properties: Mapping[str, Any] | None = None,
        blobs: Mapping[str, tuple[int, str]] | None = None,
        derived_from: list[str] | None = None,
    ) -> ArtifactRecord:
        """Record an artifact (its blobs already stored) and link it to the run.

        ``blobs`` maps each blob digest the artifact needs to (size, kind), so verify and gc
        know about it; ``derived_from`` lists artifact ids this one was derived from. ``uri``
        passes the same reference-URI rule on every backend (``uploads.check_reference_uri``).
        """
        if direction not in DIRECTIONS:
            raise InvalidInputError(f"direction {direction!r} must be 'input' or 'output'.")
        check_artifact(type_, name, digest)
        uploads.check_reference_uri(uri)
        uploads.check_logged_manifests(self.store.blobs, digest, blobs or {})
        with self.store.db.write() as connection:
            if run_id:
                RunService(self.store)._require_running(connection, run_id)
            for blob_digest, (blob_size, kind) in (blobs or {}).items():
                record_blob(connection, self.store.blobs, blob_digest, blob_size, kind)
            joined = (
                produced_node(connection, type_, name, digest)
                if run_id and direction == "input"
                else None
            )
            if joined:
                artifact, created = get_artifact_row(connection, joined), False
            else:
                artifact, created = record_artifact(
                    connection,
                    type_=type_,
                    name=name,
                    digest=digest,
                    actor=actor,
                    size=size,
                    uri=uri,
                    properties=properties,
                )
            _link(connection, artifact.id, run_id, direction, derived_from or [])
            audit.append_staged(
                connection,
                actor,
                "artifact.create" if created else "artifact.link",
                f"artifact:{artifact.id}",
                {"run": run_id, "direction": direction, "derived_from": derived_from or []},
            )
            return artifact

    def get(self, artifact_id: str) -> ArtifactRecord:
        with self.store.db.read() as connection:
            return get_artifact_row(connection, artifact_id)

    def find(self, ref: refs.ArtifactRef) -> ArtifactRecord:
        with self.store.db.read() as connection:
            return resolve_artifact(connection, ref)

    def resolve(self, ref: str) -> ArtifactRecord:
        """The artifact named by ``dataset:<name>``, ``sha256:<hex>`` or ``artifact:<id>``."""
        return self.find(artifact_ref(ref))

    def export(self, artifact: ArtifactRecord, destination: Path) -> Path:
        """Copy an artifact's stored bytes to ``destination``, verifying every digest."""
        return export_artifact(self.store.blobs, artifact, destination)

    def run_artifacts(self, run_id: str) -> dict[str, list[ArtifactRecord]]:
        """The run's inputs and outputs."""
        edges = schema.edges
        with self.store.db.read() as connection:
            inputs = (
                connection.execute(
                    select(edges.c.source_id).where(
                        edges.c.destination_id == run_id, edges.c.source_kind == "artifact"
                    )
                )
                .scalars()
                .all()
            )
            outputs = (
                connection.execute(
                    select(edges.c.destination_id).where(
                        edges.c.source_id == run_id, edges.c.destination_kind == "artifact"
                    )
                )
                .scalars()
                .all()
            )
            return {
                "inputs": [get_artifact_row(connection, i) for i in inputs],
                "outputs": [get_artifact_row(connection, o) for o in outputs],
            }


def _link(
    connection: Connection,
    artifact_id: str,
    run_id: str | None,
    direction: str,
    derived_from: list[str],
) -> None:
    """The artifact's edges: to or from its run, and from each artifact it derives from."""
    if run_id and direction == "input":
        add_edge(connection, artifact_id, "artifact", run_id, "run", records.CONTRIBUTED_TO)
    elif run_id:
        add_edge(connection, run_id, "run", artifact_id, "artifact", records.PRODUCED)
    for source_id in derived_from:
        add_edge(connection, source_id, "artifact", artifact_id, "artifact", records.DERIVED_FROM)


def get_artifact_row(connection: Connection, artifact_id: str) -> ArtifactRecord:
    row = _LOAD_ARTIFACT.first(connection, {"id": artifact_id})
    if row is None:
        raise NotFoundError(f"artifact {artifact_id} does not exist.")
    return _artifact_from_row(row)


def _artifact_from_row(row: tuple[Any, ...]) -> ArtifactRecord:
    return from_fields(ArtifactRecord, dict(zip(_ARTIFACT_COLUMNS, row, strict=True)))


def _artifact_record(row: Any) -> ArtifactRecord:
    return from_fields(ArtifactRecord, row._mapping)


def resolve_artifact(connection: Connection, ref: refs.ArtifactRef) -> ArtifactRecord:
    """Resolve an artifact ref; the newest match wins when a name has several digests."""
    if ref.artifact_id:
        return get_artifact_row(connection, ref.artifact_id)
    table = schema.artifacts
    query = select(table)
    if ref.type:
        query = query.where(table.c.type == ref.type, table.c.name == ref.name)
    if ref.digest_prefix:
        if len(ref.digest_prefix) == digests.HEX_LENGTH:
            query = query.where(table.c.digest == digests.PREFIX + ref.digest_prefix)
        else:
            query = query.where(table.c.digest.startswith(digests.PREFIX + ref.digest_prefix))
    rows = connection.execute(query.order_by(table.c.created_ms.desc()).limit(50)).all()
    if not rows:
        raise NotFoundError(f"no artifact matches {refs.format_ref(ref)!r}.")
    distinct = {row.digest for row in rows}
    if not ref.type and len(distinct) > 1:
        raise InvalidInputError(
            f"{refs.format_ref(ref)!r} matches {len(distinct)} different digests; give more "
            "hex characters."
        )
    return _artifact_record(rows[0])
