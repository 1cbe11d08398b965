"""A prediction's trace as values: its steps, their outcomes and its readable form.

``service/trace.py`` builds a ``Trace`` by checking each link against the store; a remote
client rebuilds the same value from the server's answer (``Trace.from_dict``), so both
backends return one type without the client importing store code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

VERIFIED, NOT_CHECKABLE, FAILED = "verified", "not_checkable", "failed"
OUTCOMES = (VERIFIED, NOT_CHECKABLE, FAILED)
MARKS = {VERIFIED: "✓", NOT_CHECKABLE: "?", FAILED: "✗"}


@dataclass(frozen=True)
class Check:
    """The outcome of checking one thing, and the sentence that says why."""

    outcome: str
    reason: str


@dataclass
class TraceStep:
    kind: str
    title: str
    outcome: str
    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"a trace step's outcome is one of {OUTCOMES}, not {self.outcome!r}")

    @property
    def verified(self) -> bool:
        return self.outcome == VERIFIED

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TraceStep:
        return cls(data["kind"], data["title"], data["outcome"], data["reason"], data["details"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "title": self.title,
            "outcome": self.outcome,
            "verified": self.verified,
            "reason": self.reason,
            "details": self.details,
        }


@dataclass
class Trace:
    """The thread of one prediction; ``str(trace)`` is the readable form."""

    prediction_id: str
    steps: list[TraceStep]

    @property
    def outcome(self) -> str:
        """Failed if any step failed; else not checkable if any step was; else verified."""
        found = {step.outcome for step in self.steps}
        return next((outcome for outcome in (FAILED, NOT_CHECKABLE) if outcome in found), VERIFIED)

    @property
    def verified(self) -> bool:
        return self.outcome == VERIFIED

    def step(self, kind: str) -> TraceStep:
        for candidate in self.steps:
            if candidate.kind == kind:
                return candidate
        raise KeyError(kind)

    def steps_of(self, kind: str) -> list[TraceStep]:
        return [step for step in self.steps if step.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        return {
            "prediction_id": self.prediction_id,
            "outcome": self.outcome,
            "verified": self.verified,
            "steps": [step.to_dict() for step in self.steps],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trace:
        return cls(data["prediction_id"], [TraceStep.from_dict(step) for step in data["steps"]])

    def render(self) -> str:
        lines = [f"trace of prediction {self.prediction_id}"]
        for step in self.steps:
            lines.append(f"{MARKS[step.outcome]} {step.kind.replace('_', ' ')}: {step.title}")
            lines.append(f"    {step.reason}")
            lines.extend(f"    {line}" for line in _detail_lines(step))
        lines.append(summary([step.outcome for step in self.steps]))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()


def summary(outcomes: list[str]) -> str:
    """One line for the whole thread: failures first, then what could not be checked."""
    failed, unchecked = outcomes.count(FAILED), outcomes.count(NOT_CHECKABLE)
    if failed:
        return f"{failed} of {len(outcomes)} steps failed"
    if unchecked:
        steps = "step" if unchecked == 1 else "steps"
        return (
            f"{len(outcomes) - unchecked} of {len(outcomes)} steps verified, "
            f"{unchecked} {steps} not checkable"
        )
    return f"all {len(outcomes)} steps verified"


def _signature_text(signature: dict[str, Any] | None) -> str:
    if not signature:
        return ""
    key = f" key {signature['key_id'][:19]}..." if signature["key_id"] else ""
    return f" [{signature['state']}{key}]"


def _detail_lines(step: TraceStep) -> list[str]:
    details = step.details
    if step.kind == "prediction":
        return [f"output {details['output']!r}  label {details['label']!r}"]
    if step.kind == "approvals":
        return [
            f"{e['time']} {e['kind']}"
            + (f" {e['alias']}" if e["alias"] else "")
            + f" by {e['actor']}"
            + (f": {e['comment']}" if e["comment"] else "")
            + _signature_text(e.get("signature"))
            for e in details["events"]
        ]
    if step.kind == "training_run":
        lines = [f"params {details['params']}", f"metrics {details['metrics']}"]
        if details.get("seed") is not None:
            lines.append(f"seed {details['seed']}")
        code = details.get("code")
        if code:
            lines.append(f"code {code.get('commit')} {code.get('permalink') or ''}".rstrip())
        environment = details.get("environment")
        if environment:
            libraries = environment.get("libraries", {})
            shown = ", ".join(f"{k} {v}" for k, v in sorted(libraries.items()))
            lines.append(f"environment python {environment.get('python')}; {shown}")
        return lines
    if step.kind in ("input_data", "data_source"):
        made = ", ".join(f"{p['run']} {p['name']}" for p in details["produced_by"])
        lines = [f"produced by {made}"] if made else []
        if details.get("uri"):
            lines.append(f"uri {details['uri']}")
        return lines
    return []
