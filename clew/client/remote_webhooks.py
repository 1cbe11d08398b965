"""``WebhookService`` over HTTP: a server's webhook subscriptions and delivery log (admins)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from clew.client.transport import encode_json, path_segment
from clew.domain.webhooks import Delivery, DeliveryReport, NewSubscription, Subscription

if TYPE_CHECKING:
    from clew.client.transport import Transport


class RemoteWebhooks:
    """Add, list and remove subscriptions, read the delivery log, deliver now; the server
    attributes each write to the token's user, not to ``actor``."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def add(
        self, url: str, actor: str, *, model: str | None = None, kinds: Sequence[str] = ()
    ) -> NewSubscription:
        """Sent without an idempotency key on purpose: the server would keep the answer, which
        holds the secret, to replay it; a lost answer is better re-done (remove, add again)."""
        content = encode_json({"url": url, "model": model, "kinds": list(kinds)})
        response = self._t.send(
            "POST", "/webhooks", lambda: content, headers={"Content-Type": "application/json"}
        )
        return NewSubscription.from_dict(self._t.decode(response))

    def list_subscriptions(self, removed: bool = False) -> list[Subscription]:
        params = {"removed": "true"} if removed else {}
        rows = self._t.call("GET", "/webhooks", params=params)
        return [Subscription.from_dict(row) for row in rows]

    def remove(self, subscription_id: str, actor: str) -> Subscription:
        path = f"/webhooks/{path_segment(subscription_id)}"
        return Subscription.from_dict(self._t.call("DELETE", path))

    def deliveries(
        self, subscription_id: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[Delivery]:
        params: dict[str, Any] = {"limit": limit}
        if subscription_id is not None:
            params["subscription"] = subscription_id
        if status is not None:
            params["status"] = status
        rows = self._t.call("GET", "/webhooks/deliveries", params=params)
        return [Delivery(**row) for row in rows]

    def deliver(self, limit: int = 1000) -> DeliveryReport:
        """Ask the server to deliver what is due now (its background deliverer does anyway)."""
        return DeliveryReport(**self._t.call("POST", "/webhooks/deliver", params={"limit": limit}))
