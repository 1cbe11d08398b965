"""Lineage queries by ref: upstream/downstream walks and the feature-lineage questions.

Feature lineage follows the SageMaker feature-store pattern: data sources contribute to
feature pipeline runs that produce feature groups; query runs read feature groups and produce
feature sets (datasets) that contribute to training runs that produce models.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from sqlalchemy import Connection

from clew.domain import refs
from clew.errors import InvalidInputError, InvalidRefError, NotFoundError
from clew.service import graph, lineage_ingest, node_facts
from clew.service.artifacts import find_artifact
from clew.store.location import Store

EDGE_COLUMNS = [
    "source",
    "source_type",
    "association",
    "destination",
    "destination_type",
    "depth",
    "source_name",
    "destination_name",
    "source_id",
    "destination_id",
    "source_facts",
    "destination_facts",
]
NODE_COLUMNS = ["name", "type", "ref", "id", "digest", "depth", "properties"]


@dataclass
class LineageResult:
    """Edges found by a walk, with the nodes they touch; converts to pandas or plain dicts."""

    start: graph.Node
    direction: str
    edges: list[graph.WalkedEdge]
    nodes: dict[str, graph.Node]
    truncated: bool = False
    _rows: list[dict[str, Any]] = field(default_factory=list, init=False, repr=False)

    def rows(self) -> list[dict[str, Any]]:
        if not self._rows:
            for edge in self.edges:
                source, destination = self.nodes[edge.source_id], self.nodes[edge.destination_id]
                self._rows.append(
                    {
                        "source": source.ref,
                        "source_type": source.type,
                        "association": edge.association,
                        "destination": destination.ref,
                        "destination_type": destination.type,
                        "depth": edge.depth,
                        "source_name": source.name,
                        "destination_name": destination.name,
                        "source_id": source.id,
                        "destination_id": destination.id,
                        "source_facts": source.facts,
                        "destination_facts": destination.facts,
                    }
                )
        return self._rows

    def to_pandas(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows(), columns=EDGE_COLUMNS)

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": _node_dict(self.start),
            "direction": self.direction,
            "truncated": self.truncated,
            "nodes": [_node_dict(node) for node in self.nodes.values()],
            "edges": self.rows(),
        }

    def far_nodes(self, node_type: str) -> pd.DataFrame:
        """Distinct nodes of one type at the far end of the walk, nearest first."""
        depth_of: dict[str, int] = {}
        for edge in self.edges:
            far = edge.source_id if self.direction == "upstream" else edge.destination_id
            depth_of.setdefault(far, edge.depth)
        found = [
            {
                "name": n.name,
                "type": n.type,
                "ref": n.ref,
                "id": n.id,
                "digest": n.digest,
                "depth": depth_of[n.id],
                "properties": n.properties,
            }
            for n in self.nodes.values()
            if n.id in depth_of and n.type == node_type and n.id != self.start.id
        ]
        found.sort(key=lambda row: (row["depth"], row["name"]))
        return pd.DataFrame(found, columns=NODE_COLUMNS)


def _node_dict(node: graph.Node) -> dict[str, Any]:
    return {
        "id": node.id,
        "kind": node.kind,
        "type": node.type,
        "name": node.name,
        "ref": node.ref,
        "digest": node.digest,
        "facts": node.facts,
    }


class LineageService:
    def __init__(self, store: Store) -> None:
        self.store = store

    def upstream(
        self, ref: str, max_depth: int = 10, types: Sequence[str] | None = None
    ) -> LineageResult:
        return self._walk(ref, True, max_depth, types)

    def ingest(
        self,
        artifacts: Sequence[Mapping[str, Any]],
        runs: Sequence[Mapping[str, Any]],
        actor: str,
    ) -> lineage_ingest.IngestResult:
        """Many artifacts and runs with their edges in one transaction (``lineage_ingest``)."""
        return lineage_ingest.ingest(self.store, artifacts, runs, actor)

    def downstream(
        self, ref: str, max_depth: int = 10, types: Sequence[str] | None = None
    ) -> LineageResult:
        return self._walk(ref, False, max_depth, types)

    def _walk(
        self, ref: str, upstream: bool, max_depth: int, types: Sequence[str] | None
    ) -> LineageResult:
        if not isinstance(max_depth, int) or not 1 <= max_depth <= 100:
            raise InvalidInputError(f"max_depth {max_depth!r} must be an integer from 1 to 100.")
        with self.store.db.read() as connection:
            start = resolve_node(connection, ref)
            edges, truncated = graph.walk(connection, start.id, upstream, max_depth)
            nodes = node_facts.hydrate(
                connection,
                [start.id, *(e.source_id for e in edges), *(e.destination_id for e in edges)],
            )
            start = nodes[start.id]
        if types:
            wanted = set(types)
            edges = [
                edge
                for edge in edges
                if nodes[edge.source_id if upstream else edge.destination_id].type in wanted
            ]
        return LineageResult(
            start, "upstream" if upstream else "downstream", edges, nodes, truncated
        )

    # --- feature lineage (each answers one question from the feature-store post) ----------

    def feature_groups_from_data_source(self, ref: str, max_depth: int = 10) -> pd.DataFrame:
        return self.downstream(_as_type(ref, "data_source"), max_depth).far_nodes("feature_group")

    def data_sources_from_feature_group(self, ref: str, max_depth: int = 3) -> pd.DataFrame:
        return self.upstream(_as_type(ref, "feature_group"), max_depth).far_nodes("data_source")

    def models_from_feature_group(self, ref: str, max_depth: int = 10) -> pd.DataFrame:
        return self.downstream(_as_type(ref, "feature_group"), max_depth).far_nodes("model")

    def feature_groups_from_model(self, ref: str, max_depth: int = 10) -> pd.DataFrame:
        return self.upstream(ref, max_depth).far_nodes("feature_group")


def _as_type(ref: str, type_: str) -> str:
    """Let users pass a bare name (``customers``) where the type is obvious."""
    try:
        refs.parse(ref)
    except InvalidRefError:
        return f"{type_}:{ref}"
    return ref if ":" in ref else f"{type_}:{ref}"


def resolve_node(connection: Connection, ref: str) -> graph.Node:
    """The graph node a ref names (a model version resolves to its model artifact)."""
    from clew.service import registry

    parsed = refs.parse(ref)
    match parsed:
        case refs.RunRef(run_id):
            node_id = run_id
        case refs.ArtifactRef():
            node_id = find_artifact(connection, parsed).id
        case refs.ContextRef(type_, name):
            node_id = _context_id(connection, type_, name)
        case refs.ModelVersionRef() | refs.ModelAliasRef():
            node_id = registry.resolve_version(connection, parsed).artifact_id
        case _:
            raise InvalidInputError(
                f"{ref!r} is not a lineage node; use a run, artifact, context or model ref."
            )
    nodes = graph.describe(connection, [node_id])
    if node_id not in nodes:
        raise NotFoundError(f"{ref!r} does not exist in this store.")
    return nodes[node_id]


def _context_id(connection: Connection, type_: str, name: str) -> str:
    from sqlalchemy import select

    from clew.store import schema

    table = schema.contexts
    found: str | None = connection.execute(
        select(table.c.id).where(table.c.type == type_, table.c.name == name)
    ).scalar()
    if not found:
        raise NotFoundError(f"{type_} {name!r} does not exist.")
    return found
