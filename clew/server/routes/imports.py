"""Imports from other tools: pages of plain values the SDK read from them (MLflow, DVC)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import Field

from clew.domain.roles import Role
from clew.server.auth import require_role_on
from clew.server.deps import ActorDep, PrincipalDep, ServicesDep
from clew.server.routes.bodies import Body, JsonObject, Name, PlainRoute
from clew.service.dvc_import import MAX_STAGES
from clew.service.mlflow_import import MAX_RUNS
from clew.service.mlflow_models import MAX_LOGGED_MODELS, MAX_VERSIONS, clew_model_name

router = APIRouter(prefix="/api/v1/imports", tags=["imports"], route_class=PlainRoute)


class MlflowRuns(Body):
    runs: list[JsonObject] = Field(max_length=MAX_RUNS)


@router.post("/mlflow/runs", status_code=201)
def mlflow_runs(body: MlflowRuns, services: ServicesDep, actor: ActorDep) -> dict[str, Any]:
    """One page of MLflow runs (``client.imports.mlflow`` sends them), in one transaction."""
    return services.mlflow_import.import_runs(body.runs, actor).to_dict()


class MlflowModels(Body):
    logged_models: list[JsonObject] = Field(default_factory=list, max_length=MAX_LOGGED_MODELS)
    models: list[JsonObject] = Field(default_factory=list, max_length=MAX_VERSIONS)
    set_aliases: bool = True


@router.post("/mlflow/models", status_code=201)
def mlflow_models(
    body: MlflowModels, services: ServicesDep, principal: PrincipalDep
) -> dict[str, Any]:
    """A page of MLflow logged and registered models (``client.imports.mlflow`` sends them).
    Registering needs the contributor role on each model, as ``POST .../versions`` does;
    aliases are set only for a caller who may move them (approver), else each is a note."""
    names = [clew_model_name(str(model.get("name", ""))) for model in body.models]
    for name in names:
        require_role_on(principal, name, Role.CONTRIBUTOR)
    movers = all(principal.role_for(name) >= Role.APPROVER for name in names)
    page = {"logged_models": body.logged_models, "models": body.models}
    result = services.mlflow_import.import_models(page, principal.name, body.set_aliases and movers)
    return result.to_dict()


class DvcStages(Body):
    project: Name
    stages: list[JsonObject] = Field(max_length=MAX_STAGES)


@router.post("/dvc/stages", status_code=201)
def dvc_stages(body: DvcStages, services: ServicesDep, actor: ActorDep) -> dict[str, Any]:
    """A DVC project's stages (``client.imports.dvc`` reads them), in one transaction."""
    return services.dvc_import.import_stages(body.project, body.stages, actor).to_dict()
