"""Imports from other tools: pages of plain values the SDK read from them (MLflow, DVC)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import Field

from clew.server.deps import ActorDep, ServicesDep
from clew.server.routes.bodies import Body, JsonObject, Name, PlainRoute
from clew.service.dvc_import import MAX_STAGES
from clew.service.mlflow_import import MAX_RUNS

router = APIRouter(prefix="/api/v1/imports", tags=["imports"], route_class=PlainRoute)


class MlflowRuns(Body):
    runs: list[JsonObject] = Field(max_length=MAX_RUNS)


@router.post("/mlflow/runs", status_code=201)
def mlflow_runs(body: MlflowRuns, services: ServicesDep, actor: ActorDep) -> dict[str, Any]:
    """One page of MLflow runs (``client.imports.mlflow`` sends them), in one transaction."""
    return services.mlflow_import.import_runs(body.runs, actor).to_dict()


class DvcStages(Body):
    project: Name
    stages: list[JsonObject] = Field(max_length=MAX_STAGES)


@router.post("/dvc/stages", status_code=201)
def dvc_stages(body: DvcStages, services: ServicesDep, actor: ActorDep) -> dict[str, Any]:
    """A DVC project's stages (``client.imports.dvc`` reads them), in one transaction."""
    return services.dvc_import.import_stages(body.project, body.stages, actor).to_dict()
