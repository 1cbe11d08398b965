"""Webhooks: registry and monitoring events delivered to subscribers, signed, retried, logged.

There is one event mechanism: the append-only ``registry_events`` table, which every
registration, approval, rejection, revocation, archiving, alias move, rollback and monitoring
violation is written to, each with the store's next ``seq``. Writers are serialised (the store's
write lock), so ``seq`` grows in commit order and a cursor over it misses nothing: each
subscription keeps ``cursor_seq``, and one transaction turns the events after it into rows of
the delivery log (the outbox) *and* moves the cursor, so a process dying anywhere loses no event
and queues none twice (the log's unique (subscription, event) pair makes sure of the second).

Sending happens outside every transaction (nothing waits on a network while holding the store's
lock): a deliverer leases due rows in a short transaction (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL; the lease is what keeps several deliverers — server replicas, cron — off each
other's rows), sends them, and records each answer only if its lease is still its own. A 2xx
marks the delivery delivered for good; anything else is retried with exponential backoff and
jitter until ``Backoff.max_attempts``. A deliverer killed after the receiver answered but before
recording it sends that delivery again once the lease expires, with the same ``Clew-Delivery`` /
``Idempotency-Key``, so receivers drop the duplicate.

An event row that the audit chain does not vouch for (written into the database behind clew's
back) is never sent: its delivery is logged as failed, saying why. A forged ``approved`` must not
start a deployment.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, select, update

from clew.domain import ids
from clew.domain import webhooks as hooks
from clew.domain.webhooks import Backoff, Delivery, DeliveryReport, NewSubscription, Subscription
from clew.errors import ClewError, ConflictError, InvalidInputError, NotFoundError
from clew.service import audit, policy, record_check
from clew.service.registry import get_model_row
from clew.service.runs import now_ms
from clew.service.webhook_secrets import SecretBox
from clew.store import schema
from clew.store.location import Store
from clew.store.metadata import mark_durable

if TYPE_CHECKING:
    import httpx

    from clew.service.outbound import AllowList

SUBSCRIPTIONS, DELIVERIES, EVENTS = (
    schema.webhook_subscriptions,
    schema.webhook_deliveries,
    schema.registry_events,
)
FAN_OUT_BATCH = 1000
CLAIM_BATCH = 10
MAX_LIST = 1000
_ERROR_CHARS = 500
DEFAULT_BACKOFF = Backoff()


@dataclass(frozen=True)
class _Claimed:
    """A leased delivery with what sending it needs."""

    id: str
    lease_id: str
    attempts: int
    subscription_id: str
    url: str
    secret_box: str
    key_id: str
    event: Mapping[str, Any]
    model: str


@dataclass(frozen=True)
class _Outcome:
    status_code: int | None
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class WebhookService:
    """Subscriptions (admins), the delivery log, and delivering what is due."""

    def __init__(
        self,
        store: Store,
        *,
        allowed: AllowList | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
        timeout_s: float = 10.0,
    ) -> None:
        self.store = store
        self.allowed = allowed
        self.backoff = backoff
        self.timeout_s = timeout_s

    # --- subscriptions --------------------------------------------------------------------

    def add(
        self, url: str, actor: str, *, model: str | None = None, kinds: Sequence[str] = ()
    ) -> NewSubscription:
        """Subscribe ``url`` to ``model``'s events (every model's when None) of ``kinds`` (all
        when empty), from the next event on; the secret is returned this once (audited)."""
        from clew.service import outbound

        checked_kinds = hooks.check_kinds(list(kinds))
        checked_url = outbound.check_url(url, self._allowed())
        box = SecretBox.for_store(self.store)
        created = now_ms()
        secret = hooks.SECRET_PREFIX + secrets.token_urlsafe(32)
        subscription_id = ids.new_id()
        with self.store.db.write() as connection:
            _require_admin(connection, actor, "add a webhook")
            model_id = None if model is None else get_model_row(connection, name=model).id
            row = {
                "id": subscription_id,
                "url": checked_url,
                "model_id": model_id,
                "kinds": json.dumps(list(checked_kinds)),
                "secret_box": box.seal(secret, subscription_id),
                "key_id": box.key_id,
                "cursor_seq": _newest_seq(connection),
                "created_ms": created,
                "created_by": actor,
                "deleted_ms": None,
                "deleted_by": None,
            }
            connection.execute(SUBSCRIPTIONS.insert().values(**row))
            audit.stage(connection, SUBSCRIPTIONS, row)
            logged = {key: value for key, value in row.items() if key != "secret_box"}
            audit.append(connection, actor, "webhook.add", _target(subscription_id), logged)
            mark_durable(connection)
        subscription = Subscription(
            subscription_id, checked_url, model, checked_kinds, created, actor
        )
        return NewSubscription(subscription, secret)

    def list_subscriptions(self, removed: bool = False) -> list[Subscription]:
        """Subscriptions, oldest first; removed ones too with ``removed``. Never secrets."""
        query = _subscription_query()
        if not removed:
            query = query.where(SUBSCRIPTIONS.c.deleted_ms.is_(None))
        with self.store.db.read() as connection:
            return [_subscription(row) for row in connection.execute(query)]

    def remove(self, subscription_id: str, actor: str) -> Subscription:
        """Stop a subscription: nothing more is queued or sent for it (audited)."""
        with self.store.db.write() as connection:
            _require_admin(connection, actor, "remove a webhook")
            found = _find_subscription(connection, subscription_id)
            if found.deleted_ms is not None:
                raise ConflictError(f"webhook {subscription_id} was already removed.")
            stamp = {"deleted_ms": now_ms(), "deleted_by": actor}
            connection.execute(
                update(SUBSCRIPTIONS).where(SUBSCRIPTIONS.c.id == subscription_id).values(**stamp)
            )
            connection.execute(
                update(DELIVERIES)
                .where(DELIVERIES.c.subscription_id == subscription_id)
                .where(DELIVERIES.c.status == hooks.PENDING)
                .values(status=hooks.CANCELLED, lease_id=None, lease_until_ms=None)
            )
            audit.stage_stored(connection, SUBSCRIPTIONS, {"id": subscription_id})
            audit.append(connection, actor, "webhook.remove", _target(subscription_id), stamp)
            mark_durable(connection)
            return _find_subscription(connection, subscription_id)

    def deliveries(
        self, subscription_id: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[Delivery]:
        """The delivery log, newest event first: status, attempts, next attempt, last answer."""
        if status is not None and status not in hooks.STATUSES:
            raise InvalidInputError(
                f"delivery status {status!r} is not one of {', '.join(hooks.STATUSES)}."
            )
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST:
            raise InvalidInputError(f"limit {limit!r} must be a whole number from 1 to {MAX_LIST}.")
        query = select(DELIVERIES).order_by(DELIVERIES.c.event_seq.desc(), DELIVERIES.c.id)
        if subscription_id is not None:
            query = query.where(DELIVERIES.c.subscription_id == subscription_id)
        if status is not None:
            query = query.where(DELIVERIES.c.status == status)
        with self.store.db.read() as connection:
            return [_delivery(row) for row in connection.execute(query.limit(limit))]

    # --- delivering -----------------------------------------------------------------------

    def deliver(self, limit: int = 1000) -> DeliveryReport:
        """Queue every new event for its subscribers, then send what is due (at most ``limit``
        sends); safe to run from any number of processes at once."""
        from clew.service import outbound

        report = DeliveryReport(queued=self.queue_events())
        sent = 0
        with outbound.client(self.allowed, self.timeout_s) as http:
            while sent < limit:
                claimed = self._claim(min(CLAIM_BATCH, limit - sent))
                if not claimed:
                    break
                for delivery in claimed:
                    report = report + self._record(delivery, self._send(http, delivery))
                sent += len(claimed)
        return report

    def queue_events(self) -> int:
        """Turn the events after each subscription's cursor into deliveries (one transaction
        per batch, cursor moved with it); the number queued."""
        queued = 0
        while self._behind():
            with self.store.db.write() as connection:
                count, more = _fan_out(connection)
            queued += count
            if not more:
                break
        return queued

    def _behind(self) -> bool:
        """Whether any live subscription's cursor is behind the newest event (a cheap read, so
        an idle deliverer takes no write lock)."""
        with self.store.db.read() as connection:
            cursor = connection.execute(
                select(func.min(SUBSCRIPTIONS.c.cursor_seq)).where(
                    SUBSCRIPTIONS.c.deleted_ms.is_(None)
                )
            ).scalar()
            return cursor is not None and _newest_seq(connection) > cursor

    def _claim(self, count: int) -> list[_Claimed]:
        now = now_ms()
        if not self._due(now):
            return []
        lease_id = ids.new_id()
        lease_until = now + int((self.timeout_s * count + 60) * 1000)
        with self.store.db.write() as connection:
            due = connection.execute(_due_query(now).limit(count).with_for_update(skip_locked=True))
            chosen = [row.id for row in due]
            if not chosen:
                return []
            connection.execute(
                update(DELIVERIES)
                .where(DELIVERIES.c.id.in_(chosen))
                .values(
                    lease_id=lease_id,
                    lease_until_ms=lease_until,
                    attempts=DELIVERIES.c.attempts + 1,
                )
            )
            return list(_claimed(connection, chosen, lease_id))

    def _due(self, now: int) -> bool:
        with self.store.db.read() as connection:
            return connection.execute(_due_query(now).limit(1)).first() is not None

    def _send(self, http: httpx.Client, delivery: _Claimed) -> _Outcome:
        try:
            secret = SecretBox.for_store(self.store).open(
                delivery.secret_box, delivery.key_id, delivery.subscription_id
            )
        except ClewError as error:
            return _Outcome(None, str(error))
        document = hooks.payload(
            delivery.event,
            delivery.model,
            delivery_id=delivery.id,
            subscription_id=delivery.subscription_id,
        )
        raw = hooks.body(document)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "clew-webhooks",
            hooks.SIGNATURE_HEADER: hooks.sign(secret, raw, int(time.time())),
            hooks.DELIVERY_HEADER: delivery.id,
            hooks.IDEMPOTENCY_HEADER: delivery.id,
            hooks.EVENT_HEADER: delivery.event["kind"],
            hooks.ATTEMPT_HEADER: str(delivery.attempts),
        }
        return _post(http, delivery.url, raw, headers)

    def _record(self, delivery: _Claimed, outcome: _Outcome) -> DeliveryReport:
        """Write the answer, if this deliverer's lease still holds the row."""
        now = now_ms()
        values: dict[str, Any] = {
            "lease_id": None,
            "lease_until_ms": None,
            "last_status_code": outcome.status_code,
            "last_error": None if outcome.error is None else outcome.error[:_ERROR_CHARS],
        }
        if outcome.delivered:
            values |= {"status": hooks.DELIVERED, "delivered_ms": now}
            report = DeliveryReport(delivered=1)
        elif delivery.attempts >= self.backoff.max_attempts:
            values |= {"status": hooks.FAILED}
            report = DeliveryReport(gave_up=1)
        else:
            values |= {"next_attempt_ms": now + self.backoff.delay_ms(delivery.attempts)}
            report = DeliveryReport(retrying=1)
        with self.store.db.write() as connection:
            connection.execute(
                update(DELIVERIES)
                .where(DELIVERIES.c.id == delivery.id)
                .where(DELIVERIES.c.lease_id == delivery.lease_id)
                .values(**values)
            )
        return report

    def _allowed(self) -> AllowList:
        from clew.service.outbound import AllowList

        return self.allowed if self.allowed is not None else AllowList.from_environment()


def _post(http: httpx.Client, url: str, raw: bytes, headers: Mapping[str, str]) -> _Outcome:
    """One POST; the receiver's answer or why there was none, as a sentence."""
    import httpx

    try:
        with http.stream("POST", url, content=raw, headers=headers) as response:
            code = response.status_code
    except httpx.HTTPError as error:
        return _Outcome(None, f"{type(error).__name__}: {error}")
    if 300 <= code < 400:
        return _Outcome(code, f"answered {code}, a redirect, which clew never follows")
    if not 200 <= code < 300:
        return _Outcome(code, f"answered {code}")
    return _Outcome(code, None)


def _fan_out(connection: Connection) -> tuple[int, bool]:
    """Queue one batch of events for every live subscription and move their cursors; the
    number queued and whether more events wait."""
    subscriptions = list(
        connection.execute(select(SUBSCRIPTIONS).where(SUBSCRIPTIONS.c.deleted_ms.is_(None)))
    )
    if not subscriptions:
        return 0, False
    start = min(row.cursor_seq for row in subscriptions)
    events = list(
        connection.execute(
            select(EVENTS.c.id, EVENTS.c.seq, EVENTS.c.kind, EVENTS.c.model_id)
            .where(EVENTS.c.seq > start)
            .order_by(EVENTS.c.seq)
            .limit(FAN_OUT_BATCH)
        )
    )
    if not events:
        return 0, False
    unvouched = _unvouched(connection, events)
    now = now_ms()
    rows = [
        _delivery_row(subscription, event, unvouched.get(event.id), now)
        for subscription in subscriptions
        for event in events
        if _wanted(subscription, event)
    ]
    if rows:
        connection.execute(DELIVERIES.insert(), rows)
    last = events[-1].seq
    for subscription in subscriptions:
        if subscription.cursor_seq < last:
            connection.execute(
                update(SUBSCRIPTIONS)
                .where(SUBSCRIPTIONS.c.id == subscription.id)
                .values(cursor_seq=last)
            )
    return len(rows), len(events) == FAN_OUT_BATCH


def _wanted(subscription: Any, event: Any) -> bool:
    if event.seq <= subscription.cursor_seq:
        return False
    if subscription.model_id is not None and subscription.model_id != event.model_id:
        return False
    kinds = json.loads(subscription.kinds)
    return not kinds or event.kind in kinds


def _unvouched(connection: Connection, events: Sequence[Any]) -> dict[str, str]:
    """Event id -> why the audit chain does not vouch for that row."""
    problems = record_check.vouch(connection, EVENTS.name, [{"id": event.id} for event in events])
    return {problem.key: problem.describe() for problem in problems}


def _delivery_row(subscription: Any, event: Any, problem: str | None, now: int) -> dict[str, Any]:
    return {
        "id": ids.new_id(),
        "subscription_id": subscription.id,
        "event_id": event.id,
        "event_seq": event.seq,
        "kind": event.kind,
        "status": hooks.PENDING if problem is None else hooks.FAILED,
        "attempts": 0,
        "next_attempt_ms": now,
        "lease_id": None,
        "lease_until_ms": None,
        "last_status_code": None,
        "last_error": None
        if problem is None
        else f"not sent: the audit chain does not vouch for this event ({problem})",
        "created_ms": now,
        "delivered_ms": None,
    }


def _due_query(now: int) -> Any:
    lease = DELIVERIES.c.lease_until_ms
    return (
        select(DELIVERIES.c.id)
        .where(DELIVERIES.c.status == hooks.PENDING)
        .where(DELIVERIES.c.next_attempt_ms <= now)
        .where(lease.is_(None) | (lease < now))
        .order_by(DELIVERIES.c.next_attempt_ms, DELIVERIES.c.id)
    )


def _claimed(connection: Connection, chosen: list[str], lease_id: str) -> Iterator[_Claimed]:
    query = (
        select(
            DELIVERIES.c.id,
            DELIVERIES.c.attempts,
            DELIVERIES.c.subscription_id,
            SUBSCRIPTIONS.c.url,
            SUBSCRIPTIONS.c.secret_box,
            SUBSCRIPTIONS.c.key_id,
            schema.models.c.name.label("model_name"),
            *(column.label(f"event_{column.name}") for column in EVENTS.columns),
        )
        .join(SUBSCRIPTIONS, SUBSCRIPTIONS.c.id == DELIVERIES.c.subscription_id)
        .join(EVENTS, EVENTS.c.id == DELIVERIES.c.event_id)
        .join(schema.models, schema.models.c.id == EVENTS.c.model_id)
        .where(DELIVERIES.c.id.in_(chosen))
        .order_by(DELIVERIES.c.event_seq)
    )
    for row in connection.execute(query):
        fields = row._mapping
        event = {name[6:]: value for name, value in fields.items() if name.startswith("event_")}
        yield _Claimed(
            row.id,
            lease_id,
            row.attempts,
            row.subscription_id,
            row.url,
            row.secret_box,
            row.key_id,
            event,
            row.model_name,
        )


def _subscription_query() -> Any:
    return (
        select(SUBSCRIPTIONS, schema.models.c.name.label("model_name"))
        .outerjoin(schema.models, schema.models.c.id == SUBSCRIPTIONS.c.model_id)
        .order_by(SUBSCRIPTIONS.c.created_ms, SUBSCRIPTIONS.c.id)
    )


def _find_subscription(connection: Connection, subscription_id: str) -> Subscription:
    row = connection.execute(
        _subscription_query().where(SUBSCRIPTIONS.c.id == subscription_id)
    ).first()
    if row is None:
        raise NotFoundError(f"no webhook {subscription_id!r}; list them with `clew webhooks list`.")
    return _subscription(row)


def _subscription(row: Any) -> Subscription:
    return Subscription(
        row.id,
        row.url,
        row.model_name,
        tuple(json.loads(row.kinds)),
        row.created_ms,
        row.created_by,
        row.deleted_ms,
        row.deleted_by,
    )


def _delivery(row: Any) -> Delivery:
    pending = row.status == hooks.PENDING
    return Delivery(
        row.id,
        row.subscription_id,
        row.event_id,
        row.event_seq,
        row.kind,
        row.status,
        row.attempts,
        row.next_attempt_ms if pending else None,
        row.last_status_code,
        row.last_error,
        row.created_ms,
        row.delivered_ms,
    )


def _newest_seq(connection: Connection) -> int:
    return int(connection.execute(select(func.coalesce(func.max(EVENTS.c.seq), 0))).scalar_one())


def _require_admin(connection: Connection, actor: str, action: str) -> None:
    rules = policy.current(connection).rules
    policy.require_member(connection, rules, actor, rules.admin_roles, action)


def _target(subscription_id: str) -> str:
    return f"webhook:{subscription_id}"
