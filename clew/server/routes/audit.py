"""The audit chain: entries by target, and a full verification."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Query

from clew.server.deps import ServicesDep
from clew.server.routes.models import PlainRoute
from clew.service import audit, record_check

router = APIRouter(prefix="/api/v1/audit", tags=["audit"], route_class=PlainRoute)


@router.get("")
def entries(
    services: ServicesDep,
    target: Annotated[str | None, Query(max_length=400)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[dict[str, Any]]:
    return [asdict(entry) for entry in audit.entries(services.store, target, limit)]


@router.get("/verify")
def verify(services: ServicesDep) -> dict[str, Any]:
    checked, broken = audit.verify_chain(services.store)
    rows, problems = record_check.verify_records(services.store)
    return {
        "checked": checked,
        "ok": broken is None and not problems,
        "break": asdict(broken) if broken else None,
        "rows_checked": rows,
        "row_problems": [asdict(problem) for problem in problems],
    }
