"""Runs: create, log params/tags/metric batches, end, read, search."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import Field

from clew.domain.records import RunRecord
from clew.server.deps import ActorDep, PrincipalDep, ServicesDep
from clew.server.limits import MAX_METRIC_POINTS
from clew.server.routes.models import Body, Id, Int64, JsonObject, Name, PlainRoute, Text
from clew.service import accounts
from clew.service.runs import check_key, search_runs

router = APIRouter(prefix="/api/v1/runs", tags=["runs"], route_class=PlainRoute)


class CreateRun(Body):
    experiment: Name = "default"
    name: Name
    kind: Name = "training"
    parent_id: Id | None = None
    command: Text | None = None
    seed: Int64 | None = None
    params: JsonObject = Field(default_factory=dict)
    tags: JsonObject = Field(default_factory=dict)
    code_artifact_id: Id | None = None
    environment_artifact_id: Id | None = None
    properties: JsonObject = Field(default_factory=dict)


class Params(Body):
    params: JsonObject


class Tags(Body):
    tags: JsonObject


# JSON has no tuples: the array itself is lax, its items stay strict.
MetricPointIn = Annotated[tuple[Name, float, Int64, Int64], Field(strict=False)]


class Metrics(Body):
    points: Annotated[list[MetricPointIn], Field(max_length=MAX_METRIC_POINTS)]


class EndRun(Body):
    status: Annotated[str, Field(max_length=20)]
    points: Annotated[list[MetricPointIn], Field(max_length=MAX_METRIC_POINTS)] = Field(
        default_factory=list
    )


OrderKey = Annotated[str, Field(max_length=500)]


class Search(Body):
    filter: Annotated[str, Field(max_length=10_000)] | None = None
    order_by: Annotated[list[OrderKey], Field(max_length=20)] | None = None
    max_results: Annotated[int, Field(ge=1, le=100_000)] = 1000
    experiments: Annotated[list[Name], Field(max_length=1000)] | None = None


@router.post("", status_code=201)
def create_run(body: CreateRun, services: ServicesDep, actor: ActorDep) -> dict[str, Any]:
    fields = body.model_dump()
    return wire(services.runs.create_run(actor=actor, **fields))


@router.post("/search")
def search(body: Search, services: ServicesDep) -> list[dict[str, Any]]:
    found = search_runs(
        services.store, body.filter, body.order_by, body.max_results, body.experiments
    )
    return [wire(run) for run in found]


@router.get("/{run_id}")
def get_run(run_id: Id, services: ServicesDep) -> dict[str, Any]:
    return wire(services.runs.get_run(run_id))


@router.get("/{run_id}/metric-history")
def metric_history(
    run_id: Id, key: Annotated[Name, Query()], services: ServicesDep
) -> list[list[Any]]:
    return [
        [point.value, point.step, point.timestamp_ms]
        for point in services.runs.metric_history(run_id, key)
    ]


@router.post("/{run_id}/params", status_code=204)
def log_params(run_id: Id, body: Params, services: ServicesDep, who: PrincipalDep) -> None:
    accounts.require_run_writer(services.store, run_id, who)
    services.runs.log_params(run_id, body.params, who.name)


@router.post("/{run_id}/tags", status_code=204)
def set_tags(run_id: Id, body: Tags, services: ServicesDep, who: PrincipalDep) -> None:
    accounts.require_run_writer(services.store, run_id, who)
    services.runs.set_tags(run_id, body.tags, who.name)


@router.post("/{run_id}/metrics", status_code=204)
def log_metrics(run_id: Id, body: Metrics, services: ServicesDep, who: PrincipalDep) -> None:
    _check_keys(body.points)
    accounts.require_run_writer(services.store, run_id, who)
    services.runs.log_metrics(run_id, body.points, who.name)


@router.post("/{run_id}/end", status_code=204)
def end_run(run_id: Id, body: EndRun, services: ServicesDep, who: PrincipalDep) -> None:
    _check_keys(body.points)
    accounts.require_run_writer(services.store, run_id, who)
    services.runs.end_run(run_id, body.status, who.name, body.points)


@router.get("/{run_id}/artifacts")
def run_artifacts(run_id: Id, services: ServicesDep) -> dict[str, list[dict[str, Any]]]:
    found = services.artifacts.run_artifacts(run_id)
    return {side: [_artifact(a) for a in items] for side, items in found.items()}


def wire(run: RunRecord) -> dict[str, Any]:
    """The record as JSON, with exact millisecond times beside the readable ones."""
    return run.to_dict() | {"start_ms": run.start_ms, "end_ms": run.end_ms}


def _check_keys(points: list[MetricPointIn]) -> None:
    for key in {point[0] for point in points}:
        check_key(key, "metric")


def _artifact(record: Any) -> dict[str, Any]:
    return record.to_dict() | {"created_ms": record.created_ms}
