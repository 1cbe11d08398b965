"""Validation findings and model reviews through the SDK: methods of ``Client`` and their
module functions (``clew.add_finding(...)`` on the default client).

Validators record findings against a version and close them; an unresolved high finding
blocks promotion. Reviews follow the policy's cadence by risk tier (see docs/compliance.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clew.domain.findings import Finding, Review, ReviewStatus
from clew.domain.records import RegistryEvent, VersionRecord

if TYPE_CHECKING:
    import pandas as pd

    from clew.client.client import Client
    from clew.service.protocols import Backend

__all__ = [
    "add_finding",
    "findings",
    "get_finding",
    "raise_overdue_reviews",
    "review_model",
    "review_status",
    "review_statuses",
    "reviews",
    "set_review_due",
    "update_finding",
]

VersionRef = str | VersionRecord
FINDING_COLUMNS = [
    "id",
    "ref",
    "severity",
    "status",
    "description",
    "remediation",
    "owner",
    "due",
    "created_by",
    "created_at",
    "updated_by",
    "updated_at",
    "note",
]
STATUS_COLUMNS = [
    "model",
    "risk_tier",
    "cadence_days",
    "latest_version",
    "last_reviewed",
    "last_reviewed_by",
    "next_due",
    "state",
    "open_findings",
    "blocking_findings",
    "material_changes",
]


class FindingsMixin:
    """Findings and reviews on either backend."""

    if TYPE_CHECKING:
        _service: Backend

        @property
        def actor(self) -> str: ...

    def add_finding(
        self,
        ref: VersionRef,
        severity: str,
        description: str,
        *,
        remediation: str = "",
        owner: str | None = None,
        due: str | None = None,
    ) -> Finding:
        """Record a validation finding (severity low, medium or high) against a version;
        ``due`` is a date (YYYY-MM-DD), ``owner`` defaults to the model's owner."""
        return self._service.findings.add(
            _ref(ref),
            self.actor,
            severity=severity,
            description=description,
            remediation=remediation,
            owner=owner,
            due=due,
        )

    def update_finding(self, finding_id: str, note: str, **changes: Any) -> Finding:
        """Change a finding's ``status`` (open, remediated, accepted, closed), ``severity``,
        ``remediation``, ``owner`` or ``due``, saying why in ``note``."""
        return self._service.findings.update(finding_id, self.actor, note, **changes)

    def get_finding(self, finding_id: str) -> Finding:
        return self._service.findings.get(finding_id)

    def findings(
        self,
        model: str | None = None,
        *,
        version: int | None = None,
        status: str | None = None,
    ) -> pd.DataFrame:
        """Findings, newest first, one row each (``status="unresolved"``: open or
        remediated)."""
        import pandas as pd  # loaded on first use: connecting must stay light

        found = self._service.findings.list_findings(model, version=version, status=status)
        rows = [finding.to_dict() for finding in found]
        return pd.DataFrame(
            [{c: row[c] for c in FINDING_COLUMNS} for row in rows], columns=FINDING_COLUMNS
        )

    def review_model(self, ref: VersionRef, comment: str) -> Review:
        """Record that you reviewed (validated) the version ``ref`` names."""
        return self._service.reviews.review(_ref(ref), self.actor, comment)

    def reviews(self, model: str) -> list[Review]:
        return self._service.reviews.reviews(model)

    def review_status(self, model: str, as_of: str | None = None) -> ReviewStatus:
        """Tier, cadence, last review, next due date, state and material changes of a model."""
        return self._service.reviews.review_status(model, as_of)

    def review_statuses(self, as_of: str | None = None) -> pd.DataFrame:
        """Every model's review status, one row each (at the end of the day ``as_of``)."""
        import pandas as pd

        statuses = self._service.reviews.review_statuses(as_of)
        return pd.DataFrame([_status_row(s) for s in statuses], columns=STATUS_COLUMNS)

    def raise_overdue_reviews(self) -> list[RegistryEvent]:
        """Raise a ``review_overdue`` event (webhooks deliver it) for each overdue model, once
        per due date."""
        return self._service.reviews.raise_overdue(self.actor)

    def set_review_due(self, model: str, due: str, reason: str) -> RegistryEvent:
        """Set the day (YYYY-MM-DD) ``model``'s next review is due, until it is reviewed
        (validators; audited); a past day makes the review overdue now."""
        return self._service.reviews.set_review_due(model, due, self.actor, reason)


def _status_row(status: ReviewStatus) -> dict[str, Any]:
    data = status.to_dict()
    last = status.last_review
    return {
        **{column: data.get(column) for column in STATUS_COLUMNS},
        "last_reviewed": last.to_dict()["reviewed_at"] if last else None,
        "last_reviewed_by": last.reviewed_by if last else None,
        "material_changes": "; ".join(status.material_changes),
    }


def _ref(ref: VersionRef) -> str:
    return ref.ref if isinstance(ref, VersionRecord) else ref


def _client() -> Client:
    from clew.client.default import get_client

    return get_client()


def add_finding(ref: VersionRef, severity: str, description: str, **options: Any) -> Finding:
    return _client().add_finding(ref, severity, description, **options)


def update_finding(finding_id: str, note: str, **changes: Any) -> Finding:
    return _client().update_finding(finding_id, note, **changes)


def get_finding(finding_id: str) -> Finding:
    return _client().get_finding(finding_id)


def findings(model: str | None = None, **options: Any) -> pd.DataFrame:
    return _client().findings(model, **options)


def review_model(ref: VersionRef, comment: str) -> Review:
    return _client().review_model(ref, comment)


def reviews(model: str) -> list[Review]:
    return _client().reviews(model)


def review_status(model: str, as_of: str | None = None) -> ReviewStatus:
    return _client().review_status(model, as_of)


def review_statuses(as_of: str | None = None) -> pd.DataFrame:
    return _client().review_statuses(as_of)


def raise_overdue_reviews() -> list[RegistryEvent]:
    return _client().raise_overdue_reviews()


def set_review_due(model: str, due: str, reason: str) -> RegistryEvent:
    return _client().set_review_due(model, due, reason)
