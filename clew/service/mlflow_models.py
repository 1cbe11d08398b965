"""MLflow's model registry brought into clew's: registered models, versions, aliases, stages
and MLflow 3 logged models, under clew's rules rather than around them.

* **Original times are evidence, not order.** Each imported fact keeps MLflow's time and user
  (``mlflow.created_at``, ``mlflow.user_id``) as properties; clew's own event time and sequence
  are the import's. clew's registry order comes from the store, and a backdated event would
  let an import rewrite history.
* **Registered, never approved.** MLflow has no approvals: a version is registered by the
  importing user, with MLflow's creator kept as a property.
* **Aliases and stages under the policy.** Every MLflow alias and stage is recorded on its
  version; a clew alias is set only where the policy lets the importer set it without an
  approval, and each one it cannot set is one sentence saying what to do. Stages ``Staging``
  and ``Production`` are the aliases ``staging`` and ``production``; ``Archived`` is a property.
* **Idempotent.** An imported version carries an ``imported`` registry event naming its MLflow
  model and version; the next import finds it and adds nothing. The SDK skips a version whose
  bytes MLflow cannot deliver, so nothing is registered without its bytes (which the registry
  checks against their digest as it registers them).

The import runs a version at a time through the registry and promotion services. A version's
registration and its ``imported`` event commit in one write transaction that first looks for
the event again, so two imports running at once register each version once (the second waits
for the store's write lock, then finds the first's event). A version an import before that
change registered without its event is adopted. An alias a concurrent import has just set to
the same version is left alone without a sentence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from clew.domain import records, refs
from clew.domain.imports import MlflowImportResult
from clew.domain.openlineage import safe_name, ulid_from_int
from clew.domain.records import RegistryEvent
from clew.errors import ClewError, ConflictError, InvalidInputError, NotFoundError, PolicyError
from clew.service import audit, integrity, registry, uploads
from clew.service.artifacts import check_artifact, record_artifact, record_blob
from clew.service.graph import add_edge
from clew.service.promotion import PromotionService
from clew.service.registry import RegistryService
from clew.store import schema
from clew.store.location import Store

KEY = "mlflow"
IMPORTED = "imported"
"""The registry event kind that records an imported version's MLflow facts."""
STAGE_ALIASES = {"Staging": "staging", "Production": "production"}
STAGES = ("None", "Staging", "Production", "Archived")
MAX_VERSIONS = 1_000
MAX_LOGGED_MODELS = 1_000
BLOB_KINDS = ("file", "manifest")


@dataclass(frozen=True)
class ModelBytes:
    """A model directory already in clew's blob store (``client.inputs.prepare``'s answer)."""

    name: str
    digest: str
    size: int | None
    blobs: dict[str, tuple[int, str]]
    properties: dict[str, Any]


@dataclass(frozen=True)
class LoggedModel:
    model_id: str
    name: str
    run_id: str | None
    facts: dict[str, Any]
    bytes: ModelBytes


@dataclass(frozen=True)
class Version:
    version: int
    run_id: str | None
    description: str
    stage: str
    facts: dict[str, Any]
    bytes: ModelBytes


@dataclass(frozen=True)
class Model:
    mlflow_name: str
    name: str
    description: str
    tags: dict[str, str]
    aliases: dict[str, int]
    versions: list[Version]


class MlflowModels:
    """The registry half of ``MlflowImportService`` (see the module)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.registry = RegistryService(store)
        self.promotion = PromotionService(store)

    def import_page(
        self, page: Mapping[str, Any], actor: str, set_aliases: bool
    ) -> MlflowImportResult:
        logged, models = parse_page(page)
        result = MlflowImportResult()
        for item in logged:
            self._model_artifact(item.bytes, item.run_id, item.facts, actor)
            result.logged_models += 1
        for model in models:
            self._model(model, actor, set_aliases, result)
        return result

    def _model(
        self, model: Model, actor: str, set_aliases: bool, result: MlflowImportResult
    ) -> None:
        if model.name != model.mlflow_name:
            result.notes.append(f"MLflow model {model.mlflow_name!r} is clew model {model.name}.")
        numbers = self._imported(model.name)
        for version in model.versions:
            mlflow_ref = f"{model.mlflow_name}/{version.version}"
            if version.version in numbers:
                result.versions_already += 1
            else:
                numbers[version.version], new = self._version(model, version, actor, result)
                result.versions_imported += new
                result.versions_already += not new
            result.versions[mlflow_ref] = f"{model.name}/{numbers[version.version]}"
        for alias, target in sorted(_alias_targets(model).items()):
            number = numbers.get(target)
            if number is None:
                result.notes.append(
                    f"alias {alias} of {model.mlflow_name} → version {target} not set: that "
                    "version was not imported (see skipped)."
                )
                continue
            outcome = self._alias(model, alias, target, number, actor, set_aliases)
            if outcome is not None:
                done, said = outcome
                (result.aliases if done else result.notes).append(said)

    def _imported(self, name: str) -> dict[int, int]:
        """MLflow version -> clew version of what earlier imports brought of ``name``."""
        with self.store.db.read() as connection:
            model = _find_model(connection, name)
            if model is None:
                return {}
            events = registry.read_events(connection, model, kinds=[IMPORTED])
        return {int(e.evidence[KEY]["version"]): int(e.version or 0) for e in events}

    def _version(
        self, model: Model, version: Version, actor: str, result: MlflowImportResult
    ) -> tuple[int, bool]:
        """(clew version, registered now?) of one MLflow version: registered (or the
        registration an interrupted import made adopted) with its MLflow facts as an
        ``imported`` event, unless a concurrent import recorded it first.

        The look, the registration and the event commit in one write transaction, which holds
        the store's write lock (SQLite ``BEGIN IMMEDIATE``, PostgreSQL's advisory lock) from
        its first statement: a second import waits, then finds the event. The model's bytes
        are hashed before, so the lock is not held while they are read.
        """
        facts = {**version.facts, "name": model.mlflow_name, "version": version.version}
        artifact = self._model_artifact(version.bytes, version.run_id, facts, actor)
        integrity.require_verified_bytes(self.store, artifact, f"cannot register {model.name}")
        with self.store.db.single_transaction() as connection:
            found = self._imported(model.name).get(version.version)
            if found is not None:
                return found, False
            number = self._registered(model, version, artifact.id, actor)
            row = registry.get_model_row(connection, name=model.name)
            registry.append_event(
                connection,
                row.id,
                model.name,
                number,
                IMPORTED,
                actor,
                comment=_said(model.mlflow_name, version.version, facts),
                evidence={KEY: facts},
            )
        if version.run_id is not None and facts.get("clew_run") is None:
            result.notes.append(
                f"MLflow version {model.mlflow_name}/{version.version} was made by run "
                f"{version.run_id}, which is not in clew (deleted or skipped in MLflow), so "
                f"{model.name}/{number} has no run."
            )
        return number, True

    def _registered(self, model: Model, version: Version, artifact_id: str, actor: str) -> int:
        """The clew version of ``artifact_id``: adopted, or registered now (the model created
        on first use)."""
        number = self._adoptable(model.name, artifact_id)
        if number is not None:
            return number
        if not self._exists(model.name):
            self.registry.create_model(
                model.name, actor, description=model.description, tags=model.tags
            )
        return self.registry.register(
            model.name, f"artifact:{artifact_id}", actor, description=version.description
        ).version

    def _exists(self, name: str) -> bool:
        with self.store.db.read() as connection:
            return _find_model(connection, name) is not None

    def _adoptable(self, name: str, artifact_id: str) -> int | None:
        """A version of ``name`` registered from this import's artifact that no ``imported``
        event describes: an import interrupted between registering and recording it."""
        with self.store.db.read() as connection:
            model = _find_model(connection, name)
            if model is None:
                return None
            described = {
                e.version for e in registry.read_events(connection, model, kinds=[IMPORTED])
            }
            for version in registry.model_versions(connection, model):
                if version.artifact_id == artifact_id and version.version not in described:
                    return version.version
        return None

    def _model_artifact(
        self, bytes_: ModelBytes, mlflow_run: str | None, facts: dict[str, Any], actor: str
    ) -> records.ArtifactRecord:
        """The model artifact (get-or-create) and the edge from the imported run that made it;
        ``facts`` gains ``clew_run``, the run's clew id when that run is in clew."""
        uploads.check_logged_manifests(self.store.blobs, bytes_.digest, bytes_.blobs)
        with self.store.db.write() as connection:
            for digest, (size, kind) in bytes_.blobs.items():
                record_blob(connection, self.store.blobs, digest, size, kind)
            run_id = ulid_from_int(int(mlflow_run, 16)) if mlflow_run else None
            if run_id is not None and not _run_exists(connection, run_id):
                run_id = None
            facts["clew_run"] = run_id
            artifact, _ = record_artifact(
                connection,
                type_="model",
                name=bytes_.name,
                digest=bytes_.digest,
                actor=actor,
                size=bytes_.size,
                properties={**bytes_.properties, KEY: _artifact_facts(facts)},
            )
            if run_id is not None:
                add_edge(connection, run_id, "run", artifact.id, "artifact", records.PRODUCED)
            audit.append_staged(
                connection, actor, "mlflow.import", f"artifact:{artifact.id}", {"run": run_id}
            )
            return artifact

    def _alias(
        self, model: Model, alias: str, target: int, number: int, actor: str, set_aliases: bool
    ) -> tuple[bool, str] | None:
        """Set ``alias`` as MLflow has it, if no earlier import did and the policy lets the
        importer: (set?, the sentence saying so), or None when there is nothing to do."""
        ref = f"{model.name}/{number}"
        comment = f"imported from MLflow: {model.mlflow_name}@{alias} → version {target}"
        history = self.promotion.alias_history(model.name, alias)
        if any(event.comment == comment for event in history):
            return None
        current = _current(history)
        if current == number:
            return None
        if current is not None:
            return False, (
                f"alias {alias} of {model.name} → version {number} not set: clew's "
                f"{model.name}@{alias} already points at {model.name}/{current} and an import "
                f"does not move it; to follow MLflow, run `clew promote {ref} {alias}`."
            )
        if not set_aliases:
            return False, (
                f"alias {alias} of {model.name} → version {number} not set: setting an alias "
                f"needs the approver role on {model.name}; an approver can run "
                f"`clew promote {ref} {alias}`."
            )
        try:
            self.promotion.promote(ref, alias, actor, comment, new_alias=True)
        except (PolicyError, ConflictError) as refused:
            if _current(self.promotion.alias_history(model.name, alias)) == number:
                return None  # a concurrent import set it between our look and the promotion
            reason = str(refused).rstrip(".")
            return False, (
                f"alias {alias} of {model.name} → version {number} not set: {reason}; approve "
                f"{ref} then promote it (`clew promote {ref} {alias}`)."
            )
        return True, f"{model.name}@{alias} → {ref}"


def clew_model_name(mlflow_name: str) -> str:
    """The clew model an MLflow registered model becomes: its name in the characters a ref
    allows (MLflow allows spaces and more)."""
    return safe_name(mlflow_name, "mlflow-model")


def _current(history: Sequence[RegistryEvent]) -> int | None:
    """The version an alias points at now, from its history (newest first)."""
    return history[0].version if history else None


def _alias_targets(model: Model) -> dict[str, int]:
    """alias -> MLflow version: MLflow's aliases, then its stages (the newest version in a
    stage) for the aliases MLflow does not set itself."""
    targets = dict(model.aliases)
    for version in sorted(model.versions, key=lambda v: v.version):
        alias = STAGE_ALIASES.get(version.stage)
        if alias is not None and alias not in model.aliases:
            targets[alias] = version.version
    return targets


def _said(name: str, version: int, facts: Mapping[str, Any]) -> str:
    who = facts.get("user_id") or "an unknown user"
    return f"imported from MLflow: {name} version {version}, created {facts['created_at']} by {who}"


def _artifact_facts(facts: Mapping[str, Any]) -> dict[str, Any]:
    keep = ("name", "version", "model_id", "run_id", "source", "created_at", "user_id")
    return {key: facts[key] for key in keep if facts.get(key) is not None}


def _find_model(connection: Connection, name: str) -> records.ModelRecord | None:
    try:
        return registry.get_model_row(connection, name=name)
    except NotFoundError:
        return None


def _run_exists(connection: Connection, run_id: str) -> bool:
    found = connection.execute(select(schema.runs.c.id).where(schema.runs.c.id == run_id))
    return found.first() is not None


# --- the page, checked whole before anything is written -------------------------------------


def parse_page(page: Mapping[str, Any]) -> tuple[list[LoggedModel], list[Model]]:
    """A page's logged models and registered models; the first bad value is one sentence."""
    if not isinstance(page, Mapping):
        raise InvalidInputError("an MLflow registry page must be a JSON object.")
    logged = _list(page, "logged_models", MAX_LOGGED_MODELS)
    models = _list(page, "models", MAX_VERSIONS)
    parsed = [_model(index, raw) for index, raw in enumerate(models)]
    if sum(len(model.versions) for model in parsed) > MAX_VERSIONS:
        raise InvalidInputError(
            f"an MLflow registry page holds at most {MAX_VERSIONS} versions; send fewer."
        )
    return [_logged(index, raw) for index, raw in enumerate(logged)], parsed


def _list(page: Mapping[str, Any], key: str, limit: int) -> list[Any]:
    found = page.get(key) or []
    if not isinstance(found, list):
        raise InvalidInputError(f"{key} of an MLflow registry page must be a list.")
    if len(found) > limit:
        raise InvalidInputError(f"an MLflow registry page holds at most {limit} {key}.")
    return found


def _logged(index: int, raw: Any) -> LoggedModel:
    what = f"MLflow logged model #{index}"
    raw = _object(raw, what)
    model_id = _text(raw, "model_id", what)
    return LoggedModel(
        model_id=model_id,
        name=_text(raw, "name", what),
        run_id=_run_id(raw, what),
        facts={
            "model_id": model_id,
            "run_id": raw.get("run_id"),
            "source": str(raw.get("source") or ""),
            "created_at": records.ms_to_iso(_ms(raw.get("created_ms"), what)),
            "user_id": _optional_text(raw, "user_id", what),
            "status": str(raw.get("status") or ""),
            "tags": _strings(raw, "tags", what),
            "params": _strings(raw, "params", what),
        },
        bytes=_bytes(raw.get("artifact"), what),
    )


def _model(index: int, raw: Any) -> Model:
    what = f"MLflow model #{index}"
    raw = _object(raw, what)
    mlflow_name = _text(raw, "name", what)
    versions = raw.get("versions") or []
    if not isinstance(versions, list):
        raise InvalidInputError(f"{what}: versions must be a list.")
    aliases = raw.get("aliases") or {}
    if not isinstance(aliases, Mapping) or not all(
        type(number) is int for number in aliases.values()
    ):
        raise InvalidInputError(f"{what}: aliases must map each alias to a version number.")
    for alias in aliases:
        _alias_name(str(alias), what)
    parsed = [_version(f"{what} version #{i}", v) for i, v in enumerate(versions)]
    return Model(
        mlflow_name=mlflow_name,
        name=clew_model_name(mlflow_name),
        description=str(raw.get("description") or ""),
        tags=_strings(raw, "tags", what),
        aliases={str(alias): int(number) for alias, number in aliases.items()},
        versions=sorted(parsed, key=lambda version: version.version),
    )


def _version(what: str, raw: Any) -> Version:
    raw = _object(raw, what)
    number = raw.get("version")
    if type(number) is not int or number < 1:
        raise InvalidInputError(f"{what}: version must be a positive integer.")
    stage = str(raw.get("stage") or "None")
    if stage not in STAGES:
        raise InvalidInputError(f"{what}: stage {stage!r} is unknown; MLflow's are {STAGES}.")
    aliases = raw.get("aliases") or []
    if not isinstance(aliases, list):
        raise InvalidInputError(f"{what}: aliases must be a list.")
    facts: dict[str, Any] = {
        "run_id": raw.get("run_id"),
        "model_id": _optional_text(raw, "model_id", what),
        "source": str(raw.get("source") or ""),
        "created_at": records.ms_to_iso(_ms(raw.get("created_ms"), what)),
        "user_id": _optional_text(raw, "user_id", what),
        "status": str(raw.get("status") or ""),
        "stage": stage,
        "archived": stage == "Archived",
        "aliases": sorted(_alias_name(str(alias), what) for alias in aliases),
        "tags": _strings(raw, "tags", what),
    }
    return Version(
        version=number,
        run_id=_run_id(raw, what),
        description=str(raw.get("description") or ""),
        stage=stage,
        facts=facts,
        bytes=_bytes(raw.get("artifact"), what),
    )


def _bytes(raw: Any, what: str) -> ModelBytes:
    raw = _object(raw, f"{what}: artifact")
    digest, size = raw.get("digest"), raw.get("size")
    if not isinstance(digest, str) or not (size is None or type(size) is int):
        raise InvalidInputError(f"{what}: artifact needs a digest and a size.")
    listed = raw.get("blobs") or {}
    if not isinstance(listed, Mapping):
        raise InvalidInputError(f"{what}: artifact blobs must map digests to [size, kind].")
    blobs: dict[str, tuple[int, str]] = {}
    for blob, entry in listed.items():
        if (
            not isinstance(entry, list | tuple)
            or len(entry) != 2
            or type(entry[0]) is not int
            or entry[1] not in BLOB_KINDS
        ):
            raise InvalidInputError(f"{what}: artifact blob {blob!r} needs [size, kind].")
        blobs[str(blob)] = (entry[0], str(entry[1]))
    properties = raw.get("properties") or {}
    if not isinstance(properties, Mapping):
        raise InvalidInputError(f"{what}: artifact properties must be a JSON object.")
    name = safe_name(str(raw.get("name") or "model"), "model")
    check_artifact("model", name, digest)
    return ModelBytes(name, digest, size, blobs, {k: v for k, v in properties.items() if k != KEY})


def _object(raw: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise InvalidInputError(f"{what} must be a JSON object.")
    return raw


def _text(raw: Mapping[str, Any], key: str, what: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip() or len(value) > 500:
        raise InvalidInputError(f"{what}: {key} must be a non-empty text.")
    return value


def _optional_text(raw: Mapping[str, Any], key: str, what: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 500:
        raise InvalidInputError(f"{what}: {key} must be a text.")
    return value


def _run_id(raw: Mapping[str, Any], what: str) -> str | None:
    value = raw.get("run_id")
    if value in (None, ""):
        return None
    if not isinstance(value, str) or len(value) != 32 or not _hex(value):
        raise InvalidInputError(f"{what}: run_id {value!r} is not an MLflow run id (32 hex).")
    return value


def _hex(text: str) -> bool:
    return all(char in "0123456789abcdef" for char in text.lower())


def _ms(value: Any, what: str) -> int:
    if type(value) is not int or not 0 <= value < 2**63:
        raise InvalidInputError(f"{what}: times must be integer milliseconds since 1970.")
    return value


def _strings(raw: Mapping[str, Any], key: str, what: str) -> dict[str, str]:
    found = raw.get(key) or {}
    if not isinstance(found, Mapping):
        raise InvalidInputError(f"{what}: {key} must be a JSON object.")
    return {str(k): str(v) for k, v in found.items()}


def _alias_name(alias: str, what: str) -> str:
    try:
        return refs.validate_name(alias, "alias")
    except ClewError as error:
        raise InvalidInputError(f"{what}: {error}") from None
