"""The key facts of lineage nodes: what people ask about each node, next to its name.

A code node answers "which repository and commit, on which branch, with uncommitted changes,
where can I read it?"; a dataset "where did it come from, which version, how many rows, which
schema?"; a model "which registered versions, and are they approved?"; a run "did it finish,
who ran it, with which params?". Decided here once, so the CLI's JSON, DataFrames, the HTTP
API and the UI show the same facts.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection

from clew.domain import digests, records
from clew.domain.lineage import Node
from clew.errors import NotFoundError
from clew.service import approvals, graph, policy, registry
from clew.store.id_sets import IdSetStatement

_YEAR_10000_MS = 253_402_300_800_000
DATA_TYPES = ("dataset", "feature_set", "file", "directory", "data_source")
_ARTIFACT_ROWS = IdSetStatement(
    "SELECT id, type, name, digest, properties, uri, size FROM artifacts WHERE id IN ({ids})"
)
_RUN_ROWS = IdSetStatement(
    "SELECT id, kind, name, status, user_name, start_ms, end_ms FROM runs WHERE id IN ({ids})"
)
_CONTEXT_ROWS = IdSetStatement("SELECT id, type, name FROM contexts WHERE id IN ({ids})")
_PARAMS = IdSetStatement("SELECT run_id, key, value FROM params WHERE run_id IN ({ids})")
_VERSIONS = IdSetStatement(
    "SELECT v.artifact_id, m.name, v.version FROM model_versions v "
    "JOIN models m ON m.id = v.model_id WHERE v.artifact_id IN ({ids}) "
    "ORDER BY m.name, v.version"
)


def hydrate(connection: Connection, kinds: Mapping[str, str]) -> dict[str, Node]:
    """Each node with its facts, read once: one query per table, each asked only for the ids
    of its own kind (``kinds``: node id -> artifact, run or context, as a walk found them).

    Ids are asked for in sorted order: ids are time-ordered, like the tables' rows, so SQLite
    reads neighbouring pages in turn (about a third less of its time on a 20-hop walk)."""
    by_kind: dict[str, list[str]] = {"artifact": [], "run": [], "context": []}
    for id_, kind in kinds.items():
        by_kind[kind].append(id_)
    nodes: dict[str, Node] = {}
    _hydrate_artifacts(connection, sorted(by_kind["artifact"]), nodes)
    _hydrate_runs(connection, sorted(by_kind["run"]), nodes)
    contexts = by_kind["context"]
    for id_, type_, name in _CONTEXT_ROWS.all(connection, sorted(contexts)) if contexts else []:
        facts = _model_facts(connection, name) if type_ == "model" else {}
        nodes[id_] = _node(id_, "context", type_, name, None, {}, facts)
    return nodes


def _node(
    id_: str,
    kind: str,
    type_: str,
    name: str,
    digest: str | None,
    properties: dict[str, Any],
    facts: dict[str, Any],
) -> Node:
    """``Node(...)`` without the frozen dataclass's ``__init__``, which sets each field through
    ``object.__setattr__``: at thousands of nodes per walk that was a tenth of its time."""
    node = _new_node(Node)
    node.__dict__.update(
        id=id_, kind=kind, type=type_, name=name, digest=digest, properties=properties, facts=facts
    )
    return node


_new_node = object.__new__


def _hydrate_artifacts(connection: Connection, ids: list[str], nodes: dict[str, Node]) -> None:
    artifacts = _ARTIFACT_ROWS.all(connection, ids) if ids else []
    models = [row[0] for row in artifacts if row[1] == "model"]
    versions = _versions_of_artifacts(connection, models) if models else {}
    for id_, type_, name, digest, stored, uri, size in artifacts:
        properties = graph.properties(stored)
        facts = _artifact_facts(type_, name, properties, uri, size, versions.get(id_, ()))
        nodes[id_] = _node(id_, "artifact", type_, name, digest, properties, facts)


def _hydrate_runs(connection: Connection, ids: list[str], nodes: dict[str, Node]) -> None:
    runs = _RUN_ROWS.all(connection, ids) if ids else []
    params = _params_of(ids, connection) if runs else {}
    for id_, kind, name, status, user, start_ms, end_ms in runs:
        facts = {
            "status": status,
            "user": user,
            "params": params.get(id_, {}),
            "started": _iso(start_ms),
            "ended": _iso(end_ms),
        }
        nodes[id_] = _node(id_, "run", kind, name, None, {}, facts)


def _iso(ms: int | None) -> str | None:
    """``records.ms_to_iso`` in integer arithmetic for 1970 to 9999 (the same text up to
    2100, and no float rounding after): a 20-hop walk formats two per run, thousands per call,
    and a datetime per time cost a third more."""
    if type(ms) is not int or not 0 <= ms < _YEAR_10000_MS:
        return records.ms_to_iso(ms)
    seconds, millis = divmod(ms, 1000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{millis:03d}Z"


def _params_of(run_ids: list[str], connection: Connection) -> dict[str, dict[str, Any]]:
    params: dict[str, dict[str, Any]] = {}
    if run_ids:
        for run_id, key, value in _PARAMS.all(connection, run_ids):
            params.setdefault(run_id, {})[key] = value
    return params


def _artifact_facts(
    type_: str,
    name: str,
    properties: dict[str, Any],
    uri: str | None,
    size: int | None,
    versions: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    if type_ == "code":
        return {
            "repository": properties.get("remote") or name,
            "commit": properties.get("commit"),
            "branch": properties.get("branch"),
            "dirty": properties.get("dirty"),
            "script": properties.get("script"),
            "permalink": properties.get("permalink"),
        }
    if type_ in DATA_TYPES:
        schema_ = properties.get("schema")
        return {
            "source_uri": uri or properties.get("source_uri"),
            "version": properties.get("version"),
            "etag": properties.get("etag"),
            "rows": properties.get("row_count"),
            "schema_digest": digests.digest_json(schema_) if isinstance(schema_, dict) else None,
            "format": properties.get("format"),
            "size": size,
        }
    if type_ == "model":
        flavor = properties.get("flavor")
        return {
            "flavor": flavor.get("name") if isinstance(flavor, dict) else None,
            "versions": list(versions),
        }
    if type_ == "environment":
        return {"python": properties.get("python"), "platform": properties.get("platform")}
    if type_ == "feature_group":
        return {"features": properties.get("features")}
    return {}


def _versions_of_artifacts(
    connection: Connection, artifact_ids: list[str]
) -> dict[str, list[dict[str, Any]]]:
    """Per model artifact, the registered versions made from it and each one's status."""
    found: dict[str, list[dict[str, Any]]] = {}
    if not artifact_ids:
        return found
    registered = _VERSIONS.all(connection, artifact_ids)
    if not registered:
        return found
    required = policy.current(connection).rules.required_approvals
    for artifact_id, name, number in registered:
        found.setdefault(artifact_id, []).append(_version_facts(connection, name, number, required))
    return found


def _model_facts(connection: Connection, name: str) -> dict[str, Any]:
    """A registered model's versions with their status, and where its aliases point."""
    try:
        model = registry.get_model_row(connection, name=name)
    except NotFoundError:  # a model context whose first registration never committed
        return {}
    required = policy.current(connection).rules.required_approvals
    found = reversed(registry.model_versions(connection, model))
    return {
        "versions": [
            {"ref": v.ref, "status": approvals.version_state(connection, model, v).status(required)}
            for v in found
        ],
        "aliases": registry.current_aliases(connection, model.id),
    }


def _version_facts(connection: Connection, name: str, number: int, required: int) -> dict[str, Any]:
    state = approvals.get_version_state(connection, f"{name}/{number}")
    return {"ref": state.ref, "status": state.status(required)}
