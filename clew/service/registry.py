"""The model registry: registered names, immutable numbered versions, alias resolution.

Version numbers are allocated inside the registering transaction by incrementing
``models.last_version`` (``UPDATE ... RETURNING``), never as ``max()+1`` in Python, so two
processes registering at once get unique, gapless numbers. A version never changes after
creation; approvals, rejections and alias moves are rows in ``registry_events``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, select, update

from clew.domain import ids, records, refs
from clew.domain.records import ModelRecord, VersionRecord
from clew.errors import InvalidInputError, NotFoundError
from clew.service import audit
from clew.service.artifacts import load_artifact
from clew.service.graph import add_edge
from clew.service.runs import now_ms
from clew.store import schema
from clew.store.location import Store

ALIAS_SET, ALIAS_REMOVED = "alias_set", "alias_removed"


class RegistryService:
    def __init__(self, store: Store) -> None:
        self.store = store

    def create_model(
        self,
        name: str,
        actor: str,
        *,
        owner: str | None = None,
        description: str = "",
        risk_tier: str | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> ModelRecord:
        with self.store.db.write() as connection:
            model_id = ensure_model(
                connection,
                name,
                actor,
                owner=owner,
                description=description,
                risk_tier=risk_tier,
                tags=tags,
            )
            return load_model(connection, model_id=model_id)

    def get_model(self, name: str) -> ModelRecord:
        with self.store.db.read() as connection:
            return load_model(connection, name=name)

    def list_models(self) -> list[ModelRecord]:
        with self.store.db.read() as connection:
            rows = connection.execute(select(schema.models).order_by(schema.models.c.name))
            return [_model_record(row) for row in rows]

    def register(
        self,
        name: str,
        artifact_id: str,
        actor: str,
        *,
        run_id: str | None = None,
        description: str = "",
        signature: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
    ) -> VersionRecord:
        """Create the next version of ``name`` (and the model itself on first use)."""
        with self.store.db.write() as connection:
            artifact = load_artifact(connection, artifact_id)
            if artifact.type != "model":
                raise InvalidInputError(
                    f"artifact {artifact_id} is a {artifact.type}, not a model; register the "
                    "output of run.log_model(...)."
                )
            model_id = ensure_model(connection, name, actor)
            number = connection.execute(
                update(schema.models)
                .where(schema.models.c.id == model_id)
                .values(last_version=schema.models.c.last_version + 1)
                .returning(schema.models.c.last_version)
            ).scalar_one()
            row = {
                "id": ids.new_id(),
                "model_id": model_id,
                "version": number,
                "artifact_id": artifact_id,
                "digest": artifact.digest,
                "run_id": run_id,
                "signature": json.dumps(dict(signature or {}), sort_keys=True, default=str),
                "metrics": json.dumps(dict(metrics or {}), sort_keys=True, default=str),
                "description": description,
                "created_ms": now_ms(),
                "created_by": actor,
            }
            connection.execute(schema.model_versions.insert().values(**row))
            context_id = _model_context(connection, name, actor)
            add_edge(
                connection, artifact_id, "artifact", context_id, "context", records.ASSOCIATED_WITH
            )
            audit.append(connection, actor, "model.register", f"{name}/{number}", row)
            return load_version(connection, name, number)

    def get_version(self, name: str, version: int) -> VersionRecord:
        with self.store.db.read() as connection:
            return load_version(connection, name, version)

    def versions(self, name: str) -> list[VersionRecord]:
        with self.store.db.read() as connection:
            model = load_model(connection, name=name)
            rows = connection.execute(
                _version_query()
                .where(schema.model_versions.c.model_id == model.id)
                .order_by(schema.model_versions.c.version.desc())
            )
            return [_version_record(row) for row in rows]

    def resolve(self, ref: str) -> VersionRecord:
        parsed = refs.parse(ref)
        if not isinstance(parsed, refs.ModelVersionRef | refs.ModelAliasRef):
            raise InvalidInputError(
                f"{ref!r} is not a model ref; use <name>/<version> or <name>@<alias>."
            )
        with self.store.db.read() as connection:
            return resolve_version(connection, parsed)


def ensure_model(
    connection: Connection,
    name: str,
    actor: str,
    *,
    owner: str | None = None,
    description: str = "",
    risk_tier: str | None = None,
    tags: Mapping[str, Any] | None = None,
) -> str:
    refs.validate_name(name, "model name")
    existing = connection.execute(
        select(schema.models.c.id).where(schema.models.c.name == name)
    ).scalar()
    if existing:
        return existing
    row = {
        "id": ids.new_id(),
        "name": name,
        "owner": owner or actor,
        "description": description,
        "risk_tier": risk_tier,
        "tags": json.dumps(dict(tags or {}), sort_keys=True),
        "last_version": 0,
        "created_ms": now_ms(),
        "created_by": actor,
    }
    connection.execute(schema.models.insert().values(**row))
    audit.append(connection, actor, "model.create", f"model:{name}", row)
    return row["id"]


def _model_context(connection: Connection, name: str, actor: str) -> str:
    from clew.service.contexts import ensure_context

    return ensure_context(connection, "model", name, actor)


def load_model(
    connection: Connection, *, name: str | None = None, model_id: str | None = None
) -> ModelRecord:
    table = schema.models
    condition = table.c.name == name if name is not None else table.c.id == model_id
    row = connection.execute(select(table).where(condition)).first()
    if row is None:
        raise NotFoundError(
            f"model {name or model_id!r} is not registered; list models with `clew models list`."
        )
    return _model_record(row)


def _model_record(row: Any) -> ModelRecord:
    return ModelRecord(
        id=row.id,
        name=row.name,
        owner=row.owner,
        description=row.description,
        risk_tier=row.risk_tier,
        tags=json.loads(row.tags or "{}"),
        last_version=row.last_version,
        created_ms=row.created_ms,
        created_by=row.created_by,
    )


def _version_query() -> Any:
    versions, models = schema.model_versions, schema.models
    return select(versions, models.c.name).join(models, models.c.id == versions.c.model_id)


def _version_record(row: Any) -> VersionRecord:
    return VersionRecord(
        id=row.id,
        model_id=row.model_id,
        name=row.name,
        version=row.version,
        artifact_id=row.artifact_id,
        digest=row.digest,
        run_id=row.run_id,
        signature=json.loads(row.signature or "{}"),
        metrics=json.loads(row.metrics or "{}"),
        description=row.description,
        created_ms=row.created_ms,
        created_by=row.created_by,
    )


def load_version(connection: Connection, name: str, version: int) -> VersionRecord:
    row = connection.execute(
        _version_query().where(
            schema.models.c.name == name, schema.model_versions.c.version == version
        )
    ).first()
    if row is None:
        load_model(connection, name=name)
        raise NotFoundError(
            f"model {name!r} has no version {version}; list them with `clew versions {name}`."
        )
    return _version_record(row)


def alias_target(connection: Connection, model_id: str, alias: str) -> int | None:
    """The version an alias points at now: the newest alias event decides."""
    events = schema.registry_events
    row = connection.execute(
        select(events.c.kind, events.c.version)
        .where(
            events.c.model_id == model_id,
            events.c.alias == alias,
            events.c.kind.in_([ALIAS_SET, ALIAS_REMOVED]),
        )
        .order_by(events.c.id.desc())
        .limit(1)
    ).first()
    if row is None or row.kind == ALIAS_REMOVED:
        return None
    return row.version


def resolve_version(
    connection: Connection, ref: refs.ModelVersionRef | refs.ModelAliasRef
) -> VersionRecord:
    if isinstance(ref, refs.ModelVersionRef):
        return load_version(connection, ref.name, ref.version)
    model = load_model(connection, name=ref.name)
    version = alias_target(connection, model.id, ref.alias)
    if version is None:
        raise NotFoundError(
            f"alias {ref.alias!r} of model {ref.name!r} points at no version; promote one with "
            f"`clew promote {ref.name}/<version> {ref.alias}`."
        )
    return load_version(connection, ref.name, version)
