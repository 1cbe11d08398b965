"""Shadow deployments: the pairs ``clew serve --shadow`` records, and the report."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from fastapi import Path as PathParam
from pydantic import Field

from clew.domain.deployments import ShadowPair
from clew.domain.quality import spec_from_dict
from clew.server.deps import ActorDep, ServicesDep
from clew.server.routes.bodies import Body, JsonObject, PlainRoute

router = APIRouter(prefix="/api/v1", tags=["deployments"], route_class=PlainRoute)

DeploymentId = Annotated[str, PathParam(min_length=26, max_length=26)]


class Pair(Body):
    champion_call: Annotated[str, Field(max_length=26)]
    shadow_call: Annotated[str, Field(max_length=26)]
    rows: Annotated[int, Field(ge=1, le=100_000)]
    request_id: Annotated[str, Field(max_length=200)]
    time_ms: Annotated[int, Field(ge=0, le=2**53)]


class Pairs(Body):
    pairs: Annotated[list[Pair], Field(max_length=10_000)]


class Report(Body):
    quality: JsonObject | None = None


@router.post("/shadows/{deployment_id}/pairs")
def record_pairs(
    deployment_id: DeploymentId, body: Pairs, services: ServicesDep, actor: ActorDep
) -> dict[str, Any]:
    pairs = [ShadowPair(**pair.model_dump()) for pair in body.pairs]
    return {"recorded": services.shadows.record_pairs(deployment_id, pairs, actor)}


@router.post("/shadows/{deployment_id}/report")
def report(deployment_id: DeploymentId, body: Report, services: ServicesDep) -> dict[str, Any]:
    spec = spec_from_dict(body.quality) if body.quality is not None else None
    return services.shadows.report(deployment_id, spec).to_dict()
