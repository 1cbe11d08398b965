"""The key facts of lineage nodes: what people ask about each node, next to its name.

A code node answers "which repository and commit, on which branch, with uncommitted changes,
where can I read it?"; a dataset "where did it come from, which version, how many rows, which
schema?"; a model "which registered versions, and are they approved?"; a run "did it finish,
who ran it, with which params?". Decided here once, so the CLI's JSON, DataFrames, the HTTP
API and the UI show the same facts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, select

from clew.domain import digests, records
from clew.errors import NotFoundError
from clew.service import approvals, policy, registry
from clew.service.graph import Node
from clew.service.runs import load_runs
from clew.store import schema

DATA_TYPES = ("dataset", "feature_set", "file", "directory", "data_source")


def attach(connection: Connection, nodes: Mapping[str, Node]) -> dict[str, Node]:
    """``nodes`` with their facts filled in (a few indexed queries, whatever the walk's size)."""
    run_facts = {
        run.id: _run_facts(run)
        for run in load_runs(connection, [i for i, n in nodes.items() if n.kind == "run"])
    }
    artifact_ids = [i for i, n in nodes.items() if n.kind == "artifact"]
    stored = _artifact_columns(connection, artifact_ids)
    versions = _versions_of_artifacts(connection, artifact_ids)
    facts: dict[str, dict[str, Any]] = {}
    for node_id, node in nodes.items():
        if node.kind == "run":
            facts[node_id] = run_facts.get(node_id, {})
        elif node.kind == "artifact":
            uri, size = stored.get(node_id, (None, None))
            facts[node_id] = _artifact_facts(node, uri, size, versions.get(node_id, []))
        elif node.type == "model":
            facts[node_id] = _model_facts(connection, node.name)
    return {
        node_id: dataclasses.replace(node, facts=facts.get(node_id, {}))
        for node_id, node in nodes.items()
    }


def _run_facts(run: records.RunRecord) -> dict[str, Any]:
    return {
        "status": run.status,
        "user": run.user,
        "params": dict(run.params),
        "started": records.ms_to_iso(run.start_ms),
        "ended": records.ms_to_iso(run.end_ms),
    }


def _artifact_facts(
    node: Node, uri: str | None, size: int | None, versions: list[dict[str, Any]]
) -> dict[str, Any]:
    properties = node.properties
    if node.type == "code":
        return {
            "repository": properties.get("remote") or node.name,
            "commit": properties.get("commit"),
            "branch": properties.get("branch"),
            "dirty": properties.get("dirty"),
            "script": properties.get("script"),
            "permalink": properties.get("permalink"),
        }
    if node.type in DATA_TYPES:
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
    if node.type == "model":
        flavor = properties.get("flavor")
        return {
            "flavor": flavor.get("name") if isinstance(flavor, dict) else None,
            "versions": versions,
        }
    if node.type == "environment":
        return {"python": properties.get("python"), "platform": properties.get("platform")}
    if node.type == "feature_group":
        return {"features": properties.get("features")}
    return {}


def _artifact_columns(
    connection: Connection, artifact_ids: list[str]
) -> dict[str, tuple[str | None, int | None]]:
    table = schema.artifacts
    found: dict[str, tuple[str | None, int | None]] = {}
    for start in range(0, len(artifact_ids), 500):
        chunk = artifact_ids[start : start + 500]
        query = select(table.c.id, table.c.uri, table.c.size).where(table.c.id.in_(chunk))
        for row in connection.execute(query):
            found[row.id] = (row.uri, row.size)
    return found


def _versions_of_artifacts(
    connection: Connection, artifact_ids: list[str]
) -> dict[str, list[dict[str, Any]]]:
    """Per model artifact, the registered versions made from it and each one's status."""
    versions, models = schema.model_versions, schema.models
    found: dict[str, list[dict[str, Any]]] = {}
    if not artifact_ids:
        return found
    required = policy.current(connection).rules.required_approvals
    for start in range(0, len(artifact_ids), 500):
        query = (
            select(versions.c.artifact_id, models.c.name, versions.c.version)
            .join(models, models.c.id == versions.c.model_id)
            .where(versions.c.artifact_id.in_(artifact_ids[start : start + 500]))
            .order_by(models.c.name, versions.c.version)
        )
        for artifact_id, name, number in connection.execute(query).all():
            found.setdefault(artifact_id, []).append(
                _version_facts(connection, name, number, required)
            )
    return found


def _model_facts(connection: Connection, name: str) -> dict[str, Any]:
    """A registered model's versions with their status, and where its aliases point."""
    try:
        model = registry.load_model(connection, name=name)
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
    state = approvals.load_state(connection, f"{name}/{number}")
    return {"ref": state.ref, "status": state.status(required)}
