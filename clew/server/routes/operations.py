"""Health, readiness, metrics and whoami: what load balancers, Prometheus and users poll."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from sqlalchemy import text

from clew.server.deps import PrincipalDep, ServicesDep
from clew.server.responses import JSONResponse
from clew.server.routes.bodies import PlainRoute

router = APIRouter(tags=["operations"], route_class=PlainRoute)


@router.get("/api/v1/health")
def health() -> dict[str, str]:
    """The process is up (it does not touch the database: that is readiness)."""
    return {"status": "ok"}


@router.get("/api/v1/ready", response_model=None)
def ready(services: ServicesDep) -> dict[str, Any] | JSONResponse:
    """200 when the metadata database answers and the blob store is reachable, else 503."""
    problems = []
    try:
        with services.store.db.read() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as error:
        problems.append(f"metadata database: {type(error).__name__}")
    try:
        services.store.blobs.exists("sha256:" + "0" * 64)
    except Exception as error:
        problems.append(f"blob store: {type(error).__name__}")
    if problems:
        return JSONResponse(
            {"code": "unavailable", "message": "not ready: " + "; ".join(problems) + "."},
            status_code=503,
        )
    return {"status": "ready"}


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(request: Request) -> PlainTextResponse:
    return PlainTextResponse(request.app.state.metrics.render())


@router.get("/api/v1/whoami")
def whoami(who: PrincipalDep) -> dict[str, Any]:
    return {
        "name": who.name,
        "role": who.role.label,
        "grants": {model: role.label for model, role in who.grants.items()},
    }
