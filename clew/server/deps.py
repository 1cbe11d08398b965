"""What a route receives: the app's ``ServiceContainer`` and the authenticated actor's name."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from clew.server.auth import principal_of
from clew.service.accounts import Principal
from clew.service.container import ServiceContainer

# The dependencies below only read the request, so they are ``async``: FastAPI runs a plain
# ``def`` dependency in a worker thread, and that hop cost more CPU than the lookup it wraps on
# every route (benchmarks/profile_request.py --threads).


async def services(request: Request) -> ServiceContainer:
    """The services ``create_app`` built once for the app (``app.state.services``)."""
    services: ServiceContainer = request.app.state.services
    return services


async def actor(request: Request) -> str:
    """The authenticated user's name: the only actor a server-side write is attributed to."""
    return principal_of(request).name


async def principal(request: Request) -> Principal:
    """The authenticated caller (``auth.principal_of``, which sync UI code calls directly)."""
    return principal_of(request)


ServicesDep = Annotated[ServiceContainer, Depends(services)]
ActorDep = Annotated[str, Depends(actor)]
PrincipalDep = Annotated[Principal, Depends(principal)]
