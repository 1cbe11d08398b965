"""Webhooks as values: subscriptions, deliveries, the payload, its signature and the retry clock.

A delivery is a JSON body signed like Stripe's and GitHub's webhooks: the header
``Clew-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`` under the
subscription's secret. A receiver recomputes the HMAC over the raw body, compares in constant
time and refuses a timestamp too far from its clock (a replayed old delivery); ``verify`` here
does exactly that, and docs/webhooks.md shows the same in a dozen lines of standard library.
Everything in this module is pure, so the receiver side needs nothing but this file.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from clew.domain.records import ms_to_iso
from clew.errors import InvalidInputError

SIGNATURE_HEADER = "Clew-Signature"
DELIVERY_HEADER = "Clew-Delivery"
EVENT_HEADER = "Clew-Event"
ATTEMPT_HEADER = "Clew-Delivery-Attempt"
IDEMPOTENCY_HEADER = "Idempotency-Key"
TOLERANCE_S = 300
SECRET_PREFIX = "whsec_"

PENDING, DELIVERED, FAILED, CANCELLED = "pending", "delivered", "failed", "cancelled"
STATUSES = (PENDING, DELIVERED, FAILED, CANCELLED)

# Registry event kinds are short snake_case words (``registered``, ``alias_set``, ``violation``);
# any kind the store writes is deliverable, including ones added after a subscription was made.
_KIND = re.compile(r"^[a-z][a-z_]{0,19}$")
_SIGNATURE = re.compile(r"^t=(\d{1,12}),v1=([0-9a-f]{64})$")


@dataclass(frozen=True)
class Subscription:
    """Who is told about which events: one model's (``model``) or every model's (None), of
    ``kinds`` (empty: every kind). Never holds the secret."""

    id: str
    url: str
    model: str | None
    kinds: tuple[str, ...]
    created_ms: int
    created_by: str
    deleted_ms: int | None = None
    deleted_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "kinds": list(self.kinds)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Subscription:
        return cls(**{**data, "kinds": tuple(data["kinds"])})


@dataclass(frozen=True)
class NewSubscription:
    """A subscription just made and its HMAC ``secret``, shown this once and never again."""

    subscription: Subscription
    secret: str

    def to_dict(self) -> dict[str, Any]:
        return {**self.subscription.to_dict(), "secret": self.secret}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NewSubscription:
        fields = {key: value for key, value in data.items() if key != "secret"}
        return cls(Subscription.from_dict(fields), data["secret"])


@dataclass(frozen=True)
class Delivery:
    """One event for one subscription, as the delivery log shows it."""

    id: str
    subscription_id: str
    event_id: str
    event_seq: int
    kind: str
    status: str
    attempts: int
    next_attempt_ms: int | None
    last_status_code: int | None
    last_error: str | None
    created_ms: int
    delivered_ms: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DeliveryReport:
    """What one ``deliver`` pass did: deliveries queued, sent with a 2xx, failed this time
    (to be retried) and given up on."""

    queued: int = 0
    delivered: int = 0
    retrying: int = 0
    gave_up: int = 0

    def __add__(self, other: DeliveryReport) -> DeliveryReport:
        return DeliveryReport(
            self.queued + other.queued,
            self.delivered + other.delivered,
            self.retrying + other.retrying,
            self.gave_up + other.gave_up,
        )

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class Backoff:
    """Retry timing: attempt ``n`` failed, so wait about ``base_s * 2**(n-1)`` (at most
    ``cap_s``), half of it fixed and half random, so receivers coming back from an outage are
    not hit by every deliverer at the same instant; give up after ``max_attempts``."""

    base_s: float = 10.0
    cap_s: float = 3600.0
    max_attempts: int = 8

    def delay_ms(self, attempts: int, rng: random.Random | None = None) -> int:
        ceiling = min(self.cap_s, self.base_s * 2 ** max(attempts - 1, 0))
        jitter = (rng or random).uniform(0, ceiling / 2)
        return int((ceiling / 2 + jitter) * 1000)


def check_kinds(kinds: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The kinds a subscription filters on, checked and de-duplicated in the given order."""
    for kind in kinds:
        if not isinstance(kind, str) or not _KIND.match(kind):
            raise InvalidInputError(
                f"event kind {kind!r} is not a registry event kind; use words such as "
                "registered, approved, rejected, revoked, archived, alias_set, alias_rollback "
                "or violation."
            )
    return tuple(dict.fromkeys(kinds))


def payload(
    event: Mapping[str, Any], model: str, *, delivery_id: str, subscription_id: str
) -> dict[str, Any]:
    """The JSON document a subscriber receives for one registry event."""
    return {
        "delivery": delivery_id,
        "subscription": subscription_id,
        "event": {
            "id": event["id"],
            "seq": event["seq"],
            "kind": event["kind"],
            "model": model,
            "version": event["version"],
            "alias": event["alias"],
            "from_version": event["from_version"],
            "actor": event["actor"],
            "time_ms": event["time_ms"],
            "time": ms_to_iso(event["time_ms"]),
            "comment": event["comment"],
            "evidence": json.loads(event["evidence"] or "{}"),
        },
    }


def body(document: Mapping[str, Any]) -> bytes:
    """The exact bytes sent and signed: compact, key-sorted JSON."""
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def sign(secret: str, raw_body: bytes, timestamp: int) -> str:
    """The ``Clew-Signature`` header value for ``raw_body`` sent at ``timestamp`` (seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + raw_body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(
    secret: str,
    raw_body: bytes,
    header: str | None,
    *,
    tolerance_s: int = TOLERANCE_S,
    now: float | None = None,
) -> dict[str, Any]:
    """The delivered document, once ``header`` proves ``raw_body`` came from clew recently;
    raises ``InvalidInputError`` (one sentence) for a missing, malformed, wrong or stale one."""
    found = _SIGNATURE.match(header or "")
    if found is None:
        raise InvalidInputError(
            f"the {SIGNATURE_HEADER} header is missing or malformed; expect t=<seconds>,v1=<hex>."
        )
    timestamp = int(found.group(1))
    expected = sign(secret, raw_body, timestamp).split("v1=", 1)[1]
    if not hmac.compare_digest(expected, found.group(2)):
        raise InvalidInputError(
            "the webhook signature does not match the body; check the subscription's secret."
        )
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        raise InvalidInputError(
            f"the webhook was signed at {timestamp}, more than {tolerance_s} s from now; "
            "refusing a replayed or delayed delivery."
        )
    document: dict[str, Any] = json.loads(raw_body)
    return document
