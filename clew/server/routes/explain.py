"""Bias and explanation reports of a model version.

Reports are computed by clients (they hold the model) and recorded as ordinary run outputs;
this route lists the ones that count as evidence for a version, read by ``ReportService``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import Field

from clew.server.deps import ServicesDep
from clew.server.routes.bodies import Name, PlainRoute

router = APIRouter(prefix="/api/v1", tags=["explain"], route_class=PlainRoute)

Version = Annotated[int, Field(ge=1, le=2**31)]


@router.get("/models/{name}/versions/{version}/reports")
def version_reports(name: Name, version: Version, services: ServicesDep) -> list[dict[str, Any]]:
    """The bias and explanation reports recorded for the version, newest first."""
    return services.explanations.reports(f"{name}/{version}")
