"""Validation findings and model reviews (SR 11-7) as values, and the rules that need no store.

A finding is what a validator found wrong with one model version: how severe, what, the
remediation required, who owns fixing it and by when, and where it stands. ``open`` and
``remediated`` findings are unresolved (remediation is the developer's claim until a validator
closes or accepts the finding); an unresolved ``high`` finding blocks promotion. A review is a
validator's periodic sign-off that a model is still fit for use; how often one is due depends
on the model's risk tier (the policy's ``reviews`` section, ``review_cadence``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from clew.domain import records
from clew.errors import InvalidInputError, PolicySyntaxError

SEVERITIES = ("low", "medium", "high")
BLOCKING_SEVERITY = "high"
OPEN, REMEDIATED, ACCEPTED, CLOSED = "open", "remediated", "accepted", "closed"
STATUSES = (OPEN, REMEDIATED, ACCEPTED, CLOSED)
UNRESOLVED = (OPEN, REMEDIATED)
# Statuses only a validator may set: they end a finding (accepted: the risk is accepted as is).
VALIDATOR_STATUSES = (ACCEPTED, CLOSED)
MAX_TEXT = 10_000
DAY_MS = 86_400_000

# Review states of a model, from best to worst.
CURRENT, NEVER_REVIEWED, REVALIDATION_REQUIRED, OVERDUE = (
    "current",
    "never reviewed",
    "revalidation required",
    "overdue",
)
DEFAULT_TIER = "default"
_DURATION = re.compile(r"^\s*(\d{1,5})\s*([dw])\s*$")


@dataclass(frozen=True)
class Finding:
    """One validation finding against a model version."""

    id: str
    model: str
    version: int
    severity: str
    description: str
    remediation: str
    owner: str
    due_ms: int | None
    status: str
    created_ms: int
    created_by: str
    updated_ms: int
    updated_by: str
    note: str = ""

    @property
    def ref(self) -> str:
        return f"{self.model}/{self.version}"

    @property
    def unresolved(self) -> bool:
        return self.status in UNRESOLVED

    @property
    def blocks_promotion(self) -> bool:
        return self.unresolved and self.severity == BLOCKING_SEVERITY

    def overdue(self, now_ms: int) -> bool:
        """Unresolved past its due date."""
        return self.unresolved and self.due_ms is not None and now_ms > self.due_ms

    def summary(self) -> str:
        """The finding in one line, for refusals and listings."""
        return f"{self.severity} finding {self.id} ({_shorten(self.description)})"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ref"] = self.ref
        data["due"] = _date_text(self.due_ms)
        data["created_at"] = records.ms_to_iso(self.created_ms)
        data["updated_at"] = records.ms_to_iso(self.updated_ms)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        names = cls.__dataclass_fields__
        return cls(**{key: value for key, value in data.items() if key in names})


@dataclass(frozen=True)
class Review:
    """A validator's review of a model at one version (a ``reviewed`` registry event)."""

    model: str
    version: int
    reviewed_by: str
    reviewed_ms: int
    comment: str
    event_id: str

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reviewed_at": records.ms_to_iso(self.reviewed_ms)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Review:
        names = cls.__dataclass_fields__
        return cls(**{key: value for key, value in data.items() if key in names})


@dataclass(frozen=True)
class ReviewStatus:
    """Where a model stands on validation: its tier and cadence, last review, next due date,
    and whether its newest version changed materially since the version last reviewed."""

    model: str
    risk_tier: str | None
    cadence_days: int | None
    latest_version: int | None
    last_review: Review | None
    next_due_ms: int | None
    state: str
    material_changes: list[str] = field(default_factory=list)
    open_findings: int = 0
    blocking_findings: int = 0

    @property
    def overdue(self) -> bool:
        return self.state == OVERDUE

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "risk_tier": self.risk_tier,
            "cadence_days": self.cadence_days,
            "latest_version": self.latest_version,
            "last_review": self.last_review.to_dict() if self.last_review else None,
            "next_due_ms": self.next_due_ms,
            "next_due": _date_text(self.next_due_ms),
            "state": self.state,
            "material_changes": list(self.material_changes),
            "open_findings": self.open_findings,
            "blocking_findings": self.blocking_findings,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReviewStatus:
        review = data.get("last_review")
        return cls(
            model=data["model"],
            risk_tier=data.get("risk_tier"),
            cadence_days=data.get("cadence_days"),
            latest_version=data.get("latest_version"),
            last_review=Review.from_dict(review) if review else None,
            next_due_ms=data.get("next_due_ms"),
            state=data["state"],
            material_changes=list(data.get("material_changes", [])),
            open_findings=int(data.get("open_findings", 0)),
            blocking_findings=int(data.get("blocking_findings", 0)),
        )


def review_state(
    *,
    now_ms: int,
    next_due_ms: int | None,
    reviewed: bool,
    material_changes: list[str],
) -> str:
    """The worst that applies: overdue, revalidation required (a material change since the
    reviewed version), never reviewed, else current."""
    if next_due_ms is not None and now_ms > next_due_ms:
        return OVERDUE
    if material_changes:
        return REVALIDATION_REQUIRED
    return CURRENT if reviewed else NEVER_REVIEWED


def check_severity(severity: str) -> str:
    if severity not in SEVERITIES:
        raise InvalidInputError(
            f"severity {severity!r} is not one of {', '.join(SEVERITIES)}; pick one of them."
        )
    return severity


def check_status(status: str) -> str:
    if status not in STATUSES:
        raise InvalidInputError(
            f"finding status {status!r} is not one of {', '.join(STATUSES)}; pick one of them."
        )
    return status


def check_text(value: str, what: str, *, required: bool) -> str:
    """Free text of a finding: a string, bounded, and present when ``required``."""
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise InvalidInputError(f"the {what} must be text of at most {MAX_TEXT} characters.")
    if required and not value.strip():
        raise InvalidInputError(f"a finding needs a {what}; say it in a sentence.")
    return value.strip()


def parse_due(text: str | None) -> int | None:
    """A due date as typed (``2027-03-31``, UTC end of that day) in ms, or None."""
    if text is None or text == "":
        return None
    try:
        day = dt.date.fromisoformat(text.strip()) if isinstance(text, str) else None
    except ValueError:
        day = None
    if day is None:
        raise InvalidInputError(
            f"due date {text!r} is not a date; write it as YYYY-MM-DD, e.g. 2027-03-31."
        )
    end = dt.datetime.combine(day, dt.time.max, tzinfo=dt.UTC)
    return int(end.timestamp() * 1000)


def review_cadence(document: str) -> dict[str, int]:
    """Days between reviews by risk tier, from a policy document's ``reviews`` section:
    ``reviews: {high: 180d, medium: 365d, default: 730d}`` (``d`` days or ``w`` weeks).

    Parsed apart from ``clew.domain.policy.parse`` so the section can grow on its own; a
    malformed section is refused with the policy's one-sentence syntax error.
    """
    import yaml

    data = yaml.safe_load(document) if document else None
    section = data.get("reviews") if isinstance(data, dict) else None
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise _syntax("reviews must be a mapping of risk tier to a duration such as 180d")
    return {str(tier): _days(value, str(tier)) for tier, value in section.items()}


def cadence_for(cadence: Mapping[str, int], risk_tier: str | None) -> int | None:
    """Days between reviews of a model of ``risk_tier``: its tier's, else ``default``'s."""
    if risk_tier is not None and risk_tier in cadence:
        return cadence[risk_tier]
    return cadence.get(DEFAULT_TIER)


def _days(value: Any, tier: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None or int(match[1]) == 0:
        raise _syntax(
            f"reviews.{tier} is {value!r}; write a whole number of days or weeks, e.g. 180d or 26w"
        )
    return int(match[1]) * (7 if match[2] == "w" else 1)


def _syntax(problem: str) -> PolicySyntaxError:
    return PolicySyntaxError(
        f"{problem}; fix the document and set it again (the previous policy stays in force)."
    )


def _date_text(value: int | None) -> str | None:
    if value is None:
        return None
    return dt.datetime.fromtimestamp(value / 1000, tz=dt.UTC).date().isoformat()


def _shorten(text: str, length: int = 80) -> str:
    line = " ".join(text.split())
    return line if len(line) <= length else line[: length - 1] + "…"
