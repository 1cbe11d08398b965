"""Baselines and monitoring checks of model versions.

Every rule lives in ``MonitoringService``; these routes only name the version in the path (so
per-model grants apply), bound the bodies, and attribute writes to the caller's token.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter
from pydantic import Field

from clew.domain.monitoring import Window
from clew.server.deps import ActorDep, ServicesDep
from clew.server.routes.bodies import Body, JsonObject, Name, PlainRoute, Text

router = APIRouter(prefix="/api/v1", tags=["monitoring"], route_class=PlainRoute)

Version = Annotated[int, Field(ge=1, le=2**31)]
Document = Annotated[str, Field(min_length=1, max_length=16 * 1024 * 1024)]
BASE = "/models/{name}/versions/{version}/baseline"


class NewBaseline(Body):
    dataset: Annotated[str, Field(max_length=300)] | None = None
    prediction: Name | None = None


class ImportedBaseline(Body):
    statistics: Document
    constraints: Document | None = None


class ConstraintEdits(Body):
    edits: JsonObject
    reason: Text = ""


class ImportedConstraints(Body):
    constraints: Document


class WindowBody(Body):
    start_ms: int | None = None
    end_ms: int | None = None
    last_n: Annotated[int, Field(ge=1)] | None = None


@router.post(BASE, status_code=201)
def create_baseline(
    name: Name, version: Version, body: NewBaseline, services: ServicesDep, actor: ActorDep
) -> dict[str, Any]:
    """Statistics and suggested constraints from a dataset, or the training data in lineage."""
    return services.monitoring.create_baseline(
        f"{name}/{version}", actor, dataset=body.dataset, prediction=body.prediction
    ).to_dict()


@router.post(f"{BASE}/import", status_code=201)
def import_baseline(
    name: Name, version: Version, body: ImportedBaseline, services: ServicesDep, actor: ActorDep
) -> dict[str, Any]:
    return services.monitoring.import_baseline(
        f"{name}/{version}", body.statistics, body.constraints, actor
    ).to_dict()


@router.get(BASE)
def get_baseline(name: Name, version: Version, services: ServicesDep) -> dict[str, Any]:
    return services.monitoring.get_baseline(f"{name}/{version}").to_dict()


@router.post(f"{BASE}/constraints", status_code=201)
def edit_constraints(
    name: Name, version: Version, body: ConstraintEdits, services: ServicesDep, actor: ActorDep
) -> dict[str, Any]:
    return services.monitoring.edit_constraints(
        f"{name}/{version}", body.edits, actor, body.reason
    ).to_dict()


@router.post(f"{BASE}/constraints/import", status_code=201)
def import_constraints(
    name: Name,
    version: Version,
    body: ImportedConstraints,
    services: ServicesDep,
    actor: ActorDep,
) -> dict[str, Any]:
    return services.monitoring.import_constraints(
        f"{name}/{version}", body.constraints, actor
    ).to_dict()


@router.post("/models/{name}/versions/{version}/checks/{check}")
def run_check(
    name: Name,
    version: Version,
    check: Literal["data_quality", "drift", "all"],
    body: WindowBody,
    services: ServicesDep,
) -> dict[str, Any]:
    """One check over a window of the version's captured predictions (nothing is written)."""
    window = Window(name, version, body.start_ms, body.end_ms, body.last_n)
    if check == "all":
        return {"reports": [r.to_dict() for r in services.monitoring.check_all(window)]}
    if check == "drift":
        return services.monitoring.check_drift(window).to_dict()
    return services.monitoring.check_data_quality(window).to_dict()
