"""Baselines of model versions: built, imported, exported and their constraints edited.

A baseline is two ``report`` artifacts: ``<model>-v<n>.statistics.json`` and
``<model>-v<n>.constraints.json`` in SageMaker Model Monitor's shapes (clew/domain/baselines.py).
Both are linked in lineage: the statistics derive from the dataset they summarise and from the
model version's artifact, the constraints derive from the statistics, and both are associated
with the model's context. A constraints edit stores a new constraints artifact (its document
carries its revision, author and time, so no two revisions share a digest) with an audit entry
naming who changed what; the newest revision is the one checks use. No table is added: the
artifact rows and the audit chain already hold, and protect, every fact.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select

from clew.domain import records
from clew.domain.records import ArtifactRecord, VersionRecord
from clew.errors import InvalidInputError, NotFoundError
from clew.service import audit
from clew.service.artifacts import ArtifactService, get_artifact_row, record_artifact, record_blob
from clew.service.contexts import ensure_context
from clew.service.graph import add_edge
from clew.service.registry import RegistryService
from clew.service.runs import now_ms
from clew.store import schema
from clew.store.location import Store

if TYPE_CHECKING:  # numpy and pyarrow: imported when a baseline is built or read, not at connect
    import pyarrow as pa

    from clew.domain.baselines import Baseline

STATISTICS_SUFFIX = "statistics.json"
CONSTRAINTS_SUFFIX = "constraints.json"


def artifact_name(version: VersionRecord, suffix: str) -> str:
    return f"{version.name}-v{version.version}.{suffix}"


class BaselineService:
    """Building, importing, reading and editing the baselines of model versions."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.registry = RegistryService(store)
        self.artifacts = ArtifactService(store)

    # --- making one -------------------------------------------------------------------

    def create_baseline(
        self,
        ref: str,
        actor: str,
        *,
        dataset: str | None = None,
        prediction: str | None = None,
    ) -> Baseline:
        """Statistics and suggested constraints of ``dataset`` (an artifact ref) or, without
        one, of the training data lineage records for the version's run."""
        from clew.domain import baselines as docs
        from clew.domain.statistics import profile_table

        version = self.registry.resolve(ref)
        source = self._source(version, dataset)
        table = self._read_table(source)
        if table.num_rows == 0:
            raise InvalidInputError(
                f"dataset {source.name!r} has no rows; a baseline needs data to describe."
            )
        if prediction is not None and prediction not in table.column_names:
            raise InvalidInputError(
                f"dataset {source.name!r} has no column {prediction!r} to use as the prediction; "
                f"its columns are: {', '.join(table.column_names)}."
            )
        stats = profile_table(table)
        return self._store(
            version,
            docs.statistics_document(stats),
            docs.suggest_constraints(stats, prediction),
            actor,
            source,
            "monitoring.baseline.create",
        )

    def import_baseline(
        self, ref: str, statistics: str, constraints: str | None, actor: str
    ) -> Baseline:
        """Adopt a team's own SageMaker ``statistics.json`` (and ``constraints.json``)."""
        from clew.domain import baselines as docs

        version = self.registry.resolve(ref)
        statistics_doc = docs.parse_document(statistics, "statistics.json")
        stats = docs.statistics_of(statistics_doc)
        if stats.rows == 0:
            raise InvalidInputError("statistics.json describes no rows; a baseline needs data.")
        constraints_doc = (
            docs.suggest_constraints(stats, None)
            if constraints is None
            else docs.check_constraints(docs.parse_document(constraints, "constraints.json"), stats)
        )
        if "clew" not in statistics_doc:
            statistics_doc = {**statistics_doc, "clew": docs.statistics_document(stats)["clew"]}
        return self._store(
            version, statistics_doc, constraints_doc, actor, None, "monitoring.baseline.import"
        )

    # --- reading ----------------------------------------------------------------------

    def find_baseline(self, ref: str) -> Baseline | None:
        from clew.domain.baselines import Baseline

        version = self.registry.resolve(ref)
        with self.store.db.read() as connection:
            statistics = _latest(connection, artifact_name(version, STATISTICS_SUFFIX))
            if not statistics:
                return None
            constraints = _latest(connection, artifact_name(version, CONSTRAINTS_SUFFIX))
        return Baseline(
            model=version.name,
            version=version.version,
            statistics_artifact_id=statistics[0].id,
            constraints_artifact_id=constraints[0].id,
            constraints_version=len(constraints),
            statistics=self._document(statistics[0]),
            constraints=self._document(constraints[0]),
        )

    def get_baseline(self, ref: str) -> Baseline:
        found = self.find_baseline(ref)
        if found is None:
            raise NotFoundError(
                f"model version {ref} has no baseline; create one with "
                f"`clew monitor baseline create {ref}` or import SageMaker files."
            )
        return found

    # --- editing constraints -------------------------------------------------------------

    def edit_constraints(
        self, ref: str, edits: Mapping[str, Mapping[str, Any]], actor: str, reason: str = ""
    ) -> Baseline:
        """Change thresholds, allowed values or bounds of features: a new, audited revision."""
        from clew.domain import baselines as docs

        baseline = self.get_baseline(ref)
        edited = docs.apply_edits(baseline.constraints, edits, baseline.stats)
        return self._revise(baseline, edited, actor, {"edits": edits, "reason": reason})

    def import_constraints(self, ref: str, constraints: str, actor: str) -> Baseline:
        """Replace the constraints with a whole ``constraints.json`` (a new, audited revision)."""
        from clew.domain import baselines as docs

        baseline = self.get_baseline(ref)
        parsed = docs.check_constraints(
            docs.parse_document(constraints, "constraints.json"), baseline.stats
        )
        return self._revise(baseline, parsed, actor, {"imported": True})

    # --- internals --------------------------------------------------------------------

    def _source(self, version: VersionRecord, dataset: str | None) -> ArtifactRecord:
        if dataset is not None:
            found = self.artifacts.resolve(dataset)
            if found.type != "dataset":
                raise InvalidInputError(
                    f"{dataset} is a {found.type} artifact, not a dataset; name a dataset."
                )
            return found
        if version.run_id is None:
            raise InvalidInputError(
                f"{version.ref} has no run recorded in lineage; pass the training dataset."
            )
        inputs = self.artifacts.run_artifacts(version.run_id)["inputs"]
        datasets = [a for a in inputs if a.type == "dataset"]
        if not datasets:
            raise InvalidInputError(
                f"the run that built {version.ref} logged no dataset input; pass the dataset."
            )
        return datasets[0]

    def _read_table(self, artifact: ArtifactRecord) -> pa.Table:
        """A dataset artifact's rows: Parquet (what ``log_input(df)`` stores) or CSV."""
        import pyarrow as pa
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        if artifact.uri:
            raise InvalidInputError(
                f"dataset {artifact.name!r} is recorded by reference ({artifact.uri}), so clew "
                "holds no bytes of it; log the data itself or pass a DataFrame."
            )
        data = self.store.blobs.read_bytes(artifact.digest)
        try:
            if data[:4] == b"PAR1":
                return pq.read_table(io.BytesIO(data))
            return pacsv.read_csv(io.BytesIO(data))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
            raise InvalidInputError(
                f"dataset {artifact.name!r} is neither Parquet nor CSV ({error})."
            ) from None

    def _document(self, artifact: ArtifactRecord) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.store.blobs.read_bytes(artifact.digest))
        return document

    def _store(
        self,
        version: VersionRecord,
        statistics: dict[str, Any],
        constraints: dict[str, Any],
        actor: str,
        source: ArtifactRecord | None,
        action: str,
    ) -> Baseline:
        constraints = _stamped(constraints, 1, actor, version)
        stats_blob = _put(self.store, statistics)
        cons_blob = _put(self.store, constraints)
        with self.store.db.write() as connection:
            stats_id = _record(
                connection, self.store, version, STATISTICS_SUFFIX, stats_blob, actor
            )
            cons_id = _record(connection, self.store, version, CONSTRAINTS_SUFFIX, cons_blob, actor)
            links = [(version.artifact_id, stats_id), (stats_id, cons_id)]
            if source is not None:
                links.append((source.id, stats_id))
            for origin, target in links:
                add_edge(connection, origin, "artifact", target, "artifact", records.DERIVED_FROM)
            context = ensure_context(connection, "model", version.name, actor)
            for artifact_id in (stats_id, cons_id):
                add_edge(
                    connection, artifact_id, "artifact", context, "context", records.ASSOCIATED_WITH
                )
            audit.append(
                connection,
                actor,
                action,
                f"model:{version.ref}",
                {
                    "statistics": stats_id,
                    "constraints": cons_id,
                    "source": source.id if source else None,
                },
            )
        return self.get_baseline(version.ref)

    def _revise(
        self, baseline: Baseline, constraints: dict[str, Any], actor: str, change: dict[str, Any]
    ) -> Baseline:
        version = self.registry.resolve(f"{baseline.model}/{baseline.version}")
        revision = baseline.constraints_version + 1
        change = {**change, "previous": baseline.constraints_artifact_id}
        stamped = _stamped(constraints, revision, actor, version, change)
        blob = _put(self.store, stamped)
        with self.store.db.write() as connection:
            cons_id = _record(connection, self.store, version, CONSTRAINTS_SUFFIX, blob, actor)
            add_edge(
                connection,
                baseline.statistics_artifact_id,
                "artifact",
                cons_id,
                "artifact",
                records.DERIVED_FROM,
            )
            audit.append(
                connection,
                actor,
                "monitoring.constraints.edit",
                f"model:{version.ref}",
                {
                    "constraints": cons_id,
                    "revision": revision,
                    **change,
                },
            )
        return self.get_baseline(version.ref)


def _stamped(
    constraints: dict[str, Any],
    revision: int,
    actor: str,
    version: VersionRecord,
    change: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The document with its revision, author, time and change: what the audited artifact row
    pins by digest, so "who changed what, and why" is read from the stored revision itself."""
    own = dict(constraints.get("clew") or {})
    own.update(
        {
            "model": version.ref,
            "revision": revision,
            "author": actor,
            "time_ms": now_ms(),
            "change": dict(change or {}),
        }
    )
    return {**constraints, "clew": own}


def _put(store: Store, document: Mapping[str, Any]) -> tuple[str, int]:
    stored = store.blobs.put_bytes(json.dumps(document, sort_keys=True, indent=1).encode())
    return stored.digest, stored.size


def _record(
    connection: Connection,
    store: Store,
    version: VersionRecord,
    suffix: str,
    blob: tuple[str, int],
    actor: str,
) -> str:
    digest, size = blob
    record_blob(connection, store.blobs, digest, size, "file")
    artifact, _ = record_artifact(
        connection,
        type_="report",
        name=artifact_name(version, suffix),
        digest=digest,
        actor=actor,
        size=size,
        properties={
            "format": "json",
            "monitoring": suffix.removesuffix(".json"),
            "model_version_id": version.id,
        },
    )
    return artifact.id


def _latest(connection: Connection, name: str) -> list[ArtifactRecord]:
    """Every revision stored under ``name``, newest first (ids are time-ordered)."""
    table = schema.artifacts
    found = connection.execute(
        select(table.c.id)
        .where(table.c.type == "report", table.c.name == name)
        .order_by(table.c.id.desc())
    ).scalars()
    return [get_artifact_row(connection, artifact_id) for artifact_id in found]
