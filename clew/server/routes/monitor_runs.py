"""The monitor: model quality, runs per window, resolving violations and schedules.

Each route names its model in the body (a ref such as ``churn@production``), so the per-model
grant is checked here with ``require_role_on``, the check the permission table makes when a
path holds the model's name.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import Field

from clew.domain.quality import QualitySpec, spec_from_dict
from clew.domain.roles import Role
from clew.server.auth import require_role_on
from clew.server.deps import ActorDep, PrincipalDep, ServicesDep
from clew.server.routes.bodies import Body, Id, JsonObject, PlainRoute, Text
from clew.server.routes.registry import event_wire
from clew.service import registry

router = APIRouter(prefix="/api/v1/monitor", tags=["monitoring"], route_class=PlainRoute)

Ref = Annotated[str, Field(min_length=1, max_length=400)]
Short = Annotated[str, Field(min_length=1, max_length=100)]


class WindowBody(Body):
    ref: Ref
    window: Short | None = None
    start: Short | None = None
    end: Short | None = None
    last: Annotated[int, Field(ge=1, le=2**31)] | None = None
    quality: JsonObject | None = None

    def spec(self) -> QualitySpec | None:
        return spec_from_dict(self.quality) if self.quality is not None else None


class RunBody(WindowBody):
    rerun: bool = False


class ResolveBody(Body):
    ref: Ref
    comment: Text


class ScheduleBody(Body):
    ref: Ref
    cron: Short
    window: Short


def _model_of(ref: str) -> str:
    return registry.parse_model_ref(ref).name


@router.post("/quality")
def check_quality(
    body: WindowBody, services: ServicesDep, actor: ActorDep, principal: PrincipalDep
) -> dict[str, Any]:
    require_role_on(principal, _model_of(body.ref), Role.VIEWER)
    report = services.monitor_runs.check_quality(
        body.ref,
        actor,
        window=body.window,
        start=body.start,
        end=body.end,
        last=body.last,
        quality=body.spec(),
    )
    return report.to_dict()


@router.post("/runs")
def run_monitor(
    body: RunBody, services: ServicesDep, actor: ActorDep, principal: PrincipalDep
) -> dict[str, Any]:
    require_role_on(principal, _model_of(body.ref), Role.CONTRIBUTOR)
    result = services.monitor_runs.run_monitor(
        body.ref,
        actor,
        window=body.window,
        start=body.start,
        end=body.end,
        last=body.last,
        rerun=body.rerun,
        quality=body.spec(),
    )
    return result.to_dict()


@router.get("/runs")
def list_runs(
    services: ServicesDep,
    principal: PrincipalDep,
    ref: Annotated[str, Query(min_length=1, max_length=400)],
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[dict[str, Any]]:
    require_role_on(principal, _model_of(ref), Role.VIEWER)
    return [run.to_dict() for run in services.monitor_runs.list_runs(ref, limit)]


@router.post("/resolve")
def resolve(
    body: ResolveBody, services: ServicesDep, actor: ActorDep, principal: PrincipalDep
) -> dict[str, Any]:
    require_role_on(principal, _model_of(body.ref), Role.APPROVER)
    return event_wire(services.monitor_runs.resolve(body.ref, actor, body.comment))


@router.post("/schedules")
def schedule(
    body: ScheduleBody, services: ServicesDep, actor: ActorDep, principal: PrincipalDep
) -> dict[str, Any]:
    require_role_on(principal, _model_of(body.ref), Role.CONTRIBUTOR)
    return services.monitor_schedules.schedule(body.ref, body.cron, body.window, actor).to_dict()


@router.get("/schedules")
def schedules(
    services: ServicesDep,
    model: Annotated[str | None, Query(min_length=1, max_length=250)] = None,
) -> list[dict[str, Any]]:
    return [item.to_dict() for item in services.monitor_schedules.schedules(model)]


@router.delete("/schedules/{schedule_id}")
def unschedule(
    schedule_id: Id, services: ServicesDep, actor: ActorDep, principal: PrincipalDep
) -> dict[str, Any]:
    found = services.monitor_schedules.get_schedule(schedule_id)
    require_role_on(principal, _model_of(found.target), Role.CONTRIBUTOR)
    services.monitor_schedules.unschedule(schedule_id, actor)
    return {"deleted": schedule_id}
