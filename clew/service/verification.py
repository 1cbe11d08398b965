"""One verification of a store's audit trail: the chain, the records, the signed checkpoints
and the signed capture batches, as one report.

``clew audit verify`` embedded and ``GET /api/v1/audit/verify`` on a server both build it
here, so a user sees the same verdict, and the same first failure, wherever they ask; the
report itself (``AuditVerification``) is a plain value in ``domain/audit.py``.
"""

from __future__ import annotations

from clew.domain.audit import AuditVerification
from clew.service import audit, record_check, signed_heads
from clew.store.location import Store


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
    from clew.service import capture_verification  # numpy and pyarrow: only when verifying

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
