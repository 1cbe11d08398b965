"""What ``clew reproduce`` needs to re-run a registered version, and the report it signs.

Plain values shared by both backends: the plan (commit, diff, command, inputs, environment
and metrics of the run that produced a version) travels from the store to the caller, who
re-runs it on their own machine; the findings travel back and the store signs the verdict.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from clew.domain import digests, signatures

BIT_IDENTICAL = "bit-identical"
WITHIN_TOLERANCE = "within-tolerance"
NOT_REPRODUCED = "not-reproduced"
VERDICTS = (BIT_IDENTICAL, WITHIN_TOLERANCE, NOT_REPRODUCED)

INPUTS_TAG = "clew.inputs"  # a run's tag: path it read → digest, kept by the SDK
REPORT_NAME = "reproduction"  # the report kind a policy names in production.evidence.reports
FAILED_REPORT_NAME = "reproduction-failed"  # evidence too, but never satisfies that rule
REPORT_FORMAT = "clew.reproduction/v1"


@dataclass(frozen=True)
class PlannedInput:
    """One input of the recorded run: where it was read from and the bytes it had."""

    artifact_id: str
    type: str
    name: str
    digest: str
    path: str | None  # relative to the repository, or absolute; None when not a local file
    uri: str | None  # a by-reference source
    kind: str | None  # "file" or "directory" for stored bytes
    size: int | None = None
    etag: str | None = None


@dataclass(frozen=True)
class ReproductionPlan:
    """Everything recorded about how version ``ref`` was made."""

    ref: str
    version_digest: str
    model_artifact_id: str
    model_name: str
    run_id: str
    commit: str
    dirty: bool
    diff_digest: str | None
    script: str | None
    argv: list[str]
    cwd: str
    in_repository: bool
    inputs: list[PlannedInput] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReproductionPlan:
        values = dict(data)
        values["inputs"] = [PlannedInput(**item) for item in data.get("inputs", [])]
        return cls(**values)


@dataclass(frozen=True)
class ReproductionReport:
    """A signed verdict about one version, stored as a ``report`` artifact linked to it."""

    artifact_id: str
    name: str
    verdict: str
    body: dict[str, Any]
    signature: str
    key_id: str

    @property
    def reproduced(self) -> bool:
        return self.verdict != NOT_REPRODUCED

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReproductionReport:
        return cls(**data)


def report_message(body: dict[str, Any]) -> bytes:
    """The bytes a reproduction report's signature covers: its canonical JSON."""
    return digests.canonical_json(body)


def verify_report(document: dict[str, Any], public_key_pem: bytes) -> bool:
    """Whether a stored report (``{"report": ..., "signature": ...}``) was signed by the key."""
    signature = document.get("signature") or {}
    if signature.get("key_id") != signatures.key_id(public_key_pem):
        return False
    return signatures.verify(
        public_key_pem, report_message(document["report"]), str(signature.get("value", ""))
    )
