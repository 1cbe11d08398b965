"""Bias and explanation reports as approval evidence: a version's reports, and the policy's
``bias`` and ``explanation`` requirements checked against them.

A report counts for a version when an evaluation run that consumed the version's model
artifact (or its training run) produced it as a ``report`` artifact (clew/client/explain.py
records them so), and the document names that version's digest: a report about other bytes
never counts. The JSON is read through the blob store, which re-hashes it, so the numbers the
check relies on are the ones recorded. The check runs when a version is approved and again when
it is promoted to a production alias, and each gap is one sentence naming the report or figure.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, select

from clew.domain import records
from clew.domain.policy import BiasEvidence, ExplanationEvidence, Policy
from clew.errors import IntegrityError, NotFoundError, PolicyError
from clew.service import record_check
from clew.service.approvals import VersionState, get_version_state
from clew.service.explanations import BIAS, EXPLANATION, KINDS
from clew.store import schema
from clew.store.location import Store


class ReportService:
    """The bias and explanation reports recorded for a version."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def reports(self, ref: str) -> list[dict[str, Any]]:
        """Each report of the version ``ref`` (JSON), newest first: artifact and key figures."""
        with self.store.db.read() as connection:
            state = get_version_state(connection, ref)
            rows = report_rows(connection, state)
        return [_listed(row, document) for row, document in _documents(self.store, state, rows)]

    def approval_evidence(self, ref: str) -> dict[str, Any]:
        """What the policy in force requires of the version's reports, what is missing or
        failing, and the reports recorded: for the approval form."""
        from clew.service import policy

        with self.store.db.read() as connection:
            state = get_version_state(connection, ref)
            rules = policy.current(connection).rules
            gaps = evidence_gaps(self.store, connection, state, rules)
            rows = report_rows(connection, state)
        listed = [_listed(row, d) for row, d in _documents(self.store, state, rows)]
        return {
            "required": requirements(rules, state.model.risk_tier),
            "gaps": gaps,
            "reports": listed,
        }

    def evidence_gaps(self, ref: str, rules: Policy) -> list[str]:
        """Why the version's reports do not meet ``rules`` (empty when they do)."""
        with self.store.db.read() as connection:
            state = get_version_state(connection, ref)
            return evidence_gaps(self.store, connection, state, rules)


def report_rows(connection: Connection, state: VersionState) -> list[Any]:
    """The JSON report artifacts linked to the version, newest first (see the module doc)."""
    edges, artifacts = schema.edges, schema.artifacts
    evaluating = select(edges.c.destination_id).where(
        edges.c.source_id == state.version.artifact_id,
        edges.c.association == records.CONTRIBUTED_TO,
        edges.c.destination_kind == "run",
    )
    runs = [r for r in (state.version.run_id, *connection.execute(evaluating).scalars()) if r]
    rows = connection.execute(
        select(artifacts)
        .join(edges, edges.c.destination_id == artifacts.c.id)
        .where(
            artifacts.c.type == "report",
            edges.c.source_id.in_(runs),
            edges.c.association == records.PRODUCED,
        )
        .order_by(artifacts.c.created_ms.desc(), artifacts.c.id.desc())
    ).all()
    found = [row for row in rows if _is_report(json.loads(row.properties or "{}"))]
    if found:
        record_check.require_vouched(
            connection, "artifacts", [{"id": row.id} for row in found], f"reports of {state.ref}"
        )
    return found


def _is_report(properties: dict[str, Any]) -> bool:
    return properties.get("clew_report") in KINDS and properties.get("format") == "json"


def _documents(
    store: Store, state: VersionState, rows: list[Any]
) -> Iterator[tuple[Any, dict[str, Any]]]:
    """Each report row with its document, when the document is about this version's bytes."""
    for row in rows:
        try:
            document = json.loads(store.blobs.read_bytes(row.digest))
        except (NotFoundError, ValueError) as error:
            raise IntegrityError(
                f"report {row.name} ({row.digest[:19]}) of {state.ref} cannot be read ({error}); "
                "run `clew audit verify`."
            ) from error
        if isinstance(document, dict) and document.get("model", {}).get("digest") == (
            state.version.digest
        ):
            yield row, document


def _listed(row: Any, document: dict[str, Any]) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    if document.get("kind") == BIAS:
        figures = {
            name: attribute.get("disparate_impact")
            for name, attribute in document.get("attributes", {}).items()
        }
    return {
        "kind": document.get("kind"),
        "scope": document.get("scope"),
        "name": row.name,
        "digest": row.digest,
        "artifact_id": row.id,
        "created_at": records.ms_to_iso(row.created_ms),
        "created_by": row.created_by,
        "dataset": (document.get("dataset") or {}).get("name"),
        "disparate_impact": figures,
        "run_id": document.get("run_id"),
    }


def requirements(rules: Policy, risk_tier: str | None) -> list[str]:
    """The policy's report requirements that apply to a model of ``risk_tier``, in words."""
    found = []
    bias_rule, explanation_rule = rules.bias_evidence, rules.explanation_evidence
    if bias_rule is not None and bias_rule.applies_to(risk_tier):
        threshold = bias_rule.min_disparate_impact
        found += [
            f"a bias report on {attribute!r}"
            + (f" with disparate impact of at least {threshold:g}" if threshold else "")
            for attribute in bias_rule.attributes
        ]
    if explanation_rule is not None and explanation_rule.applies_to(risk_tier):
        found.append(f"a {explanation_rule.scope} explanation")
    return found


def require_report_evidence(
    store: Store, connection: Connection, state: VersionState, rules: Policy, action: str
) -> None:
    """Refuse ``action`` (``be approved``, ``become churn@production``) in one sentence naming
    each missing or failing report, when the policy's report requirements are not met."""
    gaps = evidence_gaps(store, connection, state, rules)
    if gaps:
        raise PolicyError(f"{state.ref} can not {action}: {'; '.join(gaps)}.")


def add_report_gaps(
    store: Store, connection: Connection, state: VersionState, rules: Policy, status: dict[str, Any]
) -> None:
    """Add the report gaps to a version status's ``reasons`` (``clew status``, the UI)."""
    gaps = evidence_gaps(store, connection, state, rules)
    if gaps and not (state.refusal()):
        status["reasons"] = [*status["reasons"], *gaps]
        status["meets_production_policy"] = False


def evidence_gaps(
    store: Store, connection: Connection, state: VersionState, rules: Policy
) -> list[str]:
    """Why the version's reports do not meet the policy's bias and explanation requirements."""
    tier = state.model.risk_tier
    bias_rule = (
        rules.bias_evidence
        if rules.bias_evidence and rules.bias_evidence.applies_to(tier)
        else None
    )
    explanation_rule = (
        rules.explanation_evidence
        if rules.explanation_evidence and rules.explanation_evidence.applies_to(tier)
        else None
    )
    if bias_rule is None and explanation_rule is None:
        return []
    documents = [d for _, d in _documents(store, state, report_rows(connection, state))]
    gaps = _bias_gaps(state, bias_rule, documents) if bias_rule else []
    if explanation_rule is not None:
        gaps += _explanation_gaps(state, explanation_rule, documents)
    return gaps


def _bias_gaps(
    state: VersionState, rule: BiasEvidence, documents: list[dict[str, Any]]
) -> list[str]:
    gaps = []
    for attribute in rule.attributes:
        measured = next(
            (
                d["attributes"][attribute]
                for d in documents
                if d.get("kind") == BIAS
                and d.get("post_training")
                and attribute in d.get("attributes", {})
            ),
            None,
        )
        if measured is None:
            gaps.append(
                f"the policy requires a bias report on {attribute!r} and {state.ref} has none "
                f"(record one with `clew bias {state.ref} DATA --attribute {attribute}`)"
            )
            continue
        if rule.min_disparate_impact is None:
            continue
        value = measured.get("disparate_impact")
        if value is None:
            why = "; ".join(measured.get("notes", [])) or "too few groups"
            gaps.append(
                f"the bias report on {attribute!r} has no disparate impact to compare with the "
                f"{rule.min_disparate_impact:g} the policy requires ({why})"
            )
        elif value < rule.min_disparate_impact:
            gaps.append(
                f"disparate impact on {attribute!r} is {value:.3g}, below the "
                f"{rule.min_disparate_impact:g} the policy requires"
            )
    return gaps


def _explanation_gaps(
    state: VersionState, rule: ExplanationEvidence, documents: list[dict[str, Any]]
) -> list[str]:
    if any(d.get("kind") == EXPLANATION and d.get("scope") == rule.scope for d in documents):
        return []
    return [
        f"the policy requires a {rule.scope} explanation and {state.ref} has none (record one "
        f"with `clew explain {state.ref} --data DATA`)"
    ]
