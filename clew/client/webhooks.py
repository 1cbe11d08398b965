"""Webhooks through the SDK: subscriptions, the delivery log and delivering, on either backend.

``Client`` gets these methods from ``WebhooksMixin``; the module functions below call the
default client, as ``clew.add_webhook(...)`` does. ``verify_webhook`` is for the receiving side
and needs no store at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from clew.domain import webhooks as hooks
from clew.domain.webhooks import Delivery, Subscription

if TYPE_CHECKING:
    import pandas as pd

    from clew.client.client import Client
    from clew.service.protocols import Backend

__all__ = [
    "add_webhook",
    "deliver_webhooks",
    "remove_webhook",
    "verify_webhook",
    "webhook_deliveries",
    "webhooks",
]

SUBSCRIPTION_COLUMNS = [field.name for field in fields(Subscription)]
DELIVERY_COLUMNS = [field.name for field in fields(Delivery)]


class WebhooksMixin:
    """Webhook subscriptions and deliveries (see docs/webhooks.md); admins only on a server."""

    if TYPE_CHECKING:
        _service: Backend

        @property
        def actor(self) -> str: ...

    def add_webhook(
        self, url: str, *, model: str | None = None, kinds: Sequence[str] = ()
    ) -> dict[str, Any]:
        """Subscribe ``url`` to ``model``'s registry events (every model's when None) of
        ``kinds`` (every kind when empty), from the next event on. The result's ``secret``
        signs every delivery and is shown this once: store it with the receiver."""
        return self._service.webhooks.add(url, self.actor, model=model, kinds=kinds).to_dict()

    def webhooks(self, *, removed: bool = False) -> pd.DataFrame:
        """Subscriptions, oldest first, one row each (removed ones too with ``removed``)."""
        import pandas as pd

        found = self._service.webhooks.list_subscriptions(removed)
        return pd.DataFrame([item.to_dict() for item in found], columns=SUBSCRIPTION_COLUMNS)

    def remove_webhook(self, subscription_id: str) -> dict[str, Any]:
        """Stop a subscription; deliveries not yet sent are cancelled (audited)."""
        return self._service.webhooks.remove(subscription_id, self.actor).to_dict()

    def webhook_deliveries(
        self, subscription_id: str | None = None, *, status: str | None = None, limit: int = 100
    ) -> pd.DataFrame:
        """The delivery log, newest event first: status, attempts, next attempt, last answer."""
        import pandas as pd

        found = self._service.webhooks.deliveries(subscription_id, status, limit)
        return pd.DataFrame([item.to_dict() for item in found], columns=DELIVERY_COLUMNS)

    def deliver_webhooks(self, limit: int = 1000) -> dict[str, int]:
        """Queue new events and send what is due now (for cron next to an embedded store;
        a server's own deliverer does this every few seconds)."""
        return self._service.webhooks.deliver(limit).to_dict()


def verify_webhook(
    secret: str, body: bytes, signature: str | None, *, tolerance_s: int = hooks.TOLERANCE_S
) -> dict[str, Any]:
    """The delivered document, once the ``Clew-Signature`` header proves ``body`` (the raw
    request body) was signed with ``secret`` within ``tolerance_s`` seconds; else
    ``InvalidInputError`` in one sentence."""
    return hooks.verify(secret, body, signature, tolerance_s=tolerance_s)


def add_webhook(url: str, **options: Any) -> dict[str, Any]:
    return _client().add_webhook(url, **options)


def webhooks(*, removed: bool = False) -> pd.DataFrame:
    return _client().webhooks(removed=removed)


def remove_webhook(subscription_id: str) -> dict[str, Any]:
    return _client().remove_webhook(subscription_id)


def webhook_deliveries(subscription_id: str | None = None, **options: Any) -> pd.DataFrame:
    return _client().webhook_deliveries(subscription_id, **options)


def deliver_webhooks(limit: int = 1000) -> dict[str, int]:
    return _client().deliver_webhooks(limit)


def _client() -> Client:
    from clew.client.default import get_client

    return get_client()
