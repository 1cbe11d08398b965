"""Serving deployments: started and stopped by ``clew serve``, and which answered when."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from pydantic import Field

from clew.server.deps import ActorDep, ServicesDep
from clew.server.routes.bodies import Body, PlainRoute

router = APIRouter(prefix="/api/v1", tags=["deployments"], route_class=PlainRoute)

DeploymentId = Annotated[str, PathParam(min_length=26, max_length=26)]
Short = Annotated[str, Field(max_length=200)]


class StartDeployment(Body):
    endpoint: Short
    ref: Annotated[str, Field(min_length=1, max_length=400)]
    role: Annotated[str, Field(max_length=20)] = "champion"
    champion_id: Annotated[str, Field(max_length=26)] | None = None
    address: Short = ""
    run_id: Annotated[str, Field(max_length=26)] | None = None


class StopDeployment(Body):
    pass


@router.post("/deployments", status_code=201)
def start(body: StartDeployment, services: ServicesDep, actor: ActorDep) -> dict[str, Any]:
    fields = body.model_dump()
    endpoint, ref = fields.pop("endpoint"), fields.pop("ref")
    return services.deployments.start(endpoint, ref, actor, **fields).to_wire()


@router.post("/deployments/{deployment_id}/stop")
def stop(
    deployment_id: DeploymentId, body: StopDeployment, services: ServicesDep, actor: ActorDep
) -> dict[str, Any]:
    return services.deployments.stop(deployment_id, actor).to_wire()


@router.get("/deployments/at")
def at(
    services: ServicesDep,
    at_ms: Annotated[int, Query(ge=0, le=2**53)],
    endpoint: Annotated[str | None, Query(max_length=200)] = None,
) -> list[dict[str, Any]]:
    return [item.to_wire() for item in services.deployments.at(endpoint, at_ms)]


@router.get("/deployments")
def history(
    services: ServicesDep,
    endpoint: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    return [item.to_wire() for item in services.deployments.history(endpoint, limit)]


@router.get("/deployments/{deployment_id}")
def get(deployment_id: DeploymentId, services: ServicesDep) -> dict[str, Any]:
    return services.deployments.get(deployment_id).to_wire()
