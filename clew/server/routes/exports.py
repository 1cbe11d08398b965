"""Regulator exports: the SR 11-7 model inventory and a version's signed Annex IV pack.

The pack is a POST because each answer is freshly generated and signed (its ``generated_at``
differs), not because it changes anything.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import Field

from clew.server.deps import ServicesDep
from clew.server.routes.bodies import Name, PlainRoute

router = APIRouter(prefix="/api/v1", tags=["exports"], route_class=PlainRoute)

Version = Annotated[int, Field(ge=1, le=2**31)]


@router.get("/exports/sr11-7")
def sr11_7(services: ServicesDep) -> list[dict[str, Any]]:
    return services.exports.sr11_7_inventory()


@router.post("/models/{name}/versions/{version}/annex-iv")
def annex_iv(name: Name, version: Version, services: ServicesDep) -> dict[str, Any]:
    return services.exports.annex_iv(f"{name}/{version}")
