"""The model registry: registered names, immutable numbered versions, events, ref resolution.

Version numbers are allocated inside the registering transaction by incrementing
``models.last_version`` (``UPDATE ... RETURNING``), never as ``max()+1`` in Python, so two
processes registering at once get unique, gapless numbers. A version never changes after
creation; registration, approvals, rejections, revocations, archiving and alias moves are
rows in the append-only ``registry_events`` table, and every current state (is version 3
approved? what is ``churn@production``?) is derived from them.

Order comes from the store, not from clocks: each event takes the next ``seq`` inside its
write transaction (writers are serialised by the store's write lock on SQLite and PostgreSQL
alike; a unique index turns any breach of that into an error, never a silent tie), and "the
newest event wins" means the highest ``seq``. Its time comes from one clock per store (the
database's on PostgreSQL, the writing process's on SQLite, which behind a server is the
server's), clamped so it is never before the newest event: a client whose clock is an hour
behind neither waits for it while holding the lock nor dates an approval before the
registration it approves.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, select

from clew.domain import ids, records, refs
from clew.domain.records import (
    ArtifactRecord,
    FieldLookup,
    ModelRecord,
    RegistryEvent,
    VersionRecord,
    from_fields,
)
from clew.errors import ConflictError, InvalidInputError, NameConflictError, NotFoundError
from clew.service import audit, integrity, signed_heads
from clew.service.artifacts import get_artifact_row, resolve_artifact
from clew.service.contexts import ensure_context
from clew.service.graph import add_edge
from clew.service.runs import now_ms
from clew.store import schema
from clew.store.location import Store
from clew.store.metadata import DriverStatement

REGISTERED, APPROVED, REJECTED, REVOKED, ARCHIVED = (
    "registered",
    "approved",
    "rejected",
    "revoked",
    "archived",
)
ALIAS_SET, ALIAS_ROLLBACK = "alias_set", "alias_rollback"
ALIAS_KINDS = (ALIAS_SET, ALIAS_ROLLBACK)
DECISION_KINDS = (APPROVED, REJECTED, REVOKED, ARCHIVED)
# Monitoring's governance events (clew/service/monitor_runs.py): a violation found on a
# version, and a person resolving it (``clew monitor resolve``).
VIOLATION, REVALIDATED = "violation", "revalidated"
MONITORING_KINDS = (VIOLATION, REVALIDATED)
# Every kind a version's status is folded from (approvals.fold_decisions).
STATUS_KINDS = (*DECISION_KINDS, *MONITORING_KINDS)
TARGET_PARAMS = ("target", "target_column", "label", "label_column")
TRAINING_DATA_TYPES = ("dataset", "feature_set", "file")
# The column pandas writes for an unnamed index (``df.to_parquet()``): never a model input.
_PANDAS_INDEX = re.compile(r"__index_level_\d+__")

_VERSION_COLUMNS = (
    "v.id, v.model_id, m.name, v.version, v.artifact_id, v.digest, v.run_id, v.signature, "
    "v.metrics, v.description, v.created_ms, v.created_by"
)
# The hot path of loading "churn@production": one statement, three index seeks
# (models.name, registry_events(model_id, alias, seq), model_versions(model_id, version)).
_RESOLVE_ALIAS_SQL = DriverStatement(f"""
SELECT {_VERSION_COLUMNS} FROM models m JOIN model_versions v ON v.model_id = m.id
WHERE m.name = :name AND v.version = (
    SELECT e.version FROM registry_events e
    WHERE e.model_id = m.id AND e.alias = :alias ORDER BY e.seq DESC LIMIT 1)
""")
_RESOLVE_VERSION_SQL = DriverStatement(f"""
SELECT {_VERSION_COLUMNS} FROM models m JOIN model_versions v ON v.model_id = m.id
WHERE m.name = :name AND v.version = :version
""")


# Registration is a hot path: its statements are plain SQL run on the transaction's DBAPI
# cursor (see DriverStatement), which keeps a registration's CPU cost near SQLite's own.
_ARTIFACT_COLUMNS = tuple(schema.artifacts.columns.keys())
_ARTIFACT_AND_PRODUCER = DriverStatement(
    f"""
    SELECT {", ".join(f"a.{column}" for column in _ARTIFACT_COLUMNS)}, (
        SELECT e.source_id FROM edges e
        WHERE e.destination_id = a.id AND e.association = '{records.PRODUCED}'
            AND e.source_kind = 'run'
        ORDER BY e.id DESC LIMIT 1)
    FROM artifacts a WHERE a.id = :artifact_id
    """
)
_RUN_MODELS = DriverStatement(
    f"""
    SELECT a.id, a.name FROM artifacts a JOIN edges e ON e.destination_id = a.id
    WHERE e.source_id = :run_id AND e.association = '{records.PRODUCED}' AND a.type = 'model'
    """
)
_TRAINING_DATA = DriverStatement(
    f"""
    SELECT a.type, a.name, a.digest, a.properties FROM artifacts a
    JOIN edges e ON e.source_id = a.id
    WHERE e.destination_id = :run_id AND e.association = '{records.CONTRIBUTED_TO}'
        AND a.type IN ({", ".join(f"'{type_}'" for type_ in TRAINING_DATA_TYPES)})
    """
)
_TARGET_PARAMS = DriverStatement(
    f"""
    SELECT key, value FROM params
    WHERE run_id = :run_id AND key IN ({", ".join(f"'{key}'" for key in TARGET_PARAMS)})
    """
)
_RUN_METRICS = DriverStatement("SELECT key, value FROM latest_metrics WHERE run_id = :run_id")
_NEXT_VERSION = DriverStatement(
    """
    UPDATE models SET last_version = last_version + 1 WHERE name = :model_name
    RETURNING id, last_version, owner, risk_tier, tags
    """
)
_MODEL_CONTEXT = DriverStatement(
    "SELECT id FROM contexts WHERE type = 'model' AND name = :model_name"
)
_INSERT_VERSION = DriverStatement(
    """
    INSERT INTO model_versions (id, model_id, version, artifact_id, digest, run_id, signature,
        metrics, description, created_ms, created_by)
    VALUES (:id, :model_id, :version, :artifact_id, :digest, :run_id, :signature, :metrics,
        :description, :created_ms, :created_by)
    """
)
_INSERT_EVENT = DriverStatement(
    """
    INSERT INTO registry_events (id, model_id, version, kind, alias, from_version, actor,
        time_ms, comment, evidence, seq)
    VALUES (:id, :model_id, :version, :kind, :alias, :from_version, :actor, :time_ms,
        :comment, :evidence, :seq)
    """
)
_NEWEST_EVENT = DriverStatement(
    "SELECT seq, time_ms FROM registry_events WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1"
)
_DATABASE_CLOCK_MS = "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"


class RegistryService:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._reader = _FastReader(store)

    # --- models ---------------------------------------------------------------------------

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
        refs.validate_name(name, "model name")
        with self.store.db.write() as connection:
            if _model_row(connection, name) is not None:
                raise ConflictError(
                    f"model {name!r} already exists; register new versions of it instead."
                )
            model_id = _insert_model(
                connection,
                name,
                actor,
                owner=owner,
                description=description,
                risk_tier=risk_tier,
                tags=tags,
                last_version=0,
            )
            return get_model_row(connection, model_id=model_id)

    def get_model(self, name: str) -> ModelRecord:
        with self.store.db.read() as connection:
            return get_model_row(connection, name=name)

    def list_models(self) -> list[ModelRecord]:
        with self.store.db.read() as connection:
            return all_models(connection)

    # --- versions -------------------------------------------------------------------------

    @signed_heads.checkpointed(decision=False)
    def register(
        self,
        name: str,
        source: str,
        actor: str,
        *,
        description: str = "",
        signature: Mapping[str, Any] | None = None,
        owner: str | None = None,
        risk_tier: str | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> VersionRecord:
        """Create the next version of ``name`` (and the model itself on first use).

        ``source`` is a ref to a model artifact (``artifact:<id>``, ``model:churn-rf``...)
        or to the run that logged it (``run:<id>``). The version records the artifact's
        digest, the producing run, the run's metrics and the input/output signature.
        """
        refs.validate_name(name, "model name")
        if signature is not None and not isinstance(signature, Mapping):
            raise InvalidInputError("signature must be a mapping such as {'inputs': [...]}.")
        parsed = refs.parse(source)
        write = functools.partial(
            self._write_version,
            name,
            parsed,
            source,
            actor,
            description=description,
            signature=signature,
            owner=owner,
            risk_tier=risk_tier,
            tags=tags,
        )
        try:
            return write(hash_now=False)
        except integrity.NotHashedYet as pending:
            # Hashed outside the write transaction: re-hashing a model must not hold the lock.
            integrity.require_verified_bytes(self.store, pending.artifact, pending.context)
        return write(hash_now=True)

    def _write_version(
        self,
        name: str,
        parsed: refs.Ref,
        source: str,
        actor: str,
        *,
        description: str,
        signature: Mapping[str, Any] | None,
        owner: str | None,
        risk_tier: str | None,
        tags: Mapping[str, Any] | None,
        hash_now: bool,
    ) -> VersionRecord:
        """Register in one transaction; the bytes check inside it only looks at what this
        process already hashed unless ``hash_now`` (see ``integrity.NotHashedYet``)."""
        with self.store.db.write() as connection:
            artifact, run_id = _model_source(connection, parsed, source)
            artifact_id, digest = artifact.id, artifact.digest
            integrity.require_verified_bytes(
                self.store, artifact, f"cannot register {name}", hash_now=hash_now
            )
            order = event_order(connection)
            model_id, number = _next_version(
                connection, name, actor, owner=owner, risk_tier=risk_tier, tags=tags
            )
            row = {
                "id": ids.new_id(),
                "model_id": model_id,
                "version": number,
                "artifact_id": artifact_id,
                "digest": digest,
                "run_id": run_id,
                "signature": _json(
                    signature
                    if signature is not None
                    else _infer_signature(connection, run_id, artifact)
                ),
                "metrics": _json(_metrics_snapshot(connection, run_id)),
                "description": description,
                "created_ms": order[1],
                "created_by": actor,
            }
            _INSERT_VERSION.execute(connection, row)
            audit.stage(connection, schema.model_versions, row)
            context = _MODEL_CONTEXT.first(connection, {"model_name": name})
            context_id = context[0] if context else ensure_context(connection, "model", name, actor)
            add_edge(
                connection, artifact_id, "artifact", context_id, "context", records.ASSOCIATED_WITH
            )
            append_event(
                connection,
                model_id,
                name,
                number,
                REGISTERED,
                actor,
                comment=description,
                order=order,
            )
            audit.append(connection, actor, "model.register", f"{name}/{number}", row)
            return _version_record({**row, "name": name})

    def versions(self, name: str) -> list[VersionRecord]:
        """Every version of ``name``, newest first."""
        with self.store.db.read() as connection:
            return model_versions(connection, get_model_row(connection, name=name))

    def resolve(self, ref: str) -> VersionRecord:
        """The version ``churn/3`` or ``churn@production`` names (kept to one indexed query)."""
        parsed = parse_model_ref(ref)
        if isinstance(parsed, refs.ModelVersionRef):
            params: dict[str, Any] = {"name": parsed.name, "version": parsed.version}
            row = self._reader.first(_RESOLVE_VERSION_SQL, params)
        else:
            row = self._reader.first(
                _RESOLVE_ALIAS_SQL, {"name": parsed.name, "alias": parsed.alias}
            )
        if row is None:
            with self.store.db.read() as connection:
                return resolve_version(connection, parsed)
        return _version_record(row)


# --- events ---------------------------------------------------------------------------------


def append_event(
    connection: Connection,
    model_id: str,
    name: str,
    version: int | None,
    kind: str,
    actor: str,
    *,
    alias: str | None = None,
    from_version: int | None = None,
    comment: str = "",
    evidence: Mapping[str, Any] | None = None,
    order: tuple[int, int] | None = None,
) -> RegistryEvent:
    """Append one registry event and its audit entry inside the caller's transaction; it
    sorts after every event before it, whatever the writer's clock says (see the module).
    ``order`` is ``event_order``'s answer when the caller already asked in this transaction."""
    seq, time_ms = order or event_order(connection)
    row = {
        "id": ids.new_id(),
        "model_id": model_id,
        "version": version,
        "kind": kind,
        "alias": alias,
        "from_version": from_version,
        "actor": actor,
        "time_ms": time_ms,
        "comment": comment,
        "evidence": _json(evidence or {}),
        "seq": seq,
    }
    _INSERT_EVENT.execute(connection, row)
    audit.stage(connection, schema.registry_events, row)
    if kind != REGISTERED:
        target = f"{name}@{alias}" if alias else f"{name}/{version}"
        audit.append(connection, actor, f"model.{kind}", target, row)
    return _event_record(row, name)


def event_order(connection: Connection) -> tuple[int, int]:
    """(seq, time in ms) for the next registry event, read inside the writer's transaction:
    the next number after the newest event's, and the store's clock, never before that event.
    Nothing here waits: a clock behind the store's newest event is simply clamped."""
    newest = _NEWEST_EVENT.first(connection, {})
    seq, newest_ms = newest if newest is not None else (0, 0)
    return seq + 1, max(store_clock_ms(connection), newest_ms)


def store_clock_ms(connection: Connection) -> int:
    """The store's one clock: the database's on PostgreSQL (shared by every client and server
    replica), the writing process's on SQLite (the server's, when one fronts the store)."""
    if connection.dialect.name == "postgresql":
        return int(connection.exec_driver_sql(_DATABASE_CLOCK_MS).scalar_one())
    return now_ms()


def read_events(
    connection: Connection,
    model: ModelRecord,
    *,
    version: int | None = None,
    alias: str | None = None,
    kinds: Iterable[str] | None = None,
    newest_first: bool = True,
) -> list[RegistryEvent]:
    table = schema.registry_events
    query = select(table).where(table.c.model_id == model.id)
    if version is not None:
        query = query.where(table.c.version == version)
    if alias is not None:
        query = query.where(table.c.alias == alias)
    if kinds is not None:
        query = query.where(table.c.kind.in_(list(kinds)))
    query = query.order_by(table.c.seq.desc() if newest_first else table.c.seq)
    return [_event_record(row._mapping, model.name) for row in connection.execute(query)]


def _event_record(row: FieldLookup, name: str) -> RegistryEvent:
    return from_fields(RegistryEvent, row, model=name)


def alias_target(connection: Connection, model_id: str, alias: str) -> int | None:
    """The version an alias points at now: the newest alias event decides."""
    event = latest_alias_event(connection, model_id, alias)
    return None if event is None else event.version


def latest_alias_event(connection: Connection, model_id: str, alias: str) -> Any:
    events = schema.registry_events
    return connection.execute(
        select(events.c.id, events.c.version)
        .where(events.c.model_id == model_id, events.c.alias == alias)
        .order_by(events.c.seq.desc())
        .limit(1)
    ).first()


def current_aliases(connection: Connection, model_id: str) -> dict[str, int]:
    """Every alias of the model and the version it points at now."""
    events = schema.registry_events
    rows = connection.execute(
        select(events.c.alias, events.c.version)
        .where(events.c.model_id == model_id, events.c.kind.in_(ALIAS_KINDS))
        .order_by(events.c.seq)
    )
    return {row.alias: row.version for row in rows}


# --- models and versions: shared helpers ----------------------------------------------------


def parse_model_ref(ref: str) -> refs.ModelVersionRef | refs.ModelAliasRef:
    parsed = refs.parse(ref)
    if not isinstance(parsed, refs.ModelVersionRef | refs.ModelAliasRef):
        raise InvalidInputError(
            f"{ref!r} is not a model ref; use <name>/<version> (churn/3) or <name>@<alias> "
            "(churn@production)."
        )
    return parsed


def _model_row(connection: Connection, name: str) -> Any:
    return connection.execute(select(schema.models).where(schema.models.c.name == name)).first()


def _insert_model(
    connection: Connection,
    name: str,
    actor: str,
    *,
    owner: str | None,
    description: str,
    risk_tier: str | None,
    tags: Mapping[str, Any] | None,
    last_version: int,
) -> str:
    refuse_look_alike(connection, name)
    model_id = ids.new_id()
    row = {
        "id": model_id,
        "name": name,
        "name_key": refs.name_key(name),
        "owner": owner or actor,
        "description": description,
        "risk_tier": risk_tier,
        "tags": json.dumps({str(k): str(v) for k, v in (tags or {}).items()}, sort_keys=True),
        "last_version": last_version,
        "created_ms": now_ms(),
        "created_by": actor,
    }
    connection.execute(schema.models.insert().values(**row))
    audit.stage(connection, schema.models, row)
    audit.append(connection, actor, "model.create", f"model:{name}", row)
    return model_id


def refuse_look_alike(connection: Connection, name: str) -> None:
    """A new model whose name matches an existing one but for case or Unicode form is refused:
    approving or promoting the wrong one of two look-alikes is too easy."""
    existing = connection.execute(
        select(schema.models.c.name).where(schema.models.c.name_key == refs.name_key(name))
    ).scalar()
    if existing is not None and existing != name:
        raise NameConflictError(
            f"model {name!r} looks like the existing model {existing!r} (names are compared "
            f"ignoring case); use {existing!r}, or choose a name that differs in more than case."
        )


def look_alikes(connection: Connection) -> list[tuple[str, str, list[str]]]:
    """Models and contexts from before one-name-one-model that share a name but for case:
    (what, the name that holds the key, its look-alikes). They keep working under their exact
    names and are never merged; this is how they are reported (``clew db upgrade``)."""
    models, contexts = schema.models, schema.contexts
    rows = [
        ("model", name, key)
        for name, key in connection.execute(select(models.c.name, models.c.name_key))
    ] + list(connection.execute(select(contexts.c.type, contexts.c.name, contexts.c.name_key)))
    holders = {(what, key): name for what, name, key in rows if key is not None}
    groups: dict[tuple[str, str], list[str]] = {}
    for what, name, key in rows:
        if key is None:
            holder = holders.get((what, refs.name_key(name)), name)
            groups.setdefault((what, holder), []).append(name)
    return [(what, holder, sorted(names)) for (what, holder), names in sorted(groups.items())]


def _next_version(
    connection: Connection,
    name: str,
    actor: str,
    *,
    owner: str | None,
    risk_tier: str | None,
    tags: Mapping[str, Any] | None,
) -> tuple[str, int]:
    """Allocate the next version number atomically; create the model as version 1's home."""
    row = _NEXT_VERSION.first(connection, {"model_name": name})
    if row is None:
        model_id = _insert_model(
            connection,
            name,
            actor,
            owner=owner,
            description="",
            risk_tier=risk_tier,
            tags=tags,
            last_version=1,
        )
        return model_id, 1
    model_id, number, *stored = row
    _check_model_attributes(name, stored, owner=owner, risk_tier=risk_tier, tags=tags)
    return model_id, number


def _check_model_attributes(
    name: str,
    stored_values: list[Any],
    *,
    owner: str | None,
    risk_tier: str | None,
    tags: Mapping[str, Any] | None,
) -> None:
    """Registering with model attributes that contradict the stored ones is a mistake.

    ``stored_values`` are the model's owner, risk tier and tags (JSON), in that order.
    """
    wanted = {"owner": owner, "risk_tier": risk_tier}
    if tags is not None:
        wanted["tags"] = json.dumps({str(k): str(v) for k, v in tags.items()}, sort_keys=True)
    stored_by_key = dict(zip(("owner", "risk_tier", "tags"), stored_values, strict=True))
    for key, value in wanted.items():
        stored = stored_by_key[key]
        if value is not None and value != stored:
            raise ConflictError(
                f"model {name!r} already has {key} {stored!r}, not {value!r}; omit {key} when "
                "registering further versions."
            )


def _model_source(
    connection: Connection, parsed: refs.Ref, source: str
) -> tuple[ArtifactRecord, str | None]:
    """(the model artifact, the run that produced it) for a registration source."""
    if isinstance(parsed, refs.RunRef):
        artifact = get_artifact_row(connection, _run_model(connection, parsed.run_id))
        return artifact, parsed.run_id
    if not isinstance(parsed, refs.ArtifactRef):
        raise InvalidInputError(
            f"{source!r} cannot be registered; pass the model artifact from run.log_model(...), "
            "an artifact ref or the run that logged the model."
        )
    artifact_id = parsed.artifact_id or resolve_artifact(connection, parsed).id
    row = _ARTIFACT_AND_PRODUCER.first(connection, {"artifact_id": artifact_id})
    if row is None:
        raise NotFoundError(f"artifact {artifact_id} does not exist.")
    *columns, run_id = row
    artifact = from_fields(ArtifactRecord, dict(zip(_ARTIFACT_COLUMNS, columns, strict=True)))
    if artifact.type != "model":
        raise InvalidInputError(
            f"artifact {refs.format_ref(parsed)} is a {artifact.type}, not a model; register "
            "the output of run.log_model(...)."
        )
    return artifact, run_id


def _run_model(connection: Connection, run_id: str) -> str:
    rows = _RUN_MODELS.all(connection, {"run_id": run_id})
    if not rows:
        if connection.execute(select(schema.runs.c.id).where(schema.runs.c.id == run_id)).first():
            raise InvalidInputError(
                f"run {run_id} logged no model; call run.log_model(model, name=...) first."
            )
        raise NotFoundError(f"run {run_id} does not exist.")
    if len(rows) > 1:
        names = ", ".join(sorted(name for _, name in rows))
        raise InvalidInputError(
            f"run {run_id} logged {len(rows)} models ({names}); pass the one to register."
        )
    return str(rows[0][0])


def _infer_signature(
    connection: Connection, run_id: str | None, artifact: ArtifactRecord
) -> dict[str, Any]:
    """Inputs from what the fitted model saw, typed and completed by the training data.

    The model's flavor records the fitted feature names (or only their count, for a model
    fitted on arrays): those are the inputs, in the model's order, typed from the training
    dataset's schema, else by the flavor's own types (from the fitted model or an input
    example). Only a model that recorded neither falls back to the dataset's columns.
    The dataset whose name mentions "train" (else the widest) is used; the column named by the
    run's ``target``/``label`` param is the output (else the flavor's outputs); pandas index
    columns are never features.
    """
    flavor = artifact.properties.get("flavor")
    seen = flavor if isinstance(flavor, dict) else {}
    dataset, columns = _training_columns(connection, run_id)
    target = _target_column(connection, run_id, columns) if run_id else None
    names, count = seen.get("feature_names"), seen.get("n_features")
    typed = seen.get("signature")
    typed = typed if isinstance(typed, dict) else {}
    types = [column.get("type") for column in typed.get("inputs") or []]
    if isinstance(names, list):
        inputs = [
            {"name": name, "type": columns.get(name) or _nth(types, i)}
            for i, name in enumerate(names)
        ]
    elif isinstance(count, int):
        inputs = [{"name": None, "type": _nth(types, i)} for i in range(count)]
    elif columns:
        inputs = [{"name": k, "type": v} for k, v in columns.items() if k != target]
    else:
        return {}
    signature: dict[str, Any] = {
        "inputs": inputs,
        "outputs": (
            [{"name": target, "type": columns[target]}] if target else typed.get("outputs") or []
        ),
    }
    if dataset:
        signature["inferred_from"] = dataset
    return signature


def _nth(types: list[Any], index: int) -> Any:
    """The flavor's type of input ``index`` (from the fitted model or an example), if known."""
    return types[index] if index < len(types) else None


def _training_columns(
    connection: Connection, run_id: str | None
) -> tuple[str | None, dict[str, str]]:
    """The training dataset's ref and its columns (pandas index columns left out)."""
    candidates = []
    for type_, name, digest, properties in _TRAINING_DATA.all(connection, {"run_id": run_id}):
        schema_ = json.loads(properties or "{}").get("schema")
        if isinstance(schema_, dict) and schema_:
            columns = {k: v for k, v in schema_.items() if not _PANDAS_INDEX.fullmatch(k)}
            candidates.append(
                (("train" in name.lower(), len(columns)), f"{type_}:{name}@{digest}", columns)
            )
    if not candidates:
        return None, {}
    _, dataset, columns = max(candidates, key=lambda candidate: candidate[0])
    return dataset, columns


def _target_column(connection: Connection, run_id: str, columns: Mapping[str, str]) -> str | None:
    found: dict[str, str] = dict(_TARGET_PARAMS.all(connection, {"run_id": run_id}))
    for key in TARGET_PARAMS:
        if found.get(key) in columns:
            return found[key]
    return None


def _metrics_snapshot(connection: Connection, run_id: str | None) -> dict[str, float | None]:
    if run_id is None:
        return {}
    return dict(_RUN_METRICS.all(connection, {"run_id": run_id}))


def all_models(connection: Connection) -> list[ModelRecord]:
    rows = connection.execute(select(schema.models).order_by(schema.models.c.name))
    return [_model_record(row) for row in rows]


def model_versions(connection: Connection, model: ModelRecord) -> list[VersionRecord]:
    """Every version of ``model``, newest first."""
    rows = connection.execute(
        _version_query()
        .where(schema.model_versions.c.model_id == model.id)
        .order_by(schema.model_versions.c.version.desc())
    )
    return [_version_record(row._mapping) for row in rows]


def get_model_row(
    connection: Connection, *, name: str | None = None, model_id: str | None = None
) -> ModelRecord:
    """The registered model named ``name`` (or with id ``model_id``); raises ``NotFoundError``
    when there is none (``clew.load_model`` is the one that deserialises a model)."""
    table = schema.models
    condition = table.c.name == name if name is not None else table.c.id == model_id
    row = connection.execute(select(table).where(condition)).first()
    if row is None:
        raise NotFoundError(
            f"model {name or model_id!r} is not registered; list models with `clew models list`."
        )
    return _model_record(row)


def _model_record(row: Any) -> ModelRecord:
    return from_fields(ModelRecord, row._mapping)


def _version_query() -> Any:
    versions, models = schema.model_versions, schema.models
    return select(versions, models.c.name).join(models, models.c.id == versions.c.model_id)


def _version_record(row: FieldLookup) -> VersionRecord:
    return from_fields(VersionRecord, row)


# One encoder for every version and event row (``json.dumps`` with options builds one per call).
_ENCODER = json.JSONEncoder(sort_keys=True, default=str)


def _json(value: Mapping[str, Any]) -> str:
    return _ENCODER.encode(dict(value))


def get_version_row(connection: Connection, name: str, version: int) -> VersionRecord:
    row = connection.execute(
        _version_query().where(
            schema.models.c.name == name, schema.model_versions.c.version == version
        )
    ).first()
    if row is None:
        get_model_row(connection, name=name)
        raise NotFoundError(
            f"model {name!r} has no version {version}; list them with `clew versions {name}`."
        )
    return _version_record(row._mapping)


def resolve_version(
    connection: Connection, ref: refs.ModelVersionRef | refs.ModelAliasRef
) -> VersionRecord:
    if isinstance(ref, refs.ModelVersionRef):
        return get_version_row(connection, ref.name, ref.version)
    model = get_model_row(connection, name=ref.name)
    version = alias_target(connection, model.id, ref.alias)
    if version is None:
        raise NotFoundError(
            f"alias {ref.alias!r} of model {ref.name!r} points at no version; promote one with "
            f"`clew promote {ref.name}/<version> {ref.alias}`."
        )
    return get_version_row(connection, ref.name, version)


class _FastReader:
    """The registry's hottest reads, each one statement on the driver's cursor.

    Opening a SQLAlchemy transaction and running a statement through it costs more than the
    lookup itself. On SQLite a bare pooled DBAPI connection runs in autocommit; on
    PostgreSQL ``read_statement`` does (no BEGIN or ROLLBACK round trips). Either way each
    statement still sees every committed write, as one snapshot.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def first(self, statement: DriverStatement, params: Mapping[str, Any]) -> FieldLookup | None:
        if self.store.db.dialect != "sqlite":
            with self.store.db.read_statement() as connection:
                return statement.first_mapping(connection, params)
        raw = self.store.db.engine.raw_connection()
        try:
            cursor = raw.cursor()
            row = cursor.execute(statement.sql("sqlite"), params).fetchone()
            if row is None:
                return None
            return dict(zip([column[0] for column in cursor.description], row, strict=True))
        finally:
            raw.close()
