"""Plain records returned by the services (and, later, sent over HTTP)."""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Protocol, TypeVar

RUNNING, FINISHED, FAILED, KILLED = "RUNNING", "FINISHED", "FAILED", "KILLED"
RUN_STATUSES = (RUNNING, FINISHED, FAILED, KILLED)

# Lineage associations (SageMaker's names).
CONTRIBUTED_TO = "ContributedTo"
PRODUCED = "Produced"
DERIVED_FROM = "DerivedFrom"
ASSOCIATED_WITH = "AssociatedWith"
ASSOCIATIONS = (CONTRIBUTED_TO, PRODUCED, DERIVED_FROM, ASSOCIATED_WITH)


R = TypeVar("R")

# Fields a database stores as JSON text and the wire carries as JSON objects.
_JSON_FIELDS = frozenset({"properties", "tags", "signature", "metrics", "evidence"})


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(item.name for item in fields(cls))


class FieldLookup(Protocol):
    """What ``from_fields`` reads a record from: a value per field name (a dict, a parsed JSON
    object, or a database row's mapping, whose keys may also be columns)."""

    def __getitem__(self, name: str, /) -> Any: ...


def from_fields(cls: type[R], data: FieldLookup, **given: Any) -> R:
    """The record ``cls`` from a mapping holding its field names (``given`` adds or overrides
    some): a database row (JSON columns as text) or the record's form on the wire (JSON columns
    as objects). One constructor for the services and the HTTP client, so a record read
    remotely equals the one stored."""
    values = {}
    # A class is hashable, but mypy judges type[R] by R's unbound __hash__: widen it first.
    record_type: type = cls
    for name in _field_names(record_type):
        value = given[name] if name in given else data[name]
        if name in _JSON_FIELDS and (value is None or isinstance(value, str)):
            value = json.loads(value or "{}")
        values[name] = value
    return cls(**values)


def ms_to_datetime(value: int | None) -> dt.datetime | None:
    if value is None:
        return None
    return dt.datetime.fromtimestamp(value / 1000, tz=dt.UTC)


def ms_to_iso(value: int | None) -> str | None:
    moment = ms_to_datetime(value)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z") if moment else None


@dataclass(frozen=True)
class MetricPoint:
    key: str
    value: float
    step: int
    timestamp_ms: int


@dataclass
class RunRecord:
    id: str
    experiment: str
    name: str
    kind: str
    status: str
    user: str
    start_ms: int
    end_ms: int | None
    parent_id: str | None
    command: str | None
    seed: int | None
    code_artifact_id: str | None
    environment_artifact_id: str | None
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)

    def listed_fields(self, time: Callable[[int | None], Any]) -> dict[str, Any]:
        """The run's own fields as run listings show them (``search_runs``' DataFrame, ``clew
        runs list``), its start and end passed through ``time``: one list of columns for both."""
        return {
            "run_id": self.id,
            "experiment": self.experiment,
            "name": self.name,
            "kind": self.kind,
            "status": self.status,
            "user": self.user,
            "start_time": time(self.start_ms),
            "end_time": time(self.end_ms),
            "parent_id": self.parent_id,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "experiment": self.experiment,
            "name": self.name,
            "kind": self.kind,
            "status": self.status,
            "user": self.user,
            "start_time": ms_to_iso(self.start_ms),
            "end_time": ms_to_iso(self.end_ms),
            "parent_id": self.parent_id,
            "command": self.command,
            "seed": self.seed,
            "code_artifact_id": self.code_artifact_id,
            "environment_artifact_id": self.environment_artifact_id,
            "params": self.params,
            "metrics": self.metrics,
            "tags": self.tags,
            "properties": self.properties,
        }


@dataclass
class ArtifactRecord:
    id: str
    type: str
    name: str
    digest: str
    size: int | None
    uri: str | None
    properties: dict[str, Any]
    created_ms: int
    created_by: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "name": self.name,
            "digest": self.digest,
            "size": self.size,
            "uri": self.uri,
            "properties": self.properties,
            "created_at": ms_to_iso(self.created_ms),
            "created_by": self.created_by,
        }


@dataclass
class ModelRecord:
    id: str
    name: str
    owner: str
    description: str
    risk_tier: str | None
    tags: dict[str, str]
    last_version: int
    created_ms: int
    created_by: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "owner": self.owner,
            "description": self.description,
            "risk_tier": self.risk_tier,
            "tags": self.tags,
            "last_version": self.last_version,
            "created_at": ms_to_iso(self.created_ms),
            "created_by": self.created_by,
        }


@dataclass
class VersionRecord:
    id: str
    model_id: str
    name: str
    version: int
    artifact_id: str
    digest: str
    run_id: str | None
    signature: dict[str, Any]
    metrics: dict[str, Any]
    description: str
    created_ms: int
    created_by: str

    @property
    def ref(self) -> str:
        return f"{self.name}/{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "ref": self.ref,
            "artifact_id": self.artifact_id,
            "digest": self.digest,
            "run_id": self.run_id,
            "signature": self.signature,
            "metrics": self.metrics,
            "description": self.description,
            "created_at": ms_to_iso(self.created_ms),
            "created_by": self.created_by,
        }


@dataclass
class RegistryEvent:
    id: str
    model: str
    version: int | None
    kind: str
    alias: str | None
    from_version: int | None
    actor: str
    time_ms: int
    comment: str
    evidence: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "version": self.version,
            "kind": self.kind,
            "alias": self.alias,
            "from_version": self.from_version,
            "actor": self.actor,
            "time": ms_to_iso(self.time_ms),
            "comment": self.comment,
            "evidence": self.evidence,
        }


@dataclass(frozen=True)
class RunPage:
    """One page of a run search; ``next_page_token`` is None on the last page."""

    runs: list[RunRecord]
    next_page_token: str | None
