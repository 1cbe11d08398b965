"""The audit trail through the SDK: entries and verification, embedded or from a server.

Both backends have an ``audit`` attribute with the same methods, so ``clew audit log`` and
``clew audit verify`` work against a store directory, a database URL or a server address
alike. ``EmbeddedAudit`` is here; the backend over HTTP is ``client/remote_audit.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clew.domain.audit import AuditEntry, AuditVerification
from clew.errors import InvalidInputError
from clew.service import audit, signed_heads
from clew.service.verification import verify_audit
from clew.store.location import Store

if TYPE_CHECKING:
    from clew.service.protocols import Backend


def server_host_only(what: str, uri: str) -> InvalidInputError:
    """The refusal for an operation that needs the store itself while ``uri`` is a server."""
    return InvalidInputError(
        f"{what} works on the store itself and {uri} is a clew server; run it on the server "
        "host with --uri (or CLEW_URI) naming the store's directory or database."
    )


class EmbeddedAudit:
    """The audit services of one store, called in this process."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def entries(
        self,
        target: str | None = None,
        limit: int = 100,
        actor: str | None = None,
        action: str | None = None,
    ) -> list[AuditEntry]:
        return audit.entries(self.store, target, limit, actor=actor, action=action)

    def verify(self, against: str | None = None) -> AuditVerification:
        return verify_audit(self.store, against)

    def export_checkpoints(self, destination: str, retain_days: int | None = None) -> int:
        return signed_heads.export(self.store, destination, retain_days=retain_days)


class AuditMixin:
    """``Client`` methods for the audit trail (``self._service`` is either backend)."""

    if TYPE_CHECKING:
        _service: Backend

    def audit_log(
        self,
        target: str | None = None,
        limit: int = 100,
        *,
        actor: str | None = None,
        action: str | None = None,
    ) -> list[AuditEntry]:
        """Audit entries, newest first; ``action`` matches a prefix (``model.``)."""
        return self._service.audit.entries(target, limit, actor, action)

    def verify_audit(self, against: str | None = None) -> AuditVerification:
        """Re-check the chain, the records, the signed checkpoints and the capture batches;
        ``against`` names checkpoints exported earlier (embedded stores only)."""
        return self._service.audit.verify(against)

    def export_checkpoints(self, destination: str, retain_days: int | None = None) -> int:
        """Sign the chain head and write every signed checkpoint to ``destination`` (a file
        or an s3:// URI, on the store's host); returns how many."""
        return self._service.audit.export_checkpoints(destination, retain_days)
