"""OpenLineage run events checked and turned into plain values, before anything is written.

OpenLineage (https://openlineage.io/spec/2-0-2/OpenLineage.json) describes a job's run as a
series of events sharing one ``runId`` (START, RUNNING, COMPLETE, FAIL, ABORT, OTHER). clew
keeps one run per ``runId``: its id *is* the UUID's 128 bits written as a ULID, so a later
event finds its run by primary key and a UUIDv7 (the spec's recommendation) keeps its time
order. Datasets are described, not copied: a dataset's digest covers its namespace and name
(and its version facet, when one is sent), so every event naming it reaches the same node.
Facets are kept as they came; the ones clew knows are checked for their shape first, so a
malformed ``schema`` facet is refused rather than stored half-understood.
"""

from __future__ import annotations

import base64
import functools
import json
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from clew.domain import digests, records
from clew.errors import InvalidInputError

SPEC_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
MAX_EVENTS = 10_000
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
EVENT_TYPES = ("START", "RUNNING", "COMPLETE", "FAIL", "ABORT", "OTHER")
# What each event type makes of the run; START, RUNNING and OTHER leave a run as it was.
FINAL_STATUS = {
    "COMPLETE": records.FINISHED,
    "FAIL": records.FAILED,
    "ABORT": records.KILLED,
}


class Dataset(NamedTuple):
    """One input or output dataset of an event, with the facets it came with (a named tuple:
    a batch of 1,000 events makes some 1,500, and a frozen dataclass's ``__init__`` costs
    several times a tuple's)."""

    namespace: str
    name: str
    facets: dict[str, Any]

    # Plain properties over cached functions: ``functools.cached_property`` takes a lock per
    # read on Python 3.11, and a batch of events reads each dataset's digest several times.
    @property
    def digest(self) -> str:
        version = self.facets.get("version", {}).get("datasetVersion")
        return dataset_digest(self.namespace, self.name, version)

    @property
    def node_name(self) -> str:
        """The artifact name: the dataset's name in the characters a ref allows."""
        return _safe_dataset_name(self.name)


class RunEvent(NamedTuple):
    """One checked RunEvent (a named tuple, as ``Dataset`` is)."""

    event_type: str
    time_ms: int
    run_uuid: str
    run_id: str
    job_namespace: str
    job_name: str
    run_facets: dict[str, Any]
    job_facets: dict[str, Any]
    inputs: tuple[Dataset, ...]
    outputs: tuple[Dataset, ...]
    producer: str


@dataclass
class Received:
    """What one call made of its events: the clew run of each OpenLineage ``runId``."""

    events: int
    runs: dict[str, str] = field(default_factory=dict)
    datasets: int = 0
    edges: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "runs": self.runs,
            "datasets": self.datasets,
            "edges": self.edges,
        }


@functools.lru_cache(maxsize=65_536)
def dataset_digest(namespace: str, name: str, version: str | None) -> str:
    """A dataset's identity as a digest: its namespace, name and version (if any), so every
    event that names the same dataset reaches the same node."""
    return digests.digest_bytes(json.dumps([namespace, name, version]).encode())


def run_id_for(run_uuid: str) -> str:
    """The clew run id of an OpenLineage runId: the same 128 bits in ULID letters."""
    return ulid_from_int(uuid.UUID(run_uuid).int)


def ulid_from_int(value: int) -> str:
    """A 128-bit value as the 26 letters of a ULID (clew's id alphabet): base32 in C, its
    letters swapped for the ULID's. Twenty bytes are 32 letters, the first six of them the
    30 zero bits above the ULID's 130."""
    letters = base64.b32encode(value.to_bytes(20, "big"))[6:]
    return letters.translate(_TO_ULID).decode()


_TO_ULID = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET.encode())


@functools.lru_cache(maxsize=65_536)
def _safe_dataset_name(name: str) -> str:
    return safe_name(name, "dataset")


def safe_name(text: str, fallback: str) -> str:
    """``text`` in the characters a ref allows (others become ``-``), at most 200 of them."""
    cleaned = _UNSAFE.sub("-", text).strip("-._")[-200:].lstrip("-._")
    return cleaned or fallback


def parse_events(raw: Any) -> list[RunEvent]:
    """Every event of a body (one event, or a list of them), checked; the first bad one is
    named in one sentence and nothing is returned."""
    events = raw if isinstance(raw, list) else [raw]
    if len(events) > MAX_EVENTS:
        raise InvalidInputError(
            f"an OpenLineage batch holds at most {MAX_EVENTS:,} events; this one has "
            f"{len(events):,}, so send it in several requests."
        )
    return [parse_event(event, f"event #{index}") for index, event in enumerate(events)]


def parse_event(raw: Any, what: str = "the event") -> RunEvent:
    """One RunEvent of the spec, or one sentence saying what is wrong with it."""
    event = _object(raw, what)
    if "run" not in event:
        raise InvalidInputError(
            f"{what} has no run: clew takes OpenLineage RunEvents (with run, job and eventType); "
            "send DatasetEvents and JobEvents with a run or leave them out."
        )
    event_type = event.get("eventType", "OTHER")
    if event_type not in EVENT_TYPES:
        raise InvalidInputError(
            f"{what}: eventType {event_type!r} is unknown; use one of {', '.join(EVENT_TYPES)}."
        )
    run = event["run"]
    if not isinstance(run, dict):
        raise InvalidInputError(f"{what} run must be a JSON object.")
    run_uuid, run_id = _run_ids(run.get("runId"), what)
    job = event.get("job")
    if not isinstance(job, dict):
        raise InvalidInputError(f"{what} job must be a JSON object.")
    return RunEvent(
        event_type=event_type,
        time_ms=_time_ms(event.get("eventTime"), what),
        run_uuid=run_uuid,
        run_id=run_id,
        job_namespace=_text(job.get("namespace"), what, "job namespace"),
        job_name=_text(job.get("name"), what, "job name"),
        run_facets=_facets(run.get("facets"), what, "run"),
        job_facets=_facets(job.get("facets"), what, "job"),
        inputs=_datasets(event.get("inputs"), what, "inputs", "inputFacets"),
        outputs=_datasets(event.get("outputs"), what, "outputs", "outputFacets"),
        producer=_text(event.get("producer", ""), what, "producer", empty=True),
    )


def _run_ids(value: Any, what: str) -> tuple[str, str]:
    """The runId as a canonical UUID and as its clew run id (every event of a run sends it)."""
    found = _known_run_ids(value) if type(value) is str and len(value) == 36 else None
    if found is None:
        raise InvalidInputError(
            f"{what}: runId {value!r} is not a UUID; OpenLineage run ids are UUIDs "
            "(uuid7 recommended), the same one in every event of a run."
        )
    return found


@functools.lru_cache(maxsize=65_536)
def _known_run_ids(value: str) -> tuple[str, str] | None:
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        return None
    return str(parsed), ulid_from_int(parsed.int)


def _object(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInputError(f"{what} must be a JSON object.")
    return value


def _text(value: Any, what: str, part: str, *, empty: bool = False) -> str:
    """``value`` if it is a fit string; the message names ``what`` and ``part`` (joined only on
    error: a batch checks thousands of strings)."""
    if type(value) is not str or len(value) > 1000 or (not value and not empty):
        raise InvalidInputError(
            f"{what} {part} must be a non-empty string of at most 1000 characters."
        )
    return value


def _time_ms(value: Any, what: str) -> int:
    if not isinstance(value, str):
        raise InvalidInputError(f"{what}: eventTime must be an ISO 8601 time with its zone.")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise InvalidInputError(
            f"{what}: eventTime {value[:60]!r} is not an ISO 8601 time with its zone "
            "(2026-01-31T12:00:00.000Z)."
        )
    return int(moment.timestamp() * 1000)


def _datasets(value: Any, what: str, side: str, extra_facets: str) -> tuple[Dataset, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidInputError(f"{what} {side} must be a list of datasets.")
    found = []
    for index, raw in enumerate(value):
        if not isinstance(raw, dict):
            raise InvalidInputError(f"{what} {side} #{index} must be a JSON object.")
        namespace: Any = raw.get("namespace")  # a str once _fit or _text has seen it
        name: Any = raw.get("name")
        if not (_fit(namespace) and _fit(name)):
            where = f"{what} {side} #{index}"
            _text(namespace, where, "namespace")
            _text(name, where, "name")
        facets = _facets(raw.get("facets"), what, side, index)
        extra = raw.get(extra_facets)
        if extra is not None:
            facets.update(_facets(extra, what, side, index))
        found.append(Dataset(namespace, name, facets))
    return tuple(found)


def _fit(value: Any) -> bool:
    """What ``_text`` takes (its message is built only when this says no)."""
    return type(value) is str and 0 < len(value) <= 1000


def _facets(value: Any, what: str, part: str, index: int | None = None) -> dict[str, Any]:
    """Facets as sent; each one an object, the known ones in the spec's shape. ``part`` (with
    a dataset's ``index``) names them in a refusal, and is joined only then."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInputError(f"{what} {_part(part, index)} facets must be a JSON object.")
    facets = dict(value)
    for name, facet in facets.items():
        if not isinstance(facet, dict):
            raise InvalidInputError(
                f"{what} {_part(part, index)} facet {name!r} must be a JSON object."
            )
        for key in ("_producer", "_schemaURL"):
            if key in facet and not isinstance(facet[key], str):
                raise InvalidInputError(
                    f"{what} {_part(part, index)} facet {name!r}: {key} must be a URI string."
                )
        check = _KNOWN_FACETS.get(name)
        if check is not None and not check(facet):
            raise InvalidInputError(
                f"{what} {_part(part, index)} facet {name!r}: {_KNOWN_SHAPES[name]}"
            )
    return facets


def _part(part: str, index: int | None) -> str:
    return part if index is None else f"{part} #{index}"


def _schema_facet(facet: Mapping[str, Any]) -> bool:
    fields = facet.get("fields", [])
    return isinstance(fields, list) and all(
        isinstance(item, dict) and isinstance(item.get("name"), str) for item in fields
    )


def _data_source_facet(facet: Mapping[str, Any]) -> bool:
    return all(isinstance(facet[key], str) for key in ("name", "uri") if key in facet)


def _column_lineage_facet(facet: Mapping[str, Any]) -> bool:
    fields = facet.get("fields", {})
    return isinstance(fields, dict) and all(
        isinstance(column, dict) and isinstance(column.get("inputFields", []), list)
        for column in fields.values()
    )


def _sql_facet(facet: Mapping[str, Any]) -> bool:
    return isinstance(facet.get("query"), str)


def _version_facet(facet: Mapping[str, Any]) -> bool:
    return isinstance(facet.get("datasetVersion"), str)


# Each facet clew reads: whether one has the spec's shape, and what to say when it has not.
_KNOWN_FACETS: dict[str, Callable[[Mapping[str, Any]], bool]] = {
    "schema": _schema_facet,
    "dataSource": _data_source_facet,
    "columnLineage": _column_lineage_facet,
    "sql": _sql_facet,
    "version": _version_facet,
}
_KNOWN_SHAPES = {
    "schema": "fields must be a list of objects with a name (and type) each.",
    "dataSource": "name and uri must be strings.",
    "columnLineage": "fields must map each output column to an object with inputFields.",
    "sql": "query must be the SQL text.",
    "version": "datasetVersion must be a string.",
}


def column_sources(dataset: Dataset) -> list[tuple[str, str]]:
    """The (namespace, name) of every input dataset a columnLineage facet names."""
    fields = dataset.facets.get("columnLineage", {}).get("fields", {})
    found: dict[tuple[str, str], None] = {}
    for column in fields.values():
        for source in column.get("inputFields", []):
            if isinstance(source, dict):
                namespace, name = source.get("namespace"), source.get("name")
                if isinstance(namespace, str) and isinstance(name, str):
                    found[(namespace, name)] = None
    return list(found)


def merged(events: Sequence[RunEvent]) -> dict[str, list[RunEvent]]:
    """Events grouped by clew run id, each group in event-time order (arrival breaks ties)."""
    groups: dict[str, list[RunEvent]] = {}
    for event in events:
        groups.setdefault(event.run_id, []).append(event)
    for group in groups.values():
        group.sort(key=lambda event: event.time_ms)
    return groups


# --- out: clew's runs as OpenLineage events ---------------------------------------------------

PRODUCER = "https://github.com/clew-ml/clew"
RUN_EVENT_SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
_FINAL_EVENT = {records.FINISHED: "COMPLETE", records.FAILED: "FAIL", records.KILLED: "ABORT"}


def uuid_for(run_id: str) -> str:
    """The OpenLineage runId of a clew run: its ULID's 128 bits as a UUID (the inverse of
    ``run_id_for``, so a run that came from OpenLineage goes back under its own runId)."""
    value = 0
    for char in run_id.upper():
        value = value * 32 + _ALPHABET.index(char)
    return str(uuid.UUID(int=value))


def run_events(
    run: records.RunRecord,
    inputs: Sequence[records.ArtifactRecord],
    outputs: Sequence[records.ArtifactRecord],
    namespace: str,
) -> list[dict[str, Any]]:
    """A clew run as the RunEvents a consumer (Marquez, clew) expects: START at its start,
    then COMPLETE, FAIL or ABORT at its end (none while it is still running)."""
    job = {"namespace": namespace, "name": f"{run.experiment}.{run.name}", "facets": {}}
    base = {
        "run": {"runId": uuid_for(run.id), "facets": {}},
        "job": job,
        "producer": PRODUCER,
        "schemaURL": RUN_EVENT_SCHEMA,
    }
    events = [
        {
            "eventType": "START",
            "eventTime": _iso(run.start_ms),
            **base,
            "inputs": [_dataset(item, namespace) for item in inputs],
            "outputs": [],
        }
    ]
    final = _FINAL_EVENT.get(run.status)
    if final is not None:
        events.append(
            {
                "eventType": final,
                "eventTime": _iso(run.end_ms if run.end_ms is not None else run.start_ms),
                **base,
                "inputs": [_dataset(item, namespace) for item in inputs],
                "outputs": [_dataset(item, namespace) for item in outputs],
            }
        )
    return events


def _dataset(artifact: records.ArtifactRecord, namespace: str) -> dict[str, Any]:
    """An artifact as an OpenLineage dataset: the one it came from, when it came from one."""
    came_from = artifact.properties.get(KEY_IN, {})
    if came_from.get("namespace") and came_from.get("name"):
        return {"namespace": came_from["namespace"], "name": came_from["name"], "facets": {}}
    version = {
        "_producer": PRODUCER,
        "_schemaURL": _VERSION_SCHEMA,
        "datasetVersion": artifact.digest,
    }
    return {
        "namespace": namespace,
        "name": f"{artifact.type}/{artifact.name}",
        "facets": {"version": version},
    }


KEY_IN = "openlineage"
_VERSION_SCHEMA = (
    "https://openlineage.io/spec/facets/1-0-1/DatasetVersionDatasetFacet.json"
    "#/$defs/DatasetVersionDatasetFacet"
)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")
