"""The model registry: models, versions, resolution, approvals (e-signatures) and promotion.

Approvals and rejections are electronic signatures: besides the API token they need the
caller's separate signing token (checked by ``auth``), and the approval records its meaning
("approved", "reviewed"...). The approval policy and separation of duties are applied by the
services to the authenticated user, never to a name in the request.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from pydantic import Field

from clew.domain.keys import SignedStatement
from clew.domain.policy import StoredPolicy
from clew.domain.records import ModelRecord, RegistryEvent, VersionRecord
from clew.domain.roles import Role
from clew.server.auth import require_role_on
from clew.server.deps import ActorDep, PrincipalDep, ServicesDep
from clew.server.routes.bodies import Body, JsonObject, Name, PlainRoute, Text

router = APIRouter(prefix="/api/v1", tags=["registry"], route_class=PlainRoute)

Version = Annotated[int, Field(ge=1, le=2**31)]
Refs = Annotated[list[Annotated[str, Field(max_length=400)]], Field(max_length=100)]
RefQuery = Annotated[str, Query(min_length=1, max_length=400)]


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


class Signed(Body):
    """A user's Ed25519 signature over the statement ``/statement`` prepared."""

    public_key: Annotated[str, Field(max_length=1_000)]
    signed_ms: Annotated[int, Field(ge=0, le=2**62)]
    signature: Annotated[str, Field(max_length=200)]

    def statement(self) -> SignedStatement:
        return SignedStatement(self.public_key, self.signed_ms, self.signature)


def _signed(body: Signed | None) -> SignedStatement | None:
    return None if body is None else body.statement()


class Signature(Body):
    comment: Text
    evidence: Refs = Field(default_factory=list)
    meaning: Annotated[str, Field(max_length=40)] = "approved"
    signed: Signed | None = None


class Rejection(Body):
    comment: Text
    evidence: Refs = Field(default_factory=list)
    signed: Signed | None = None


class Revocation(Body):
    comment: Text
    signed: Signed | None = None


class Promotion(Body):
    version: Version
    comment: Text = ""
    new_alias: bool = False  # create an alias the model never had (else refused as a typo)
    signed: Signed | None = None


class Prepare(Body):
    decision: Annotated[str, Field(max_length=20)]
    comment: Text = ""
    evidence: Refs = Field(default_factory=list)
    meaning: Annotated[str, Field(max_length=40)] | None = None
    alias: Name | None = None


class KeyRegistration(Body):
    user: Annotated[str, Field(min_length=1, max_length=100)]
    public_key: Annotated[str, Field(max_length=1_000)]


class Decision(Body):
    comment: Text


class Rollback(Body):
    comment: Text = ""


class PolicyDocument(Body):
    document: Annotated[str, Field(max_length=200_000)]


def model_wire(model: ModelRecord) -> dict[str, Any]:
    """``to_dict`` plus the exact millisecond times, so the SDK rebuilds identical records."""
    return {**model.to_dict(), "created_ms": model.created_ms}


def version_wire(version: VersionRecord) -> dict[str, Any]:
    return {**version.to_dict(), "model_id": version.model_id, "created_ms": version.created_ms}


def event_wire(event: RegistryEvent) -> dict[str, Any]:
    return {**event.to_dict(), "time_ms": event.time_ms}


def policy_wire(stored: StoredPolicy) -> dict[str, Any]:
    return {**stored.to_dict(), "created_ms": stored.created_ms}


@router.post("/models", status_code=201)
def create_model(
    body: CreateModel, services: ServicesDep, actor: ActorDep, principal: PrincipalDep
) -> dict[str, Any]:
    require_role_on(principal, body.name, Role.CONTRIBUTOR)  # a scoped contributor's models
    fields = body.model_dump()
    name = fields.pop("name")
    return model_wire(services.registry.create_model(name, actor, **fields))


@router.get("/models")
def list_models(services: ServicesDep) -> list[dict[str, Any]]:
    return [model_wire(model) for model in services.registry.list_models()]


@router.get("/models/{name}")
def get_model(name: Name, services: ServicesDep) -> dict[str, Any]:
    return model_wire(services.registry.get_model(name))


@router.post("/models/{name}/versions", status_code=201)
def register(name: Name, body: Register, services: ServicesDep, actor: ActorDep) -> dict[str, Any]:
    fields = body.model_dump()
    source = fields.pop("source")
    return version_wire(services.registry.register(name, source, actor, **fields))


@router.get("/models/{name}/versions")
def versions(name: Name, services: ServicesDep) -> list[dict[str, Any]]:
    return [version_wire(version) for version in services.registry.versions(name)]


@router.get("/resolve")
def resolve(ref: RefQuery, services: ServicesDep) -> dict[str, Any]:
    """``churn@production`` or ``churn/3`` → the version (the hot path of model serving)."""
    return version_wire(services.registry.resolve(ref))


@router.get("/loadable")
def loadable(ref: RefQuery, services: ServicesDep) -> dict[str, Any]:
    """The version ``ref`` names if it may be loaded (refused when rejected or revoked)."""
    return version_wire(services.approvals.loadable(ref))


@router.get("/version-status")
def version_status(ref: RefQuery, services: ServicesDep) -> dict[str, Any]:
    return services.promotion.version_status(ref)


@router.get("/models-overview")
def models_overview(services: ServicesDep) -> list[dict[str, Any]]:
    return services.promotion.model_overview()


@router.get("/models/{name}/versions-overview")
def versions_overview(name: Name, services: ServicesDep) -> list[dict[str, Any]]:
    return services.promotion.version_overview(name)


@router.post("/models/{name}/versions/{version}/approve", status_code=201)
def approve(
    name: Name, version: Version, body: Signature, services: ServicesDep, actor: ActorDep
) -> dict[str, Any]:
    event = services.approvals.approve(
        f"{name}/{version}",
        actor,
        body.comment,
        evidence=body.evidence,
        meaning=body.meaning,
        signed=_signed(body.signed),
    )
    return event_wire(event)


@router.post("/models/{name}/versions/{version}/reject", status_code=201)
def reject(
    name: Name, version: Version, body: Rejection, services: ServicesDep, actor: ActorDep
) -> dict[str, Any]:
    event = services.approvals.reject(
        f"{name}/{version}",
        actor,
        body.comment,
        evidence=body.evidence,
        signed=_signed(body.signed),
    )
    return event_wire(event)


@router.post("/models/{name}/aliases/{alias}", status_code=201)
def promote(
    name: Name, alias: Name, body: Promotion, services: ServicesDep, actor: ActorDep
) -> dict[str, Any]:
    event = services.promotion.promote(
        f"{name}/{body.version}",
        alias,
        actor,
        body.comment,
        body.new_alias,
        signed=_signed(body.signed),
    )
    return event_wire(event)


@router.post("/models/{name}/versions/{version}/revoke", status_code=201)
def revoke(
    name: Name, version: Version, body: Revocation, services: ServicesDep, actor: ActorDep
) -> dict[str, Any]:
    event = services.approvals.revoke(
        f"{name}/{version}", actor, body.comment, signed=_signed(body.signed)
    )
    return event_wire(event)


@router.post("/models/{name}/versions/{version}/statement")
def statement(
    name: Name, version: Version, body: Prepare, services: ServicesDep, actor: ActorDep
) -> dict[str, Any]:
    """The statement the caller signs for a decision, with the server's time in it."""
    return services.approvals.statement(
        f"{name}/{version}",
        body.decision,
        actor,
        body.comment,
        evidence=body.evidence,
        meaning=body.meaning,
        alias=body.alias,
    )


@router.post("/user-keys", status_code=201)
def register_user_key(
    body: KeyRegistration, services: ServicesDep, actor: ActorDep
) -> dict[str, Any]:
    """Register a user's public signing key (admins only, see permissions)."""
    return services.user_keys.register(body.user, body.public_key, actor).to_dict()


@router.get("/user-keys")
def list_user_keys(
    services: ServicesDep, user: Annotated[str | None, Query(max_length=100)] = None
) -> list[dict[str, Any]]:
    return [key.to_dict() for key in services.user_keys.list_keys(user)]


@router.post("/user-keys/{key_id}/revoke", status_code=201)
def revoke_user_key(
    key_id: Annotated[str, PathParam(max_length=80)], services: ServicesDep, actor: ActorDep
) -> dict[str, Any]:
    """Revoke a key from now on (admins only, see permissions); earlier signatures stay valid."""
    return services.user_keys.revoke(key_id, actor).to_dict()


@router.post("/models/{name}/versions/{version}/archive", status_code=201)
def archive(
    name: Name, version: Version, body: Decision, services: ServicesDep, actor: ActorDep
) -> dict[str, Any]:
    event = services.approvals.archive(f"{name}/{version}", actor, body.comment)
    return event_wire(event)


@router.post("/models/{name}/aliases/{alias}/rollback", status_code=201)
def rollback(
    name: Name, alias: Name, body: Rollback, services: ServicesDep, actor: ActorDep
) -> dict[str, Any]:
    event = services.promotion.rollback(name, alias, actor, body.comment)
    return event_wire(event)


@router.get("/models/{name}/history")
def model_history(
    name: Name,
    services: ServicesDep,
    alias: Annotated[str | None, Query(min_length=1, max_length=250)] = None,
    aliases_only: bool = False,
) -> list[dict[str, Any]]:
    """Every event of the model, newest first; ``aliases_only`` keeps alias moves (of ``alias``)."""
    promotion = services.promotion
    if aliases_only or alias is not None:
        events = promotion.alias_history(name, alias)
    else:
        events = promotion.model_history(name)
    return [event_wire(event) for event in events]


@router.get("/models/{name}/aliases/{alias}/at")
def alias_at(
    name: Name, alias: Name, when_ms: Annotated[int, Query(ge=0, le=2**62)], services: ServicesDep
) -> dict[str, Any] | None:
    """The version ``name@alias`` pointed at at ``when_ms`` (null: it pointed nowhere yet)."""
    found = services.promotion.alias_at(name, alias, when_ms)
    return None if found is None else version_wire(found)


@router.get("/policy")
def get_policy(services: ServicesDep) -> dict[str, Any]:
    return policy_wire(services.policies.get_policy())


@router.post("/policy", status_code=201)
def set_policy(body: PolicyDocument, services: ServicesDep, actor: ActorDep) -> dict[str, Any]:
    return {"version": services.policies.set_policy(body.document, actor)}
