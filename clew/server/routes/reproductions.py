"""Reproductions of model versions: the plan of what to re-run, and signed reports.

Every rule lives in ``ReproductionService``; these routes name the version in the path (so
per-model grants apply) and attribute the report to the caller's token.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import Field

from clew.server.deps import ActorDep, ServicesDep
from clew.server.routes.bodies import Body, JsonObject, Name, PlainRoute

router = APIRouter(prefix="/api/v1", tags=["reproductions"], route_class=PlainRoute)

Version = Annotated[int, Field(ge=1, le=2**31)]
BASE = "/models/{name}/versions/{version}"


class Findings(Body):
    findings: JsonObject


@router.get(f"{BASE}/reproduction-plan")
def reproduction_plan(name: Name, version: Version, services: ServicesDep) -> dict[str, Any]:
    """The commit, command, inputs, environment and metrics that made the version."""
    return services.reproductions.plan(f"{name}/{version}").to_dict()


@router.post(f"{BASE}/reproductions", status_code=201)
def record_reproduction(
    name: Name, version: Version, body: Findings, services: ServicesDep, actor: ActorDep
) -> dict[str, Any]:
    """Judge a re-run's findings, sign the verdict and store it as a linked report."""
    return services.reproductions.record(f"{name}/{version}", body.findings, actor).to_dict()
