"""Lineage walks and the feature-lineage questions, by ref."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import Field

from clew.domain.lineage import LineageResult, Node
from clew.server.deps import ActorDep, ServicesDep
from clew.server.routes.bodies import Body, JsonObject, PlainRoute
from clew.service.lineage_ingest import MAX_ITEMS

router = APIRouter(prefix="/api/v1/lineage", tags=["lineage"], route_class=PlainRoute)

Ref = Annotated[str, Query(min_length=1, max_length=400)]
Depth = Annotated[int, Query(ge=1, le=100)]


class Ingest(Body):
    artifacts: list[JsonObject] = Field(default_factory=list, max_length=MAX_ITEMS)
    runs: list[JsonObject] = Field(default_factory=list, max_length=MAX_ITEMS)


@router.post("/ingest", status_code=201)
def ingest(body: Ingest, services: ServicesDep, actor: ActorDep) -> dict[str, Any]:
    """Many artifacts and runs with their edges in one transaction (the SDK's
    ``client.lineage.ingest``)."""
    return services.lineage.ingest(body.artifacts, body.runs, actor).to_dict()


@router.get("/questions/{question}")
def answer(
    question: Literal[
        "feature_groups_from_data_source",
        "data_sources_from_feature_group",
        "models_from_feature_group",
        "feature_groups_from_model",
    ],
    ref: Ref,
    services: ServicesDep,
    max_depth: Depth | None = None,
) -> list[dict[str, Any]]:
    method = getattr(services.lineage, question)
    frame = method(ref) if max_depth is None else method(ref, max_depth)
    records: list[dict[str, Any]] = frame.to_dict(orient="records")
    return records


@router.get("/{direction}")
def walk(
    direction: Literal["upstream", "downstream"],
    ref: Ref,
    services: ServicesDep,
    max_depth: Depth = 10,
    types: Annotated[list[str] | None, Query(max_length=50)] = None,
) -> dict[str, Any]:
    result = getattr(services.lineage, direction)(ref, max_depth, types)
    return wire(result)


def wire(result: LineageResult) -> dict[str, Any]:
    """Everything the client needs to rebuild the same ``LineageResult``."""
    return {
        "start": _node(result.start),
        "direction": result.direction,
        "truncated": result.truncated,
        "nodes": [_node(node) for node in result.nodes.values()],
        "edges": [
            [edge.source_id, edge.association, edge.destination_id, edge.depth]
            for edge in result.edges
        ],
    }


def _node(node: Node) -> dict[str, Any]:
    return {
        "id": node.id,
        "kind": node.kind,
        "type": node.type,
        "name": node.name,
        "digest": node.digest,
        "properties": node.properties,
        "facts": node.facts,
    }
