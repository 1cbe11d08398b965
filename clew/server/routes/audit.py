"""The audit chain: entries by target, actor or action, and a full verification."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Query

from clew.server.deps import ServicesDep
from clew.server.routes.models import PlainRoute
from clew.service import audit
from clew.service.verification import verify_audit

router = APIRouter(prefix="/api/v1/audit", tags=["audit"], route_class=PlainRoute)


@router.get("")
def entries(
    services: ServicesDep,
    target: Annotated[str | None, Query(max_length=400)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    actor: Annotated[str | None, Query(max_length=400)] = None,
    action: Annotated[str | None, Query(max_length=200)] = None,
) -> list[dict[str, Any]]:
    found = audit.entries(services.store, target, limit, actor=actor, action=action)
    return [asdict(entry) for entry in found]


@router.get("/verify")
def verify(services: ServicesDep) -> dict[str, Any]:
    """The chain, the records, the store's signed checkpoints and the capture batches
    (``ok`` covers all four); ``checked``, ``break`` are the older names of the chain's part."""
    report = verify_audit(services.store)
    return {
        **report.to_wire(),
        "checked": report.entries_checked,
        "break": asdict(report.first_break) if report.first_break else None,
    }
