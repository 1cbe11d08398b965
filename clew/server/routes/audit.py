"""The audit chain: entries by target, actor or action, and a full verification."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from clew.domain.audit import Checkpoint
from clew.server.deps import ServicesDep
from clew.server.routes.bodies import PlainRoute
from clew.service import audit, signed_heads
from clew.service.verification import verify_audit

_BIGGEST = 2**63 - 1  # a database integer: larger ones are refused as input, never a 500
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


@router.post("/checkpoints")
def sign_checkpoints(services: ServicesDep) -> list[dict[str, Any]]:
    """Sign the chain head (at most one new checkpoint per new head) and return every signed
    checkpoint; the client writes its export where it chooses, never the server."""
    signed_heads.sign_head(services.store)
    return [asdict(checkpoint) for checkpoint in signed_heads.checkpoints(services.store)]


class ExportedCheckpoint(BaseModel):
    seq: int = Field(ge=1, le=_BIGGEST)
    hash: str = Field(max_length=100)
    time_ms: int = Field(ge=0, le=_BIGGEST)
    key_id: str = Field(max_length=200)
    signature: str = Field(max_length=200)


class ExportedCheckpoints(BaseModel):
    checkpoints: list[ExportedCheckpoint] = Field(min_length=1, max_length=1_000_000)


@router.post("/checkpoints/verify")
def verify_checkpoints(body: ExportedCheckpoints, services: ServicesDep) -> dict[str, Any]:
    """Check the chain against checkpoints a client read from its own export."""
    found = [Checkpoint(**item.model_dump()) for item in body.checkpoints]
    checked, problems = signed_heads.verify_given(services.store, found)
    return {"checked": checked, "problems": [asdict(problem) for problem in problems]}
