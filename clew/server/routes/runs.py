"""Runs: create, log params/tags/metric batches, end, read, search."""

from __future__ import annotations

import json
from typing import Annotated, Any

import pyarrow as pa
import pyarrow.compute as pc
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import Field, ValidationError
from starlette.concurrency import run_in_threadpool

from clew.domain.records import ArtifactRecord, RunRecord
from clew.domain.run_fields import NEXT_PAGE_HEADER, WARNINGS_HEADER, check_key
from clew.errors import InvalidInputError
from clew.server import arrow_bodies, fair_use
from clew.server.arrow_bodies import ARROW_STREAM
from clew.server.deps import ActorDep, PrincipalDep, ServicesDep
from clew.server.limits import MAX_METRIC_POINTS
from clew.server.responses import JSONResponse
from clew.server.routes.bodies import (
    NAME_LENGTH,
    Body,
    Id,
    Int64,
    JsonObject,
    Name,
    PlainRoute,
    Text,
)
from clew.service import accounts
from clew.service.runs import (
    MAX_RESULTS,
    search_run_page,
    unknown_keys,
)

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
MetricPoint = tuple[str, float, int, int]


class Metrics(Body):
    points: Annotated[list[MetricPointIn], Field(max_length=MAX_METRIC_POINTS)]


ARROW_METRICS = pa.schema(
    [
        ("key", pa.string()),
        ("value", pa.float64()),
        ("step", pa.int64()),
        ("timestamp_ms", pa.int64()),
    ]
)
# Four flat columns: a 250-character key and three 8-byte numbers fit 64 MiB 200,000 times.
ARROW_METRICS_LIMITS = arrow_bodies.Limits(
    rows=MAX_METRIC_POINTS, values=4 * MAX_METRIC_POINTS, decoded_bytes=64 * 1024 * 1024
)
METRICS_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": Metrics.model_json_schema()},
            ARROW_STREAM: {"schema": arrow_bodies.OPENAPI_BINARY},
        },
    }
}


async def metric_points(request: Request) -> list[MetricPoint]:
    """The points of a metrics request: JSON ``{"points": [[key, value, step, timestamp_ms],
    ...]}``, or (what the SDK sends) an Arrow IPC stream with those four columns.

    JSON is validated straight from the bytes, where FastAPI would build Python objects
    first and validate them after: that was two thirds of the server's time per point.
    """
    body = await request.body()
    if arrow_bodies.media_type(request) in arrow_bodies.BODY_TYPES:
        return await run_in_threadpool(_arrow_points, body)
    try:
        return Metrics.model_validate_json(body).points
    except ValidationError as error:
        raise RequestValidationError(error.errors(include_url=False)) from None


def _arrow_points(body: bytes) -> list[MetricPoint]:
    """The same rules as the JSON body's, checked column by column."""
    table = arrow_bodies.decode(body, "metrics body", ARROW_METRICS_LIMITS)
    if not table.schema.remove_metadata().equals(ARROW_METRICS):
        got = ", ".join(f"{field.name} ({field.type})" for field in table.schema)
        raise InvalidInputError(
            "an Arrow metrics body has the columns key (string), value (double), step (int64) "
            f"and timestamp_ms (int64); this one has {got or 'none'}."
        )
    for name in ARROW_METRICS.names:
        if table[name].null_count:
            raise InvalidInputError(
                f"column {name} of the metrics body has nulls; every point needs a key, a "
                "value (NaN is allowed), a step and a timestamp_ms."
            )
    lengths = pc.min_max(pc.utf8_length(table["key"]))
    if table.num_rows and (lengths["min"].as_py() < 1 or lengths["max"].as_py() > NAME_LENGTH):
        raise InvalidInputError(f"metric keys are 1 to {NAME_LENGTH} characters long.")
    return list(zip(*(table[name].to_pylist() for name in ARROW_METRICS.names), strict=True))


class EndRun(Body):
    status: Annotated[str, Field(max_length=20)]
    params: JsonObject = Field(default_factory=dict)
    tags: JsonObject = Field(default_factory=dict)
    points: Annotated[list[MetricPointIn], Field(max_length=MAX_METRIC_POINTS)] = Field(
        default_factory=list
    )


OrderKey = Annotated[str, Field(max_length=500)]


class Search(Body):
    filter: Annotated[str, Field(max_length=10_000)] | None = None
    order_by: Annotated[list[OrderKey], Field(max_length=20)] | None = None
    max_results: Annotated[int, Field(ge=1, le=MAX_RESULTS)] = 1000
    experiments: Annotated[list[Name], Field(max_length=1000)] | None = None
    # Checked by the service (clew/service/search_pages.py), so its sentence is the same here.
    page_token: str | None = None


@router.post("", status_code=201)
def create_run(body: CreateRun, services: ServicesDep, actor: ActorDep) -> dict[str, Any]:
    fields = body.model_dump()
    return wire(services.runs.create_run(actor=actor, **fields))


@router.post("/search", dependencies=[Depends(fair_use.search_slot)])
def search(body: Search, services: ServicesDep) -> Response:
    """The runs; filter keys no run has are named in the ``Clew-Warnings`` header (a JSON
    list of sentences), which the SDK raises as ``UnknownKeyWarning``; the next page's token,
    if there is a next page, is in ``Clew-Next-Page-Token`` (the body stays a plain list)."""
    page = search_run_page(
        services.store,
        body.filter,
        body.order_by,
        body.max_results,
        body.experiments,
        body.page_token,
    )
    messages = unknown_keys(services.store, body.filter)
    headers = {WARNINGS_HEADER: json.dumps(messages)} if messages else {}
    if page.next_page_token is not None:
        headers[NEXT_PAGE_HEADER] = page.next_page_token
    return JSONResponse([wire(run) for run in page.runs], headers=headers)


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


@router.post("/{run_id}/metrics", status_code=204, openapi_extra=METRICS_BODY)
def log_metrics(
    run_id: Id,
    points: Annotated[list[MetricPoint], Depends(metric_points)],
    services: ServicesDep,
    who: PrincipalDep,
) -> None:
    _check_keys(points)
    accounts.require_run_writer(services.store, run_id, who)
    services.runs.log_metrics(run_id, points, who.name)


@router.post("/{run_id}/end", status_code=204)
def end_run(run_id: Id, body: EndRun, services: ServicesDep, who: PrincipalDep) -> None:
    _check_keys(body.points)
    accounts.require_run_writer(services.store, run_id, who)
    services.runs.end_run(run_id, body.status, who.name, body.points, body.params, body.tags)


@router.get("/{run_id}/artifacts")
def run_artifacts(run_id: Id, services: ServicesDep) -> dict[str, list[dict[str, Any]]]:
    found = services.artifacts.run_artifacts(run_id)
    return {side: [_artifact(a) for a in items] for side, items in found.items()}


def wire(run: RunRecord) -> dict[str, Any]:
    """The record as JSON, with exact millisecond times beside the readable ones."""
    return run.to_dict() | {"start_ms": run.start_ms, "end_ms": run.end_ms}


def _check_keys(points: list[MetricPoint]) -> None:
    for key in {point[0] for point in points}:
        check_key(key, "metric")


def _artifact(record: ArtifactRecord) -> dict[str, Any]:
    return record.to_dict() | {"created_ms": record.created_ms}
