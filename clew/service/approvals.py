"""Decisions about model versions: approve, reject, revoke and archive.

Each decision is an append-only registry event carrying the actor, time, comment, the
evidence it relied on (artifacts resolved to their digests) and the policy version in
force, so an auditor can see later exactly what a validator signed off and under which rules.
Rejected and revoked versions are final: they can not be approved again, promoted or loaded
(a fix is a new version). Archived versions stay loadable, for reproduction, but can not be
promoted or decided on again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, bindparam, select

from clew.domain import records, refs
from clew.domain.keys import SignedStatement
from clew.domain.policy import Policy, StoredPolicy
from clew.domain.records import ModelRecord, RegistryEvent, VersionRecord
from clew.errors import ConflictError, InvalidInputError, PolicyError
from clew.service import integrity, policy, record_check, registry, signed_heads, user_keys
from clew.service.artifacts import get_artifact_row, resolve_artifact
from clew.service.runs import now_ms
from clew.service.user_keys import Verdict
from clew.store import schema
from clew.store.location import Store

MAX_MEANING_LENGTH = 100
# Artifacts visited at most when looking for a version's contributors.
MAX_UPSTREAM = 10_000
_UPSTREAM = (
    select(schema.edges.c.source_id, schema.edges.c.association)
    .where(
        schema.edges.c.destination_id == bindparam("id"),
        ((schema.edges.c.association == records.PRODUCED) & (schema.edges.c.source_kind == "run"))
        | (
            (schema.edges.c.association == records.DERIVED_FROM)
            & (schema.edges.c.source_kind == "artifact")
        ),
    )
    .order_by(schema.edges.c.id)
)


NEEDS_REVALIDATION = "needs revalidation"


@dataclass
class VersionState:
    """What the events say about one version right now."""

    model: ModelRecord
    version: VersionRecord
    approvals: list[RegistryEvent] = field(default_factory=list)
    rejection: RegistryEvent | None = None
    revocation: RegistryEvent | None = None
    archival: RegistryEvent | None = None
    # Each decision's signature check, by event id; approvals that do not count (a failed
    # signature, or unsigned where the policy requires registered keys) move to ``discounted``.
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    discounted: list[RegistryEvent] = field(default_factory=list)
    # Monitoring violations and resolutions, oldest first (see ``open_violations``).
    monitoring: list[RegistryEvent] = field(default_factory=list)

    @property
    def ref(self) -> str:
        return self.version.ref

    @property
    def approvers(self) -> list[str]:
        return [event.actor for event in self.approvals]

    def status(self, required: int) -> str:
        """revoked, rejected, archived, needs revalidation (an open monitoring violation),
        approved (enough approvals) or pending."""
        if self.revocation:
            return registry.REVOKED
        if self.rejection:
            return registry.REJECTED
        if self.archival:
            return registry.ARCHIVED
        if self.open_violations():
            return NEEDS_REVALIDATION
        return registry.APPROVED if len(self.approvals) >= required else "pending"

    def open_violations(self) -> list[RegistryEvent]:
        """Violations whose policy action still holds, newest first: a later approval that
        counts lifts all of them; a later resolution lifts all but those that require a fresh
        approval; ``warn`` never holds."""
        approved_after = resolved_after = False
        found = []
        for event in reversed(self.monitoring):
            if event.kind == registry.REVALIDATED:
                resolved_after = True
            elif event.kind == registry.APPROVED:
                approved_after = approved_after or event in self.approvals
            else:
                action = event.evidence.get("action", "warn")
                lifted = approved_after or (resolved_after and action != "reapprove")
                if action != "warn" and not lifted:
                    found.append(event)
        return found

    def promotion_block(self) -> str | None:
        """Why an open violation refuses promotion (``block`` or ``reapprove``), or None."""
        for event in self.open_violations():
            action = event.evidence.get("action")
            if action in ("block", "reapprove"):
                fix = (
                    "approve it again"
                    if action == "reapprove"
                    else "resolve it with `clew monitor resolve` or approve it again"
                )
                return (
                    f"{self.ref} has an open monitoring violation ({event.comment}) that the "
                    f"policy says blocks promotion; {fix}"
                )
        return None

    def refusal(self) -> str | None:
        """Why this version can no longer be approved or promoted, or None."""
        for event, what in (
            (self.revocation, "revoked"),
            (self.rejection, "rejected"),
            (self.archival, "archived"),
        ):
            if event:
                return f"{self.ref} was {what} by {event.actor} ({event.comment})"
        return None


def version_state(
    connection: Connection, model: ModelRecord, version: VersionRecord
) -> VersionState:
    """The version's decisions, refused if any row they rest on differs from the audit chain."""
    events = registry.read_events(
        connection,
        model,
        version=version.version,
        kinds=registry.STATUS_KINDS,
        newest_first=False,
    )
    record_check.require_vouched(connection, "model_versions", [{"id": version.id}], version.ref)
    record_check.require_vouched(
        connection,
        "registry_events",
        [{"id": event.id} for event in events],
        f"the decisions on {version.ref}",
    )
    return weigh_signatures(connection, fold_decisions(model, version, events))


def weigh_signatures(connection: Connection, state: VersionState) -> VersionState:
    """Verify every decision's signature; keep only the approvals that count."""
    decided = [*state.approvals, state.rejection, state.revocation]
    events = [event for event in decided if event is not None]
    if not events:
        return state
    rules = policy.current(connection).rules
    for event in events:
        state.verdicts[event.id] = user_keys.verdict(connection, event, state.version.digest)
    state.discounted = [
        e for e in state.approvals if not user_keys.counts(state.verdicts[e.id], rules)
    ]
    state.approvals = [e for e in state.approvals if e not in state.discounted]
    return state


def fold_decisions(
    model: ModelRecord, version: VersionRecord, events: Iterable[RegistryEvent]
) -> VersionState:
    """Replay one version's decision events, oldest first, into its current state."""
    state = VersionState(model, version)
    for event in events:
        if event.kind == registry.APPROVED:
            # A fresh approval after a violation replaces its approver's earlier one.
            state.approvals = [e for e in state.approvals if e.actor != event.actor]
            state.approvals.append(event)
        elif event.kind == registry.REJECTED:
            state.rejection = event
        elif event.kind == registry.REVOKED:
            state.revocation = event
            state.approvals = []
        elif event.kind == registry.ARCHIVED:
            state.archival = event
        if event.kind in (registry.APPROVED, *registry.MONITORING_KINDS):
            state.monitoring.append(event)
    return state


def get_version_state(connection: Connection, ref: str) -> VersionState:
    version = registry.resolve_version(connection, registry.parse_model_ref(ref))
    model = registry.get_model_row(connection, model_id=version.model_id)
    return version_state(connection, model, version)


def require_verified_version(store: Store, ref: str, action: str) -> VersionRecord:
    """Refuse ``action`` on the version ``ref`` names unless its bytes are in the store and
    re-hash to its digest; checked before the write transaction, so hashing holds no lock."""
    with store.db.read() as connection:
        version = registry.resolve_version(connection, registry.parse_model_ref(ref))
        artifact = get_artifact_row(connection, version.artifact_id)
    integrity.require_verified_bytes(store, artifact, f"cannot {action} {version.ref}")
    return version


def run_user(connection: Connection, run_id: str | None) -> str | None:
    if run_id is None:
        return None
    return connection.execute(
        select(schema.runs.c.user_name).where(schema.runs.c.id == run_id)
    ).scalar()


class ApprovalService:
    def __init__(self, store: Store) -> None:
        self.store = store

    def loadable(self, ref: str) -> VersionRecord:
        """The version ``ref`` names, unless it was rejected or revoked (then it must not run)."""
        with self.store.db.read() as connection:
            state = get_version_state(connection, ref)
        closed = state.revocation or state.rejection
        if closed:
            raise PolicyError(
                f"{state.ref} was {closed.kind} by {closed.actor} ({closed.comment}) and can not "
                "be loaded; load an approved version or roll the alias back."
            )
        return state.version

    @signed_heads.checkpointed(decision=True)
    def approve(
        self,
        ref: str,
        actor: str,
        comment: str,
        *,
        evidence: Sequence[str] = (),
        meaning: str = "approved",
        signed: SignedStatement | None = None,
    ) -> RegistryEvent:
        """Record an approval; refused for self-approval, a wrong role, a closed version or a
        signature that does not hold (see ``clew.service.user_keys``)."""
        _require_comment(comment, "approve")
        _check_meaning(meaning)
        require_verified_version(self.store, ref, "approve")
        reports = _read_reports(self.store, ref)
        with self.store.db.write() as connection:
            state = get_version_state(connection, ref)
            rules = policy.current(connection)
            _require_open(state, "approved")
            policy.require_member(
                connection,
                rules.rules,
                actor,
                rules.rules.approver_roles,
                f"approve {state.ref}",
                state.model.name,
            )
            if rules.rules.separation_of_duties:
                _check_separation(connection, state, actor)
            if actor in state.approvers and not state.open_violations():
                raise ConflictError(
                    f"{actor!r} has already approved {state.ref}; one approval per person counts."
                )
            _require_report_evidence(self.store, connection, state, rules.rules, reports)
            pinned = {**_evidence(connection, evidence), "meaning": meaning}
            decision = Decision(registry.APPROVED, actor, comment, pinned, meaning)
            return self._record(connection, state, decision, rules, signed)

    @signed_heads.checkpointed(decision=True)
    def reject(
        self,
        ref: str,
        actor: str,
        comment: str,
        *,
        evidence: Sequence[str] = (),
        signed: SignedStatement | None = None,
    ) -> RegistryEvent:
        """Reject a version for good: it can not be approved, promoted or loaded afterwards."""
        _require_comment(comment, "reject")
        with self.store.db.write() as connection:
            state = get_version_state(connection, ref)
            rules = policy.current(connection)
            _require_open(state, "rejected")
            policy.require_member(
                connection,
                rules.rules,
                actor,
                rules.rules.approver_roles,
                f"reject {state.ref}",
                state.model.name,
            )
            decision = Decision(registry.REJECTED, actor, comment, _evidence(connection, evidence))
            return self._record(connection, state, decision, rules, signed)

    @signed_heads.checkpointed(decision=True)
    def revoke(
        self, ref: str, actor: str, comment: str, *, signed: SignedStatement | None = None
    ) -> RegistryEvent:
        """Withdraw the approvals of an approved version; it can not be loaded afterwards."""
        _require_comment(comment, "revoke")
        with self.store.db.write() as connection:
            state = get_version_state(connection, ref)
            rules = policy.current(connection)
            _require_open(state, "revoked")
            if not state.approvals:
                raise ConflictError(f"{state.ref} has no approval to revoke; reject it instead.")
            policy.require_member(
                connection,
                rules.rules,
                actor,
                rules.rules.approver_roles,
                f"revoke {state.ref}",
                state.model.name,
            )
            decision = Decision(registry.REVOKED, actor, comment, {})
            return self._record(connection, state, decision, rules, signed)

    @signed_heads.checkpointed(decision=True)
    def archive(self, ref: str, actor: str, comment: str) -> RegistryEvent:
        """Retire a version: it stays loadable for reproduction but can not be promoted."""
        _require_comment(comment, "archive")
        with self.store.db.write() as connection:
            state = get_version_state(connection, ref)
            if state.archival:
                raise ConflictError(f"{state.ref} is already archived.")
            held = sorted(
                alias
                for alias, number in registry.current_aliases(connection, state.model.id).items()
                if number == state.version.version
            )
            if held:
                raise ConflictError(
                    f"{state.ref} is {state.model.name}@{held[0]}; promote another version to "
                    f"{held[0]} before archiving it."
                )
            rules = policy.current(connection)
            decision = Decision(registry.ARCHIVED, actor, comment, {})
            return self._record(connection, state, decision, rules, None, signable=False)

    def statement(
        self,
        ref: str,
        decision: str,
        actor: str,
        comment: str,
        *,
        evidence: Sequence[str] = (),
        meaning: str | None = None,
        alias: str | None = None,
    ) -> dict[str, Any]:
        """The statement ``actor`` signs for this decision, with the store's time: approved,
        rejected, revoked, or promoted (to ``alias``)."""
        if decision not in (*user_keys.MEANINGS, user_keys.PROMOTED):
            raise InvalidInputError(
                f"{decision!r} is not a signed decision; use approved, rejected, revoked or "
                "promoted."
            )
        with self.store.db.read() as connection:
            state = get_version_state(connection, ref)
            pinned = _evidence(connection, evidence)
            fields = Decision(decision, actor, comment, pinned, meaning or decision, alias)
            return decision_statement(state, policy.current(connection), fields, now_ms())

    @staticmethod
    def _record(
        connection: Connection,
        state: VersionState,
        decision: Decision,
        rules: StoredPolicy,
        signed: SignedStatement | None,
        *,
        signable: bool = True,
    ) -> RegistryEvent:
        evidence = {
            **decision.evidence,
            "actor_roles": rules.rules.roles_of(decision.actor),
            "policy_version": rules.version,
            "policy_digest": rules.digest,
        }
        if signable:
            signature = check_signature(connection, state, rules, decision, signed)
            if signature is not None:
                evidence["signature"] = signature
        return registry.append_event(
            connection,
            state.model.id,
            state.model.name,
            state.version.version,
            decision.kind,
            decision.actor,
            comment=decision.comment,
            evidence=evidence,
        )


@dataclass(frozen=True)
class Decision:
    """One decision about to be recorded (or signed): what, by whom, why, on what evidence."""

    kind: str
    actor: str
    comment: str
    evidence: Mapping[str, Any]
    meaning: str | None = None
    alias: str | None = None


def decision_statement(
    state: VersionState, rules: StoredPolicy, decision: Decision, signed_ms: int
) -> dict[str, Any]:
    """The statement a decision is signed over (see ``user_keys.statement``)."""
    kind = user_keys.PROMOTED if decision.alias else decision.kind
    return user_keys.statement(
        decision=kind,
        ref=state.version.ref,
        digest=state.version.digest,
        alias=decision.alias,
        actor=decision.actor,
        meaning=decision.meaning or kind,
        comment=decision.comment,
        policy_digest=rules.digest,
        evidence=[str(item["digest"]) for item in decision.evidence.get("artifacts", [])],
        signed_ms=signed_ms,
    )


def check_signature(
    connection: Connection,
    state: VersionState,
    rules: StoredPolicy,
    decision: Decision,
    signed: SignedStatement | None,
) -> dict[str, Any] | None:
    """The signature block to record with ``decision``, or None; refusals are raised."""
    prepared = decision_statement(state, rules, decision, signed.signed_ms if signed else 0)
    return user_keys.accept(connection, rules.rules, prepared, signed)


def _read_reports(store: Store, ref: str) -> dict[str, Any]:
    """The version's report documents, read before the write transaction (see
    ``bias.read_reports``; imported here: that module builds on this one)."""
    from clew.service import bias

    return bias.read_reports(store, ref)


def _require_report_evidence(
    store: Store, connection: Connection, state: VersionState, rules: Policy, known: dict[str, Any]
) -> None:
    """The policy's bias and explanation report requirements (clew/service/bias.py), checked
    before an approval is recorded, on the documents read before the transaction."""
    from clew.service import bias

    bias.require_report_evidence(store, connection, state, rules, "be approved", known)


def _require_comment(comment: str, action: str) -> None:
    if not isinstance(comment, str) or not comment.strip():
        raise InvalidInputError(
            f"a comment is required to {action} a version; say why, e.g. comment='validated "
            "on the holdout set'."
        )


def _check_meaning(meaning: str) -> None:
    if not isinstance(meaning, str) or not meaning.strip() or len(meaning) > MAX_MEANING_LENGTH:
        raise InvalidInputError(
            f"meaning {meaning!r} must be a short word such as 'approved', 'reviewed' or "
            "'validated'."
        )


def _require_open(state: VersionState, action: str) -> None:
    refusal = state.refusal()
    if refusal:
        raise ConflictError(f"{refusal}; it can not be {action} now, so register a new version.")


def _check_separation(connection: Connection, state: VersionState, actor: str) -> None:
    """SR 11-7: whoever built or registered a model may not be the one who approves it."""
    if actor == state.version.created_by:
        raise PolicyError(
            f"{actor!r} registered {state.ref} and may not approve it (separation of duties); "
            "ask another approver."
        )
    if actor == run_user(connection, state.version.run_id):
        raise PolicyError(
            f"{actor!r} ran the training run {state.version.run_id} of {state.ref} and may not "
            "approve it (separation of duties); ask another approver."
        )
    contribution = _contribution(connection, state.version, actor)
    if contribution:
        raise PolicyError(
            f"{actor!r} {contribution} and may not approve {state.ref} (separation of duties); "
            "ask another approver."
        )


def _contribution(connection: Connection, version: VersionRecord, actor: str) -> str | None:
    """What ``actor`` did to build the version, or None: uploading its model artifact or one it
    derives from, or running a run that produced one of them.

    The walk goes upstream from the version's artifact along Produced and DerivedFrom edges and
    stops at the producing runs' inputs (the training inputs): whoever first logged a shared
    dataset, code revision or environment did not build this model.
    """
    seen: set[str] = set()
    frontier = [version.artifact_id]
    while frontier and len(seen) < MAX_UPSTREAM:
        artifact_id = frontier.pop()
        if artifact_id in seen:
            continue
        seen.add(artifact_id)
        artifact = get_artifact_row(connection, artifact_id)
        what = f"{artifact.type}:{artifact.name}"
        if artifact.created_by == actor:
            return f"uploaded artifact {what} ({artifact.id})"
        for source_id, association in connection.execute(_UPSTREAM, {"id": artifact_id}):
            if association == records.DERIVED_FROM:
                frontier.append(source_id)
            elif run_user(connection, source_id) == actor:
                return f"ran run {source_id}, which produced {what},"
    return None


def _evidence(connection: Connection, evidence: Sequence[str]) -> dict[str, Any]:
    """Resolve evidence refs to artifacts (id, type, name, digest) so they are pinned."""
    if isinstance(evidence, str):
        evidence = [evidence]
    pinned = []
    for ref in evidence:
        parsed = refs.parse(ref)
        if not isinstance(parsed, refs.ArtifactRef):
            raise InvalidInputError(
                f"evidence {ref!r} is not an artifact; pass reports or other logged artifacts."
            )
        artifact = resolve_artifact(connection, parsed)
        pinned.append(
            {
                "id": artifact.id,
                "type": artifact.type,
                "name": artifact.name,
                "digest": artifact.digest,
            }
        )
    return {"artifacts": pinned} if pinned else {}
