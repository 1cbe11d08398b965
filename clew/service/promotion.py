"""Aliases (production, staging, champion...) and the rules for moving them.

An alias moves only by appending an event (who, when, why, from which version, to which), so
its whole history stays readable and "what was in production at time T" is one indexed query.
Any alias may point at a version that is not rejected, revoked or archived; the policy's
production aliases also need the required approvals and evidence (metric thresholds, reports).
``rollback`` treats an alias's history as a stack: each promotion pushes, each rollback pops,
so repeated rollbacks walk further back.
"""

from __future__ import annotations

import difflib
from typing import Any

from sqlalchemy import Connection, select

from clew.domain import records, refs
from clew.domain.keys import SignedStatement
from clew.domain.policy import Policy, StoredPolicy
from clew.domain.records import ModelRecord, RegistryEvent, VersionRecord
from clew.errors import ConflictError, IntegrityError, PolicyError, UnknownAliasError
from clew.service import bias, findings, policy, record_check, registry, signed_heads
from clew.service.approvals import (
    Decision,
    VersionState,
    check_signature,
    fold_decisions,
    get_version_state,
    require_verified_version,
    version_state,
)
from clew.store import schema
from clew.store.location import Store


class PromotionService:
    def __init__(self, store: Store) -> None:
        self.store = store

    @signed_heads.checkpointed(decision=True)
    def promote(
        self,
        ref: str,
        alias: str,
        actor: str,
        comment: str = "",
        new_alias: bool = False,
        *,
        signed: SignedStatement | None = None,
    ) -> RegistryEvent:
        """Point ``alias`` at the version ``ref`` names, if the policy allows it (and the
        signature holds, see ``clew.service.user_keys``).

        An alias never set on this model and not listed by the policy is created only with
        ``new_alias``: ``prodution`` is a typo, not a new stage.
        """
        refs.validate_name(alias, "alias")
        require_verified_version(self.store, ref, "promote")
        reports = bias.read_reports(self.store, ref)
        with self.store.db.write() as connection:
            state = get_version_state(connection, ref)
            model = state.model
            latest = registry.latest_alias_event(connection, model.id, alias)
            if latest is not None:
                record_check.require_vouched(
                    connection, "registry_events", [{"id": latest.id}], f"{model.name}@{alias}"
                )
            current = latest.version if latest else None
            if current == state.version.version:
                raise ConflictError(f"{model.name}@{alias} already points at {state.ref}.")
            rules = policy.current(connection)
            _check_move(connection, state, alias, actor, rules.rules)
            if rules.rules.is_production(alias):
                bias.require_report_evidence(
                    self.store,
                    connection,
                    state,
                    rules.rules,
                    f"become {model.name}@{alias}",
                    reports,
                )
            if latest is None and not new_alias:
                _refuse_unknown_alias(connection, model, alias, rules.rules)
            decision = Decision(registry.ALIAS_SET, actor, comment, {}, alias=alias)
            signature = check_signature(connection, state, rules, decision, signed)
            return registry.append_event(
                connection,
                model.id,
                model.name,
                state.version.version,
                registry.ALIAS_SET,
                actor,
                alias=alias,
                from_version=current,
                comment=comment,
                evidence=_policy_evidence(rules, signature),
            )

    @signed_heads.checkpointed(decision=True)
    def rollback(self, name: str, alias: str, actor: str, comment: str = "") -> RegistryEvent:
        """Return ``alias`` to the version it pointed at before its latest promotion."""
        checked = self._rollback_target(name, alias)
        if checked is not None:
            require_verified_version(self.store, f"{name}/{checked}", "roll back to")
        with self.store.db.write() as connection:
            model = registry.get_model_row(connection, name=name)
            history = registry.read_events(
                connection, model, alias=alias, kinds=registry.ALIAS_KINDS, newest_first=False
            )
            stack = _alias_stack(history)
            if len(stack) < 2:
                raise ConflictError(
                    f"{name}@{alias} has no earlier version to roll back to; promote a version "
                    "instead."
                )
            target = registry.get_version_row(connection, name, stack[-2])
            if target.version != checked:
                raise ConflictError(
                    f"{name}@{alias} moved while its bytes were being checked; retry the rollback."
                )
            state = version_state(connection, model, target)
            refusal = state.refusal()
            if refusal:
                raise ConflictError(
                    f"cannot roll {name}@{alias} back to {target.ref}: {refusal}; promote an "
                    "eligible version instead."
                )
            rules = policy.current(connection)
            if rules.rules.is_production(alias):
                policy.require_member(
                    connection,
                    rules.rules,
                    actor,
                    rules.rules.promoter_roles,
                    f"move {name}@{alias}",
                    name,
                )
            return registry.append_event(
                connection,
                model.id,
                name,
                target.version,
                registry.ALIAS_ROLLBACK,
                actor,
                alias=alias,
                from_version=stack[-1],
                comment=comment,
                evidence=_policy_evidence(rules),
            )

    def _rollback_target(self, name: str, alias: str) -> int | None:
        """The version a rollback of ``name@alias`` would return to now, if any."""
        with self.store.db.read() as connection:
            model = registry.get_model_row(connection, name=name)
            stack = _alias_stack(
                registry.read_events(
                    connection, model, alias=alias, kinds=registry.ALIAS_KINDS, newest_first=False
                )
            )
        return stack[-2] if len(stack) >= 2 else None

    def alias_history(self, name: str, alias: str | None = None) -> list[RegistryEvent]:
        """Every move of ``alias`` (or of all aliases), newest first."""
        with self.store.db.read() as connection:
            model = registry.get_model_row(connection, name=name)
            return registry.read_events(connection, model, alias=alias, kinds=registry.ALIAS_KINDS)

    def model_history(self, name: str) -> list[RegistryEvent]:
        """Every registration, decision and alias move of the model, newest first."""
        with self.store.db.read() as connection:
            model = registry.get_model_row(connection, name=name)
            return registry.read_events(connection, model)

    def alias_at(self, name: str, alias: str, when_ms: int) -> VersionRecord | None:
        """The version ``name@alias`` pointed at at ``when_ms``, or None if it pointed nowhere."""
        events = schema.registry_events
        with self.store.db.read() as connection:
            model = registry.get_model_row(connection, name=name)
            version = connection.execute(
                select(events.c.version)
                .where(
                    events.c.model_id == model.id,
                    events.c.alias == alias,
                    events.c.time_ms <= when_ms,
                )
                .order_by(events.c.seq.desc())
                .limit(1)
            ).scalar()
            return None if version is None else registry.get_version_row(connection, name, version)

    def model_overview(self) -> list[dict[str, Any]]:
        """Per model: owner, risk tier, latest version and its status, current aliases."""
        rows = []
        with self.store.db.read() as connection:
            required = policy.current(connection).rules.required_approvals
            for model in registry.all_models(connection):
                aliases = registry.current_aliases(connection, model.id)
                status = None
                if model.last_version:
                    latest = registry.get_version_row(connection, model.name, model.last_version)
                    status = _listed_status(connection, model, latest, required)
                rows.append(
                    {
                        "name": model.name,
                        "owner": model.owner,
                        "risk_tier": model.risk_tier,
                        "latest_version": model.last_version or None,
                        "status": status,
                        "aliases": _alias_text(aliases),
                        "description": model.description,
                    }
                )
        return rows

    def version_overview(self, name: str) -> list[dict[str, Any]]:
        """Per version of ``name``, newest first: status, approvals, aliases and provenance."""
        with self.store.db.read() as connection:
            model = registry.get_model_row(connection, name=name)
            required = policy.current(connection).rules.required_approvals
            aliases = registry.current_aliases(connection, model.id)
            decisions: dict[int, list[RegistryEvent]] = {}
            for event in registry.read_events(
                connection, model, kinds=registry.STATUS_KINDS, newest_first=False
            ):
                decisions.setdefault(event.version or 0, []).append(event)
            rows = []
            for version in registry.model_versions(connection, model):
                state = fold_decisions(model, version, decisions.get(version.version, []))
                rows.append(
                    {
                        "version": version.version,
                        "ref": version.ref,
                        "status": state.status(required),
                        "approvals": len(state.approvals),
                        "aliases": sorted(a for a, n in aliases.items() if n == version.version),
                        "created_at": version.created_ms,
                        "created_by": version.created_by,
                        "run_id": version.run_id,
                        "digest": version.digest,
                        "description": version.description,
                    }
                )
        return rows

    def version_status(self, ref: str) -> dict[str, Any]:
        """Decisions, aliases and production readiness of one version, for people to read."""
        with self.store.db.read() as connection:
            state = get_version_state(connection, ref)
            stored = policy.current(connection)
            status = status_of(connection, state, stored)
            bias.add_report_gaps(self.store, connection, state, stored.rules, status)
            return status


def _listed_status(
    connection: Connection, model: ModelRecord, version: VersionRecord, required: int
) -> str:
    """A version's status for a listing: one version whose records were altered outside clew
    is listed as ``unverified`` instead of failing the whole list (its own status refuses)."""
    try:
        return version_state(connection, model, version).status(required)
    except IntegrityError:
        return "unverified"


def _refuse_unknown_alias(
    connection: Connection, model: records.ModelRecord, alias: str, rules: Policy
) -> None:
    """Refuse ``alias`` unless the policy lists it, naming the model's aliases and the nearest
    one (no event ever set it on this model, the caller checked)."""
    listed = rules.production_aliases | rules.known_aliases
    if alias in listed:
        return
    existing = sorted(set(registry.current_aliases(connection, model.id)))
    nearest = difflib.get_close_matches(alias, sorted(set(existing) | listed), n=1, cutoff=0.6)
    hint = f"; nearest: {nearest[0]}" if nearest else ""
    known = ", ".join(existing) if existing else "none"
    raise UnknownAliasError(
        f"{model.name} has no alias {alias!r} yet (its aliases: {known}{hint}); check the "
        f"spelling, or pass --new-alias (new_alias=True) to create {model.name}@{alias}."
    )


def status_of(connection: Connection, state: VersionState, stored: StoredPolicy) -> dict[str, Any]:
    rules = stored.rules
    refusal = state.refusal()
    reasons = [refusal] if refusal else production_gaps(connection, state, rules)
    blocked = state.promotion_block()
    if blocked and not refusal:
        reasons.append(blocked)
    held = findings_block(connection, state)
    if held and not refusal:
        reasons.append(held)
    aliases = registry.current_aliases(connection, state.model.id)
    return {
        "ref": state.ref,
        "name": state.model.name,
        "version": state.version.version,
        "digest": state.version.digest,
        "status": state.status(rules.required_approvals),
        "approved": not refusal and len(state.approvals) >= rules.required_approvals,
        "rejected": state.rejection is not None,
        "revoked": state.revocation is not None,
        "archived": state.archival is not None,
        "approvals": len(state.approvals),
        "required_approvals": rules.required_approvals,
        "approved_by": state.approvers,
        "signatures": _signatures(state),
        "aliases": sorted(a for a, n in aliases.items() if n == state.version.version),
        "meets_production_policy": not reasons,
        "reasons": reasons,
        "policy_version": stored.version,
        "created_by": state.version.created_by,
        "created_at": records.ms_to_iso(state.version.created_ms),
        "open_violations": [
            {"action": e.evidence.get("action"), "description": e.comment, "at": e.time_ms}
            for e in state.open_violations()
        ],
    }


def production_gaps(connection: Connection, state: VersionState, rules: Policy) -> list[str]:
    """Why the version may not (yet) be a production alias; empty when it may."""
    gaps = []
    count, required = len(state.approvals), rules.required_approvals
    if count < required:
        gaps.append(f"it has {count} of the {required} approval(s) the policy requires")
        gaps += [
            f"the approval by {event.actor} does not count ({state.verdicts[event.id].detail})"
            for event in state.discounted
        ]
    gaps += policy.metric_failures(rules.metric_rules, state.version.metrics)
    if rules.required_reports:
        present = _report_names(connection, state)
        gaps += [
            f"required report {name!r} is missing (log it as a report from the training or an "
            "evaluation run, or attach it as approval evidence)"
            for name in rules.required_reports
            if name not in present
        ]
    return gaps


def _check_move(
    connection: Connection, state: VersionState, alias: str, actor: str, rules: Policy
) -> None:
    target = f"{state.model.name}@{alias}"
    refusal = state.refusal()
    if refusal:
        raise ConflictError(f"{refusal}; it can not become {target}.")
    blocked = state.promotion_block()
    if blocked:
        raise PolicyError(f"{blocked}; it can not become {target} until then.")
    held = findings_block(connection, state)
    if held:
        raise PolicyError(f"{held}; it can not become {target} until then.")
    if not rules.is_production(alias):
        return
    policy.require_member(
        connection, rules, actor, rules.promoter_roles, f"move {target}", state.model.name
    )
    gaps = production_gaps(connection, state, rules)
    if gaps:
        raise PolicyError(f"{state.ref} can not become {target}: {'; '.join(gaps)}.")


def findings_block(connection: Connection, state: VersionState) -> str | None:
    """Why an unresolved high-severity validation finding on the version refuses promotion
    (SR 11-7: a model with open high findings does not move), or None."""
    held = findings.blocking(connection, state.model.id, state.version.version)
    if not held:
        return None
    others = f" and {len(held) - 1} more" if len(held) > 1 else ""
    return (
        f"{state.ref} has an unresolved {held[0].summary()}{others}; a validator must close "
        f"or accept it (`clew findings update {held[0].id} --status closed`)"
    )


def _alias_stack(history: list[RegistryEvent]) -> list[int]:
    stack: list[int] = []
    for event in history:
        if event.kind == registry.ALIAS_ROLLBACK:
            stack.pop()
        elif event.version is not None:
            stack.append(event.version)
    return stack


def _report_names(connection: Connection, state: VersionState) -> set[str]:
    """Names of reports about this version: produced by its training run or by a run that
    evaluated its model artifact, derived from the artifact, or attached to an approval."""
    edges, artifacts = schema.edges, schema.artifacts
    artifact_id = state.version.artifact_id
    evaluating = select(edges.c.destination_id).where(
        edges.c.source_id == artifact_id,
        edges.c.association == records.CONTRIBUTED_TO,
        edges.c.destination_kind == "run",
    )
    runs = [state.version.run_id, *connection.execute(evaluating).scalars()]
    linked = connection.execute(
        select(artifacts.c.name)
        .join(edges, edges.c.destination_id == artifacts.c.id)
        .where(
            artifacts.c.type == "report",
            (
                (edges.c.source_id.in_([r for r in runs if r]))
                & (edges.c.association == records.PRODUCED)
            )
            | ((edges.c.source_id == artifact_id) & (edges.c.association == records.DERIVED_FROM)),
        )
    ).scalars()
    attached = {
        item["name"]
        for event in state.approvals
        for item in event.evidence.get("artifacts", [])
        if item.get("type") == "report"
    }
    return set(linked) | attached


def _signatures(state: VersionState) -> list[dict[str, Any]]:
    """Each decision's actor, kind and signature check (key id and verdict), oldest first."""
    decided = [*state.approvals, *state.discounted, state.rejection, state.revocation]
    return [
        {
            "actor": event.actor,
            "kind": event.kind,
            "time": records.ms_to_iso(event.time_ms),
            **state.verdicts[event.id].to_dict(),
        }
        for event in sorted((e for e in decided if e is not None), key=lambda e: e.id)
    ]


def _alias_text(aliases: dict[str, int]) -> str:
    return ", ".join(f"{alias}→{number}" for alias, number in sorted(aliases.items()))


def _policy_evidence(
    stored: StoredPolicy, signature: dict[str, Any] | None = None
) -> dict[str, Any]:
    evidence: dict[str, Any] = {"policy_version": stored.version, "policy_digest": stored.digest}
    if signature is not None:
        evidence["signature"] = signature
    return evidence
