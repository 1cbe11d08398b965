"""Model reviews (SR 11-7): periodic validation by risk tier, overdue alerts, material changes.

A review is a validator's sign-off that a model is still fit for use, recorded as a ``reviewed``
registry event on the version reviewed, so it is audited, chained and delivered to webhooks
like every other registry event. The policy's ``reviews`` section says how many days may pass
between reviews by risk tier; a model never reviewed counts from its registration.
A validator may also set the next due date outright (``set_review_due``, a ``review_due``
event): a regulator's deadline, or a review already due when an existing inventory is brought
into clew; the newer of that event and the last review decides the due date. ``raise_overdue``
appends one ``review_overdue`` event per model and due date, which webhooks deliver: ``clew
server``'s scheduler calls it (``clew.server.monitor_scheduler``), and `clew review check` runs
it from cron. The event is found in the store, so restarts and several servers on one store
raise it once. A newer version whose training data or code
digests differ from the version last reviewed is a material change: the model's review state
becomes ``revalidation required`` until a validator reviews the new version.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select

from clew.domain import findings as rules
from clew.domain import records
from clew.domain.findings import Review, ReviewStatus
from clew.domain.records import ModelRecord, RegistryEvent, VersionRecord
from clew.errors import InvalidInputError, PolicyError
from clew.service import findings, policy, record_check, registry, signed_heads
from clew.service.runs import now_ms
from clew.store import schema
from clew.store.location import Store

REVIEWED, REVIEW_OVERDUE, REVIEW_DUE = "reviewed", "review_overdue", "review_due"
REVIEW_KINDS = (REVIEWED, REVIEW_OVERDUE, REVIEW_DUE)


class ReviewService:
    def __init__(self, store: Store) -> None:
        self.store = store

    @signed_heads.checkpointed(decision=True)
    def review(self, ref: str, actor: str, comment: str) -> Review:
        """Record that ``actor`` reviewed the version ``ref`` names; refused for anyone outside
        the approver roles and for the version's registrant (separation of duties)."""
        if not isinstance(comment, str) or not comment.strip():
            raise InvalidInputError(
                "a review needs a comment saying what was reviewed, e.g. 'annual revalidation: "
                "back-test and benchmark reproduced'."
            )
        with self.store.db.write() as connection:
            version = registry.resolve_version(connection, registry.parse_model_ref(ref))
            model = registry.get_model_row(connection, model_id=version.model_id)
            rules_in_force = policy.current(connection).rules
            policy.require_member(
                connection,
                rules_in_force,
                actor,
                rules_in_force.approver_roles,
                f"review {version.ref}",
                model.name,
            )
            if rules_in_force.separation_of_duties and actor == version.created_by:
                raise PolicyError(
                    f"{actor!r} registered {version.ref} and may not review it (separation of "
                    "duties); ask another validator."
                )
            event = registry.append_event(
                connection, model.id, model.name, version.version, REVIEWED, actor, comment=comment
            )
            return _review(event)

    def reviews(self, model: str) -> list[Review]:
        """Every review of ``model``, newest first."""
        with self.store.db.read() as connection:
            found = registry.get_model_row(connection, name=model)
            return [_review(event) for event in _events(connection, found, REVIEWED)]

    def review_status(self, model: str, as_of: str | None = None) -> ReviewStatus:
        """Where ``model`` stands now, or at the end of the day ``as_of`` (YYYY-MM-DD), to
        plan the reviews coming due."""
        with self.store.db.read() as connection:
            found = registry.get_model_row(connection, name=model)
            return status_of(connection, found, cadence(connection), _when(as_of))

    def review_statuses(self, as_of: str | None = None) -> list[ReviewStatus]:
        """Every model's review status, by name (at the end of the day ``as_of``)."""
        with self.store.db.read() as connection:
            days, now = cadence(connection), _when(as_of)
            return [
                status_of(connection, model, days, now) for model in registry.all_models(connection)
            ]

    def statuses_for(self, names: list[str]) -> dict[str, ReviewStatus]:
        """The review status of each model named, by name (for one page of the inventory)."""
        models = schema.models
        with self.store.db.read() as connection:
            days, now = cadence(connection), now_ms()
            rows = connection.execute(select(models).where(models.c.name.in_(names)))
            return {
                row.name: status_of(connection, registry._model_record(row), days, now)
                for row in rows
            }

    def last_violations(self, names: list[str]) -> dict[str, int]:
        """When each named model last had a monitoring violation (ms), by name."""
        events, models = schema.registry_events, schema.models
        query = (
            select(models.c.name, func.max(events.c.time_ms))
            .join(events, events.c.model_id == models.c.id)
            .where(models.c.name.in_(names), events.c.kind == registry.VIOLATION)
            .group_by(models.c.name)
        )
        with self.store.db.read() as connection:
            return {name: int(when) for name, when in connection.execute(query)}

    @signed_heads.checkpointed(decision=True)
    def set_review_due(self, model: str, due: str, actor: str, reason: str) -> RegistryEvent:
        """Set the day (YYYY-MM-DD) ``model``'s next review is due, overriding the cadence
        until the next review; validators only. A past day is allowed: it records a review
        already overdue (an inventory brought into clew late) and makes it overdue now."""
        due_ms = rules.parse_due(due)
        if due_ms is None or not isinstance(reason, str) or not reason.strip():
            raise InvalidInputError(
                "setting a review due date needs the day (YYYY-MM-DD) and a reason, e.g. "
                "'2027-03-31', 'regulator's deadline'."
            )
        with self.store.db.write() as connection:
            found = registry.get_model_row(connection, name=model)
            rules_in_force = policy.current(connection).rules
            policy.require_member(
                connection,
                rules_in_force,
                actor,
                rules_in_force.approver_roles,
                f"set the review due date of {found.name}",
                found.name,
            )
            return registry.append_event(
                connection,
                found.id,
                found.name,
                found.last_version or None,
                REVIEW_DUE,
                actor,
                comment=reason.strip(),
                evidence={"due_ms": due_ms},
            )

    def raise_overdue(self, actor: str) -> list[RegistryEvent]:
        """Append a ``review_overdue`` event for each model whose review is overdue and not yet
        raised for its current due date; returns the events appended. Looked for first in a
        read, so a scheduler asking every minute takes the write lock only when there is
        something to raise; the write looks again under the lock."""
        with self.store.db.read() as connection:
            if not _unraised(connection, now_ms()):
                return []
        return self._raise_unraised(actor)

    @signed_heads.checkpointed(decision=False)
    def _raise_unraised(self, actor: str) -> list[RegistryEvent]:
        with self.store.db.write() as connection:
            return [
                _raise(connection, model, status, actor)
                for model, status in _unraised(connection, now_ms())
            ]


def _unraised(connection: Connection, now: int) -> list[tuple[ModelRecord, ReviewStatus]]:
    """Each overdue model whose ``review_overdue`` for its current due date is not stored."""
    days = cadence(connection)
    found = []
    for model in registry.all_models(connection):
        status = status_of(connection, model, days, now)
        if status.overdue and not _already_raised(connection, model, status):
            found.append((model, status))
    return found


def status_of(
    connection: Connection, model: ModelRecord, cadence: dict[str, int], now: int
) -> ReviewStatus:
    """The model's review state at ``now`` under ``cadence`` (days by risk tier)."""
    days = rules.cadence_for(cadence, model.risk_tier)
    events = _events(connection, model, REVIEWED, REVIEW_DUE)
    reviewed = [event for event in events if event.kind == REVIEWED]
    last = _review(reviewed[0]) if reviewed else None
    due = _due_ms(model, events, days)
    changes: list[str] = []
    if last is not None and model.last_version > last.version:
        changes = material_changes(
            connection,
            registry.get_version_row(connection, model.name, last.version),
            registry.get_version_row(connection, model.name, model.last_version),
        )
    counts = findings.counts(connection, [model.id]).get(model.id, (0, 0))
    return ReviewStatus(
        model=model.name,
        risk_tier=model.risk_tier,
        cadence_days=days,
        latest_version=model.last_version or None,
        last_review=last,
        next_due_ms=due,
        state=rules.review_state(
            now_ms=now, next_due_ms=due, reviewed=last is not None, material_changes=changes
        ),
        material_changes=changes,
        open_findings=counts[0],
        blocking_findings=counts[1],
    )


def _due_ms(model: ModelRecord, events: list[RegistryEvent], days: int | None) -> int | None:
    """A due date set after the last review (``events`` newest first), else the cadence from
    that review (or from registration when never reviewed); None when neither applies."""
    if events and events[0].kind == REVIEW_DUE:
        return int(events[0].evidence["due_ms"])
    reviewed = next((event for event in events if event.kind == REVIEWED), None)
    since = reviewed.time_ms if reviewed else model.created_ms
    return since + days * rules.DAY_MS if days is not None else None


def material_changes(
    connection: Connection, reviewed: VersionRecord, newer: VersionRecord
) -> list[str]:
    """How ``newer`` differs from ``reviewed`` in training data and code, one line each."""
    before, after = _provenance(connection, reviewed), _provenance(connection, newer)
    lines = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if old is None:
            lines.append(f"{newer.ref} adds {name} ({_short(new)}), not in {reviewed.ref}")
        elif new is None:
            lines.append(f"{newer.ref} no longer uses {name} that {reviewed.ref} used")
        else:
            lines.append(
                f"{name} changed from {_short(old)} in {reviewed.ref} to {_short(new)} in "
                f"{newer.ref}"
            )
    return lines


def _provenance(connection: Connection, version: VersionRecord) -> dict[str, str]:
    """The training data (``type:name``) and code (``code``) digests of the version's run."""
    if version.run_id is None:
        return {}
    artifacts, edges, runs = schema.artifacts, schema.edges, schema.runs
    data = connection.execute(
        select(artifacts.c.type, artifacts.c.name, artifacts.c.digest)
        .join(edges, edges.c.source_id == artifacts.c.id)
        .where(
            edges.c.destination_id == version.run_id,
            edges.c.association == records.CONTRIBUTED_TO,
            artifacts.c.type.in_(registry.TRAINING_DATA_TYPES),
        )
    )
    found = {f"{row.type}:{row.name}": row.digest for row in data}
    code = connection.execute(
        select(artifacts.c.digest)
        .join(runs, runs.c.code_artifact_id == artifacts.c.id)
        .where(runs.c.id == version.run_id)
    ).scalar()
    if code is not None:
        found["code"] = code
    return found


def _when(as_of: str | None) -> int:
    return now_ms() if as_of is None else rules.parse_due(as_of) or now_ms()


def cadence(connection: Connection) -> dict[str, int]:
    """Days between reviews by risk tier under the policy in force."""
    return rules.review_cadence(policy.current(connection).document)


def _events(connection: Connection, model: ModelRecord, *kinds: str) -> list[RegistryEvent]:
    """The model's events of ``kinds``, newest first, each vouched for by the audit chain."""
    events = registry.read_events(connection, model, kinds=kinds)
    what = f"{model.name}'s {' and '.join(kinds)} events"
    record_check.require_vouched(
        connection, "registry_events", [{"id": e.id} for e in events], what
    )
    return events


def _already_raised(connection: Connection, model: ModelRecord, status: ReviewStatus) -> bool:
    raised = registry.read_events(connection, model, kinds=(REVIEW_OVERDUE,))
    return bool(raised) and raised[0].evidence.get("next_due_ms") == status.next_due_ms


def _raise(
    connection: Connection, model: ModelRecord, status: ReviewStatus, actor: str
) -> RegistryEvent:
    last = status.last_review
    evidence: dict[str, Any] = {
        "next_due_ms": status.next_due_ms,
        "risk_tier": model.risk_tier,
        "cadence_days": status.cadence_days,
        "last_review": last.event_id if last else None,
    }
    when = (
        "never reviewed" if last is None else f"last reviewed {records.ms_to_iso(last.reviewed_ms)}"
    )
    comment = (
        f"{model.name}'s review was due {status.to_dict()['next_due']} ({when}, "
        f"{_rule(connection, model, status)})"
    )
    return registry.append_event(
        connection,
        model.id,
        model.name,
        status.latest_version,
        REVIEW_OVERDUE,
        actor,
        comment=comment,
        evidence=evidence,
    )


def _rule(connection: Connection, model: ModelRecord, status: ReviewStatus) -> str:
    """What set the due date: a validator's ``review_due`` event, or the tier's cadence."""
    newest = _events(connection, model, REVIEWED, REVIEW_DUE)[:1]
    if newest and newest[0].kind == REVIEW_DUE:
        return f"set by {newest[0].actor}: {newest[0].comment}"
    return f"every {status.cadence_days} days for risk tier {model.risk_tier or 'default'}"


def _review(event: RegistryEvent) -> Review:
    return Review(
        model=event.model,
        version=event.version or 0,
        reviewed_by=event.actor,
        reviewed_ms=event.time_ms,
        comment=event.comment,
        event_id=event.id,
    )


def _short(digest: str | None) -> str:
    return (digest or "")[:19] + "…"
