"""Lineage queries by ref: upstream/downstream walks and the feature-lineage questions.

Feature lineage follows the SageMaker feature-store pattern: data sources contribute to
feature pipeline runs that produce feature groups; query runs read feature groups and produce
feature sets (datasets) that contribute to training runs that produce models.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from clew.domain import refs
from clew.domain.lineage import IngestResult, LineageResult, Node
from clew.errors import InvalidInputError, InvalidRefError, NotFoundError
from clew.service import graph, lineage_ingest, node_facts
from clew.service.artifacts import resolve_artifact
from clew.store.location import Store

if TYPE_CHECKING:
    import pandas as pd  # only named in annotations: connecting never imports pandas


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
    ) -> IngestResult:
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
            edges, kinds, truncated = graph.walk_nodes(connection, start.id, upstream, max_depth)
            kinds[start.id] = start.kind
            nodes = node_facts.hydrate(connection, kinds)
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


def resolve_node(connection: Connection, ref: str) -> Node:
    """The graph node a ref names (a model version resolves to its model artifact)."""
    from clew.service import registry

    parsed = refs.parse(ref)
    match parsed:
        case refs.RunRef(run_id):
            node_id = run_id
        case refs.ArtifactRef():
            node_id = resolve_artifact(connection, parsed).id
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
