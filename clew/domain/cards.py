"""Structured model cards as values: the edited fields, the facts lineage knows, and the forms a
card is exported in (JSON, the SageMaker Model Card shape, HTML; PDF in clew/client/cards.py).

A card has two halves. ``facts`` come from the records on every read (version, digest, risk
tier, training data, metrics, approvals, monitoring status, open findings, explanation and bias
reports), so they can not drift from them. ``edited`` holds what only people know (overview,
intended and out-of-scope uses, limitations, ethical considerations, owners, business
details); each edit is a new revision. Every renderer escapes every value, so a field holding
``<script>`` is shown as text, never run.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from clew.errors import InvalidInputError

# Edited fields: name -> what it says (the HTML and PDF headings).
TEXT_FIELDS: dict[str, str] = {
    "overview": "Overview",
    "intended_uses": "Intended uses",
    "out_of_scope_uses": "Out-of-scope uses",
    "limitations": "Limitations",
    "ethical_considerations": "Ethical considerations",
    "business_problem": "Business problem",
    "business_stakeholders": "Business stakeholders",
    "line_of_business": "Line of business",
}
LIST_FIELDS = ("owners",)
EDITABLE = (*TEXT_FIELDS, *LIST_FIELDS)
MAX_FIELD = 20_000
MAX_OWNERS = 50
SAGEMAKER_SECTIONS = (
    "model_overview",
    "intended_uses",
    "business_details",
    "training_details",
    "evaluation_details",
    "additional_information",
)
_RISK_RATINGS = {"high": "High", "medium": "Medium", "low": "Low"}
FORMATS = ("json", "sagemaker", "html", "pdf")
_CSP = "default-src 'none'; style-src 'unsafe-inline'"


@dataclass(frozen=True)
class Card:
    """One version's model card: edited fields (at ``revision``; 0 = never edited) and facts."""

    model: str
    version: int
    revision: int
    edited: dict[str, Any]
    facts: dict[str, Any]
    edited_by: str | None = None
    edited_ms: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ref(self) -> str:
        return f"{self.model}/{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "ref": self.ref,
            "revision": self.revision,
            "edited_by": self.edited_by,
            "edited_ms": self.edited_ms,
            "edited": complete(self.edited),
            "facts": self.facts,
            "history": list(self.history),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Card:
        return cls(
            model=data["model"],
            version=int(data["version"]),
            revision=int(data["revision"]),
            edited=dict(data["edited"]),
            facts=dict(data["facts"]),
            edited_by=data.get("edited_by"),
            edited_ms=data.get("edited_ms"),
            history=list(data.get("history", [])),
        )


def complete(edited: Mapping[str, Any]) -> dict[str, Any]:
    """Every editable field, empty where never written."""
    return {name: edited.get(name, _empty(name)) for name in EDITABLE}


def check_edits(changes: Mapping[str, Any]) -> dict[str, Any]:
    """The edited fields checked: known names, text of bounded size, owners a list of names."""
    if not isinstance(changes, Mapping) or not changes:
        raise InvalidInputError(f"a card edit names at least one field of: {', '.join(EDITABLE)}.")
    unknown = sorted(str(name) for name in changes if name not in EDITABLE)
    if unknown:
        raise InvalidInputError(
            f"a card has no editable field {', '.join(unknown)}; edit one of {', '.join(EDITABLE)}"
            " (the rest come from lineage)."
        )
    checked: dict[str, Any] = {}
    for name, value in changes.items():
        checked[name] = _owners(value) if name in LIST_FIELDS else _text(name, value)
    return checked


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_FIELD:
        raise InvalidInputError(
            f"card field {name} must be text of at most {MAX_FIELD} characters."
        )
    return value.strip()


def _owners(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [part for part in (piece.strip() for piece in value.split(",")) if part]
    valid = isinstance(value, list) and len(value) <= MAX_OWNERS
    if not valid or not all(isinstance(item, str) and 0 < len(item) <= 200 for item in value):
        raise InvalidInputError(
            f"card field owners must be a list of at most {MAX_OWNERS} names (or 'a, b')."
        )
    return [item.strip() for item in value]


def _empty(name: str) -> Any:
    return [] if name in LIST_FIELDS else ""


# --- the SageMaker Model Card shape -----------------------------------------------------------


def to_sagemaker(card: Card) -> dict[str, Any]:
    """The card in the SageMaker Model Card JSON content shape (schema 0.1's sections)."""
    edited, facts = card.to_dict()["edited"], card.facts
    run = facts.get("training_run") or {}
    return {
        "model_overview": {
            "model_name": card.model,
            "model_version": card.version,
            "model_description": edited["overview"],
            "model_owner": ", ".join(edited["owners"]) or facts.get("owner", ""),
            "model_creator": facts.get("created_by", ""),
            "model_artifact": [facts.get("digest", "")],
        },
        "intended_uses": {
            "purpose_of_model": edited["overview"],
            "intended_uses": edited["intended_uses"],
            "risk_rating": _RISK_RATINGS.get(str(facts.get("risk_tier")).lower(), "Unknown"),
            "explanations_for_risk_rating": f"risk tier {facts.get('risk_tier') or 'not set'}",
        },
        "business_details": {
            "business_problem": edited["business_problem"],
            "business_stakeholders": edited["business_stakeholders"],
            "line_of_business": edited["line_of_business"],
        },
        "training_details": {
            "training_job_details": {
                "training_arn": run.get("id", ""),
                "training_datasets": [
                    f"{item['type']}:{item['name']}@{item['digest']}"
                    for item in facts.get("training_data", [])
                ],
                "hyper_parameters": [
                    {"name": key, "value": str(value)}
                    for key, value in sorted((run.get("params") or {}).items())
                ],
                "training_metrics": _metric_data(run.get("metrics") or {}),
            },
        },
        "evaluation_details": [
            {
                "name": f"{card.ref} registered metrics",
                "metric_groups": [
                    {"name": "metrics", "metric_data": _metric_data(facts.get("metrics") or {})}
                ],
            }
        ],
        "additional_information": {
            "ethical_considerations": edited["ethical_considerations"],
            "caveats_and_recommendations": edited["limitations"],
            "custom_details": {
                "out_of_scope_uses": edited["out_of_scope_uses"],
                "clew_ref": card.ref,
                "clew_card_revision": str(card.revision),
            },
        },
    }


def from_sagemaker(document: Any) -> dict[str, Any]:
    """The edited fields a SageMaker Model Card JSON document holds; facts are not imported
    (lineage knows them)."""
    if not isinstance(document, Mapping):
        raise InvalidInputError("a SageMaker model card must be a JSON object of its sections.")
    unknown = sorted(str(key) for key in document if key not in SAGEMAKER_SECTIONS)
    if unknown:
        raise InvalidInputError(
            f"{', '.join(unknown)} is not a SageMaker model card section; expected "
            f"{', '.join(SAGEMAKER_SECTIONS)}."
        )
    overview = _section(document, "model_overview")
    uses = _section(document, "intended_uses")
    business = _section(document, "business_details")
    extra = _section(document, "additional_information")
    details = extra.get("custom_details")
    custom: Mapping[str, Any] = details if isinstance(details, Mapping) else {}
    found = {
        "overview": overview.get("model_description") or uses.get("purpose_of_model"),
        "intended_uses": uses.get("intended_uses"),
        "out_of_scope_uses": custom.get("out_of_scope_uses"),
        "limitations": extra.get("caveats_and_recommendations"),
        "ethical_considerations": extra.get("ethical_considerations"),
        "business_problem": business.get("business_problem"),
        "business_stakeholders": business.get("business_stakeholders"),
        "line_of_business": business.get("line_of_business"),
        "owners": overview.get("model_owner"),
    }
    return check_edits({name: value for name, value in found.items() if value})


def _section(document: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = document.get(name) or {}
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"SageMaker model card section {name} must be a JSON object.")
    return value


def _metric_data(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {"name": key, "type": "number", "value": value}
        for key, value in sorted(metrics.items())
        if isinstance(value, int | float)
    ]


# --- readable forms ---------------------------------------------------------------------------


def sections(card: Card) -> list[tuple[str, list[str]]]:
    """The card as headed sections of plain lines (shared by HTML and PDF)."""
    edited, facts = card.to_dict()["edited"], card.facts
    found = [
        (
            "Model",
            [
                f"{card.ref} ({facts.get('digest', '')})",
                f"Risk tier: {facts.get('risk_tier') or 'not set'}",
                f"Owners: {', '.join(edited['owners']) or facts.get('owner', '')}",
                f"Status: {facts.get('status', '')}",
                f"Card revision {card.revision}"
                + (f" by {card.edited_by}" if card.edited_by else ""),
            ],
        )
    ]
    found += [(title, [edited[name] or "(not written yet)"]) for name, title in TEXT_FIELDS.items()]
    found.append(
        (
            "Training data",
            [_artifact_line(item) for item in facts.get("training_data", [])]
            or ["(none recorded)"],
        )
    )
    found.append(
        (
            "Evaluation metrics",
            [f"{k}: {v}" for k, v in sorted((facts.get("metrics") or {}).items())] or ["(none)"],
        )
    )
    for kind, title in (("explanation", "Explanations"), ("bias", "Bias")):
        reports = facts.get("reports", {}).get(kind, [])
        found.append((title, [_artifact_line(item) for item in reports] or ["(no report)"]))
    found.append(
        (
            "Approvals",
            [f"{a['actor']} at {a['time']}: {a['comment']}" for a in facts.get("approvals", [])]
            or ["(none)"],
        )
    )
    monitoring = facts.get("monitoring", {})
    violations = len(monitoring.get("open_violations", []))
    status = f"status {monitoring.get('status', '')}, {violations} open violation(s)"
    found.append(("Monitoring", [status]))
    found.append(
        (
            "Open findings",
            [
                f"{f['severity']}: {f['description']} (owner {f['owner']}, due "
                f"{f['due'] or 'none'})"
                for f in facts.get("open_findings", [])
            ]
            or ["(none)"],
        )
    )
    return found


def _artifact_line(item: Mapping[str, Any]) -> str:
    return f"{item.get('type', '')}:{item.get('name', '')} {item.get('digest', '')}"


def to_html(card: Card) -> str:
    """A self-contained HTML page of the card; every value escaped, no script."""
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        f"<title>Model card {html.escape(card.ref)}</title>",
        "<style>body{font-family:sans-serif;max-width:50em;margin:2em auto}"
        "h2{border-bottom:1px solid #ccc}p{white-space:pre-wrap}</style></head><body>",
        f"<h1>Model card: {html.escape(card.ref)}</h1>",
    ]
    for title, lines in sections(card):
        parts.append(f"<h2>{html.escape(title)}</h2>")
        parts += [f"<p>{html.escape(str(line))}</p>" for line in lines]
    parts.append("</body></html>")
    return "\n".join(parts)
