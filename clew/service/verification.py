"""One verification of a store's audit trail: the chain, the records, the signed checkpoints
and the signed capture batches, as one report.

``clew audit verify`` embedded and ``GET /api/v1/audit/verify`` on a server both build it
here, so a user sees the same verdict, and the same first failure, wherever they ask.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from clew.domain.captures import BatchProblem
from clew.service import audit, capture_verification, record_check, signed_heads
from clew.service.audit import ChainBreak
from clew.service.record_check import RecordProblem
from clew.service.signed_heads import CheckpointProblem
from clew.store.location import Store


@dataclass(frozen=True)
class AuditVerification:
    """What ``verify_audit`` checked and every problem it found (none: ``ok``)."""

    entries_checked: int
    first_break: ChainBreak | None
    rows_checked: int
    row_problems: list[RecordProblem]
    checkpoints_checked: int
    checkpoint_problems: list[CheckpointProblem]
    batches_checked: int
    batch_problems: list[BatchProblem]

    @property
    def ok(self) -> bool:
        return self.failure() is None

    def failure(self) -> str | None:
        """The first problem as one sentence (checkpoints first: a rewritten chain would
        also re-hash cleanly), or None when everything verified."""
        if self.checkpoint_problems:
            first = self.checkpoint_problems[0]
            return f"signed checkpoint #{first.seq} no longer matches: {first.reason}."
        if self.first_break is not None:
            broken = self.first_break
            return f"the audit chain is broken at entry #{broken.seq}: {broken.reason}."
        if self.row_problems:
            return (
                f"{len(self.row_problems)} records differ from the audit chain; the first: "
                f"{self.row_problems[0].describe()}."
            )
        if self.batch_problems:
            return (
                f"{len(self.batch_problems)} of {self.batches_checked} capture batches failed "
                "verification."
            )
        return None

    def to_wire(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> AuditVerification:
        broken = data["first_break"]
        return cls(
            entries_checked=data["entries_checked"],
            first_break=ChainBreak(**broken) if broken else None,
            rows_checked=data["rows_checked"],
            row_problems=[RecordProblem(**problem) for problem in data["row_problems"]],
            checkpoints_checked=data["checkpoints_checked"],
            checkpoint_problems=[
                CheckpointProblem(**problem) for problem in data["checkpoint_problems"]
            ],
            batches_checked=data["batches_checked"],
            batch_problems=[BatchProblem(**problem) for problem in data["batch_problems"]],
        )


def verify_audit(store: Store, against: str | None = None) -> AuditVerification:
    """Recompute the hash chain, compare every covered row with its image, check the signed
    checkpoints (the store's own, or those exported to ``against``: a file or URI the caller
    named, read only for an embedded store) and re-check every signed capture batch."""
    checked, broken = audit.verify_chain(store)
    rows, row_problems = record_check.verify_records(store)
    signed, checkpoint_problems = (
        signed_heads.verify_against(store, against)
        if against
        else signed_heads.verify_stored(store)
    )
    batches, batch_problems = capture_verification.verify_batches(store)
    return AuditVerification(
        checked,
        broken,
        rows,
        row_problems,
        signed,
        checkpoint_problems,
        batches,
        batch_problems,
    )
