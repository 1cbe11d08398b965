"""Webhook subscriptions and their delivery log, for admins (see permissions)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from pydantic import Field

from clew.server.deps import ActorDep, ServicesDep
from clew.server.routes.bodies import Body, Name, PlainRoute

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"], route_class=PlainRoute)

Kind = Annotated[str, Field(max_length=20)]


class AddWebhook(Body):
    url: Annotated[str, Field(min_length=1, max_length=2000)]
    model: Name | None = None
    kinds: Annotated[list[Kind], Field(max_length=50)] = Field(default_factory=list)


@router.post("", status_code=201)
def add_webhook(body: AddWebhook, services: ServicesDep, actor: ActorDep) -> dict[str, Any]:
    """Subscribe a URL; the answer holds the HMAC secret, shown this once."""
    added = services.webhooks.add(body.url, actor, model=body.model, kinds=body.kinds)
    return added.to_dict()


@router.get("")
def list_webhooks(services: ServicesDep, removed: bool = False) -> list[dict[str, Any]]:
    """Subscriptions, oldest first (never their secrets)."""
    return [found.to_dict() for found in services.webhooks.list_subscriptions(removed)]


@router.get("/deliveries")
def list_deliveries(
    services: ServicesDep,
    subscription: Annotated[str | None, Query(max_length=26)] = None,
    status: Annotated[str | None, Query(max_length=12)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """The delivery log, newest event first."""
    found = services.webhooks.deliveries(subscription, status, limit)
    return [delivery.to_dict() for delivery in found]


@router.post("/deliver")
def deliver_now(
    services: ServicesDep, limit: Annotated[int, Query(ge=1, le=10_000)] = 1000
) -> dict[str, int]:
    """Queue new events and send what is due now, in this request."""
    return services.webhooks.deliver(limit).to_dict()


@router.delete("/{subscription_id}")
def remove_webhook(
    subscription_id: Annotated[str, PathParam(max_length=26)],
    services: ServicesDep,
    actor: ActorDep,
) -> dict[str, Any]:
    """Stop a subscription; its pending deliveries are cancelled (audited)."""
    return services.webhooks.remove(subscription_id, actor).to_dict()
