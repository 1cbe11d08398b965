"""What the audit trail reports: its entries, a verification and the signed checkpoints.

These are the plain values both backends return (``clew.audit_log()``, ``clew.verify_audit()``,
checkpoint exports): the store-bound work that builds them (appending, re-hashing, signing)
stays in ``service/audit.py``, ``service/record_check.py``, ``service/signed_heads.py`` and
``service/verification.py``, and the remote client builds them from a server's answers
without importing the store.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from clew.domain import digests

if TYPE_CHECKING:  # captures bring numpy and pyarrow, which appending an entry never needs
    from clew.domain.captures import BatchProblem

CHECKPOINT_FORMAT = "clew.audit.checkpoint/1"


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    time_ms: int
    actor: str
    action: str
    target: str
    request_id: str
    payload_digest: str
    prev_hash: str
    hash: str
    records_digest: str | None = None


@dataclass(frozen=True)
class ChainBreak:
    """The first entry whose stored hash no longer matches what its content implies."""

    seq: int
    reason: str


@dataclass(frozen=True)
class RecordProblem:
    """One row the chain does not vouch for, and why."""

    table: str
    key: str
    reason: str
    seq: int | None = None

    def describe(self) -> str:
        return f"{self.table} row {self.key}: {self.reason}"


@dataclass(frozen=True)
class Checkpoint:
    """The chain's head at ``seq``, signed by the key ``key_id``."""

    seq: int
    hash: str
    time_ms: int
    key_id: str
    signature: str

    def message(self) -> bytes:
        return checkpoint_message(self.seq, self.hash, self.time_ms)


@dataclass(frozen=True)
class CheckpointProblem:
    seq: int
    reason: str


def checkpoint_message(seq: int, hash_: str, time_ms: int) -> bytes:
    """The bytes signed: a domain tag keeps a checkpoint from passing for a capture root."""
    return digests.canonical_json(
        {"format": CHECKPOINT_FORMAT, "seq": seq, "hash": hash_, "time_ms": time_ms}
    )


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
        from clew.domain.captures import BatchProblem

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
