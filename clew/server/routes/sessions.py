"""Web UI sessions for admins: who is signed in where, and ending a session at once."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi import Path as PathParam

from clew.server.deps import ActorDep, ServicesDep
from clew.server.routes.bodies import PlainRoute

router = APIRouter(prefix="/api/v1/sessions", tags=["sessions"], route_class=PlainRoute)


@router.get("")
def list_sessions(
    services: ServicesDep,
    user: Annotated[str | None, Query(max_length=100)] = None,
    ended: bool = False,
) -> list[dict[str, Any]]:
    """Sessions (of ``user``), newest first; ended ones too with ``ended`` (admins only)."""
    found = services.sessions.list_sessions(user, ended)
    return [info.to_dict() for info in found]


@router.post("/{session_id}/revoke", status_code=201)
def revoke_session(
    session_id: Annotated[str, PathParam(max_length=26)], services: ServicesDep, actor: ActorDep
) -> dict[str, Any]:
    """End a session on every replica at once (admins only, see permissions)."""
    return services.sessions.revoke(session_id, actor).to_dict()
