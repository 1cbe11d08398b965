"""What a route receives: the opened services and the authenticated actor's name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from clew.server.auth import principal_of
from clew.service.accounts import Principal
from clew.service.artifacts import ArtifactService
from clew.service.lineage import LineageService
from clew.service.runs import RunService
from clew.store.location import Store


@dataclass
class Services:
    store: Store
    runs: RunService
    artifacts: ArtifactService
    lineage: LineageService

    @classmethod
    def open(cls, store: Store) -> Services:
        return cls(store, RunService(store), ArtifactService(store), LineageService(store))


# The dependencies below only read the request, so they are ``async``: FastAPI runs a plain
# ``def`` dependency in a worker thread, and that hop cost more CPU than the lookup it wraps on
# every route (benchmarks/profile_request.py --threads).


async def services(request: Request) -> Services:
    return request.app.state.services


async def actor(request: Request) -> str:
    """The authenticated user's name: the only actor a server-side write is attributed to."""
    return principal_of(request).name


async def principal(request: Request) -> Principal:
    """The authenticated caller (``auth.principal_of``, which sync UI code calls directly)."""
    return principal_of(request)


ServicesDep = Annotated[Services, Depends(services)]
ActorDep = Annotated[str, Depends(actor)]
PrincipalDep = Annotated[Principal, Depends(principal)]
