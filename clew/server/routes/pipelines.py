"""Pipelines: the step cache lookup and one execution read back as a tree."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import Field

from clew.server.deps import ServicesDep
from clew.server.routes.bodies import PlainRoute

router = APIRouter(prefix="/api/v1/pipelines", tags=["pipelines"], route_class=PlainRoute)

StepKey = Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]
PipelineRef = Annotated[str, Field(min_length=1, max_length=300)]


@router.get("/cached-step")
def cached_step(key: Annotated[StepKey, Query()], services: ServicesDep) -> dict[str, Any]:
    """The newest successful step run with this cache key (``step`` is null when none)."""
    found = services.pipelines.find_cached_step(key)
    return {"step": asdict(found) if found else None}


@router.get("/{ref}")
def show_pipeline(ref: PipelineRef, services: ServicesDep) -> dict[str, Any]:
    """A pipeline execution (by run id, or the newest of a name) and its steps."""
    return services.pipelines.show(ref).to_dict()
