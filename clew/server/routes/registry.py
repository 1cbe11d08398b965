"""The model registry: models, versions, resolution, approvals (e-signatures) and promotion.

Approvals and rejections are electronic signatures: besides the API token they need the
caller's separate signing token (checked by ``auth``), and the approval records its meaning
("approved", "reviewed"...). The approval policy and separation of duties are applied by the
services to the authenticated user, never to a name in the request.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import Field

from clew.server.deps import ActorDep, ServicesDep
from clew.server.routes.models import Body, JsonObject, Name, PlainRoute, Text
from clew.service.approvals import ApprovalService
from clew.service.promotion import PromotionService
from clew.service.registry import RegistryService

router = APIRouter(prefix="/api/v1", tags=["registry"], route_class=PlainRoute)

Version = Annotated[int, Field(ge=1, le=2**31)]
Refs = Annotated[list[Annotated[str, Field(max_length=400)]], Field(max_length=100)]


class CreateModel(Body):
    name: Name
    owner: Name | None = None
    description: Text = ""
    risk_tier: Annotated[str, Field(max_length=40)] | None = None
    tags: JsonObject = Field(default_factory=dict)


class Register(Body):
    source: Annotated[str, Field(min_length=1, max_length=400)]
    description: Text = ""
    signature: JsonObject | None = None
    owner: Name | None = None
    risk_tier: Annotated[str, Field(max_length=40)] | None = None
    tags: JsonObject = Field(default_factory=dict)


class Signature(Body):
    comment: Text
    evidence: Refs = Field(default_factory=list)
    meaning: Annotated[str, Field(max_length=40)] = "approved"


class Rejection(Body):
    comment: Text
    evidence: Refs = Field(default_factory=list)


class Promotion(Body):
    version: Version
    comment: Text = ""


def _registry(services: ServicesDep) -> RegistryService:
    return RegistryService(services.store)


@router.post("/models", status_code=201)
def create_model(body: CreateModel, services: ServicesDep, actor: ActorDep) -> dict[str, Any]:
    fields = body.model_dump()
    name = fields.pop("name")
    return _registry(services).create_model(name, actor, **fields).to_dict()


@router.get("/models")
def list_models(services: ServicesDep) -> list[dict[str, Any]]:
    return [model.to_dict() for model in _registry(services).list_models()]


@router.get("/models/{name}")
def get_model(name: Name, services: ServicesDep) -> dict[str, Any]:
    return _registry(services).get_model(name).to_dict()


@router.post("/models/{name}/versions", status_code=201)
def register(name: Name, body: Register, services: ServicesDep, actor: ActorDep) -> dict[str, Any]:
    fields = body.model_dump()
    source = fields.pop("source")
    return _registry(services).register(name, source, actor, **fields).to_dict()


@router.get("/models/{name}/versions")
def versions(name: Name, services: ServicesDep) -> list[dict[str, Any]]:
    return [version.to_dict() for version in _registry(services).versions(name)]


@router.get("/resolve")
def resolve(
    ref: Annotated[str, Query(min_length=1, max_length=400)], services: ServicesDep
) -> dict[str, Any]:
    """``churn@production`` or ``churn/3`` → the version (the hot path of model serving)."""
    return _registry(services).resolve(ref).to_dict()


@router.post("/models/{name}/versions/{version}/approve", status_code=201)
def approve(
    name: Name, version: Version, body: Signature, services: ServicesDep, actor: ActorDep
) -> dict[str, Any]:
    event = ApprovalService(services.store).approve(
        f"{name}/{version}", actor, body.comment, evidence=body.evidence, meaning=body.meaning
    )
    return event.to_dict()


@router.post("/models/{name}/versions/{version}/reject", status_code=201)
def reject(
    name: Name, version: Version, body: Rejection, services: ServicesDep, actor: ActorDep
) -> dict[str, Any]:
    event = ApprovalService(services.store).reject(
        f"{name}/{version}", actor, body.comment, evidence=body.evidence
    )
    return event.to_dict()


@router.post("/models/{name}/aliases/{alias}", status_code=201)
def promote(
    name: Name, alias: Name, body: Promotion, services: ServicesDep, actor: ActorDep
) -> dict[str, Any]:
    event = PromotionService(services.store).promote(
        f"{name}/{body.version}", alias, actor, body.comment
    )
    return event.to_dict()
