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
from dataclasses import asdict, dataclass
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

# A requirement's state on the approval form.
PRESENT, MISSING, FAILING = "present", "missing", "failing"
# Report documents already read and verified, by their digest.
Documents = dict[str, Any]


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
            rows = report_rows(connection, state)
            known = {row.digest: _read_document(self.store, state, row) for row in rows}
            checks = evidence_checks(self.store, connection, state, rules, known)
        listed = [_listed(row, d) for row, d in _documents(self.store, state, rows, known)]
        return {
            "required": [check.requirement for check in checks],
            "checks": [check.to_dict() for check in checks],
            "gaps": [check.gap for check in checks if check.gap is not None],
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
    store: Store, state: VersionState, rows: list[Any], known: Documents | None = None
) -> Iterator[tuple[Any, dict[str, Any]]]:
    """Each report row with its document, when the document is about this version's bytes.

    ``known`` holds documents already read and verified (``read_reports``), by digest: a row
    whose digest is there is not read again, so a write transaction reads no blob unless a
    report was recorded after the documents were read."""
    for row in rows:
        document = known.get(row.digest) if known is not None else None
        if document is None:
            document = _read_document(store, state, row)
        if isinstance(document, dict) and document.get("model", {}).get("digest") == (
            state.version.digest
        ):
            yield row, document


def _read_document(store: Store, state: VersionState, row: Any) -> Any:
    """The report's JSON, read through the blob store (which re-hashes it)."""
    try:
        return json.loads(store.blobs.read_bytes(row.digest))
    except (NotFoundError, ValueError) as error:
        raise IntegrityError(
            f"report {row.name} ({row.digest[:19]}) of {state.ref} cannot be read ({error}); "
            "run `clew audit verify`."
        ) from error


def read_reports(store: Store, ref: str) -> Documents:
    """The version's report documents by digest, read and verified before a write transaction
    (on S3 a blob read is a network call, which must not hold the store's write lock); empty
    when the policy in force requires no report of this version. The transaction then finds
    the report rows again and uses these documents for the digests it finds."""
    from clew.service import policy

    with store.db.read() as connection:
        state = get_version_state(connection, ref)
        if not _rules_that_apply(policy.current(connection).rules, state.model.risk_tier):
            return {}
        rows = report_rows(connection, state)
    return {row.digest: _read_document(store, state, row) for row in rows}


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


@dataclass(frozen=True)
class EvidenceCheck:
    """One report the policy requires, and whether the version has it: ``present``,
    ``missing`` or ``failing`` (then ``gap`` says why, with the figure in ``value``)."""

    requirement: str
    state: str
    gap: str | None = None
    value: float | None = None
    report: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def require_report_evidence(
    store: Store,
    connection: Connection,
    state: VersionState,
    rules: Policy,
    action: str,
    known: Documents | None = None,
) -> None:
    """Refuse ``action`` (``be approved``, ``become churn@production``) in one sentence naming
    each missing or failing report, when the policy's report requirements are not met."""
    gaps = evidence_gaps(store, connection, state, rules, known)
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
    store: Store,
    connection: Connection,
    state: VersionState,
    rules: Policy,
    known: Documents | None = None,
) -> list[str]:
    """Why the version's reports do not meet the policy's bias and explanation requirements."""
    checks = evidence_checks(store, connection, state, rules, known)
    return [check.gap for check in checks if check.gap is not None]


def evidence_checks(
    store: Store,
    connection: Connection,
    state: VersionState,
    rules: Policy,
    known: Documents | None = None,
) -> list[EvidenceCheck]:
    """Each bias and explanation report the policy requires of the version, checked."""
    bias_rule, explanation_rule = _rules_that_apply(rules, state.model.risk_tier) or (None, None)
    if bias_rule is None and explanation_rule is None:
        return []
    rows = report_rows(connection, state)
    found = list(_documents(store, state, rows, known))
    checks = _bias_checks(state, bias_rule, found) if bias_rule else []
    if explanation_rule is not None:
        checks.append(_explanation_check(state, explanation_rule, found))
    return checks


def _rules_that_apply(
    rules: Policy, tier: str | None
) -> tuple[BiasEvidence | None, ExplanationEvidence | None] | None:
    """The policy's report rules for a model of ``tier``; None when neither applies."""
    bias_rule = rules.bias_evidence
    explanation_rule = rules.explanation_evidence
    applying = (
        bias_rule if bias_rule and bias_rule.applies_to(tier) else None,
        explanation_rule if explanation_rule and explanation_rule.applies_to(tier) else None,
    )
    return applying if applying != (None, None) else None


def _bias_checks(
    state: VersionState, rule: BiasEvidence, found: list[tuple[Any, dict[str, Any]]]
) -> list[EvidenceCheck]:
    threshold = rule.min_disparate_impact
    checks = []
    for attribute in rule.attributes:
        wanted = f"a bias report on {attribute!r}" + (
            f" with disparate impact of at least {threshold:g}" if threshold else ""
        )
        measured = next(
            (
                (row.name, d["attributes"][attribute])
                for row, d in found
                if d.get("kind") == BIAS
                and d.get("post_training")
                and attribute in d.get("attributes", {})
            ),
            None,
        )
        if measured is None:
            gap = (
                f"the policy requires a bias report on {attribute!r} and {state.ref} has none "
                f"(record one with `clew bias {state.ref} DATA --attribute {attribute}`)"
            )
            checks.append(EvidenceCheck(wanted, MISSING, gap))
            continue
        report, figures = measured
        checks.append(_disparate_impact_check(wanted, attribute, threshold, report, figures))
    return checks


def _disparate_impact_check(
    wanted: str, attribute: str, threshold: float | None, report: str, figures: dict[str, Any]
) -> EvidenceCheck:
    value = figures.get("disparate_impact")
    if threshold is None:
        return EvidenceCheck(wanted, PRESENT, None, value, report)
    if value is None:
        why = "; ".join(figures.get("notes", [])) or "too few groups"
        gap = (
            f"the bias report on {attribute!r} has no disparate impact to compare with the "
            f"{threshold:g} the policy requires ({why})"
        )
        return EvidenceCheck(wanted, FAILING, gap, None, report)
    if value < threshold:
        gap = (
            f"disparate impact on {attribute!r} is {value:.3g}, below the {threshold:g} the "
            "policy requires"
        )
        return EvidenceCheck(wanted, FAILING, gap, value, report)
    return EvidenceCheck(wanted, PRESENT, None, value, report)


def _explanation_check(
    state: VersionState, rule: ExplanationEvidence, found: list[tuple[Any, dict[str, Any]]]
) -> EvidenceCheck:
    wanted = f"a {rule.scope} explanation"
    for row, document in found:
        if document.get("kind") == EXPLANATION and document.get("scope") == rule.scope:
            return EvidenceCheck(wanted, PRESENT, report=row.name)
    gap = (
        f"the policy requires a {rule.scope} explanation and {state.ref} has none (record one "
        f"with `clew explain {state.ref} --data DATA`)"
    )
    return EvidenceCheck(wanted, MISSING, gap)
