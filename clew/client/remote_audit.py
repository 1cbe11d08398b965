"""The audit trail from a clew server: entries, verification and checkpoint exports.

The server runs the checks next to its store. What a server must not do for a client (read
or write a file the client names) this process does itself: it writes the checkpoint export
the server signed, and reads the export the server checks its chain against.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any

from clew.domain import checkpoint_exports
from clew.domain.audit import AuditEntry, AuditVerification, Checkpoint, CheckpointProblem

if TYPE_CHECKING:
    from clew.client.transport import Transport


class RemoteAudit:
    """The same over HTTP: the server runs the checks next to its store."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def entries(
        self,
        target: str | None = None,
        limit: int = 100,
        actor: str | None = None,
        action: str | None = None,
    ) -> list[AuditEntry]:
        filters = {"target": target, "actor": actor, "action": action}
        params: dict[str, Any] = {k: v for k, v in filters.items() if v is not None}
        rows = self._t.call("GET", "/audit", params={**params, "limit": limit})
        return [AuditEntry(**row) for row in rows]

    def verify(self, against: str | None = None) -> AuditVerification:
        """The server's report; with ``against``, this process reads the export (a server
        never reads where a client names) and the server checks its chain against it."""
        found = checkpoint_exports.read_export(against) if against is not None else None
        report = AuditVerification.from_wire(self._t.call("GET", "/audit/verify"))
        if found is None:
            return report
        body = {"checkpoints": [asdict(checkpoint) for checkpoint in found]}
        checked = self._t.call("POST", "/audit/checkpoints/verify", json_body=body)
        problems = [CheckpointProblem(**p) for p in checked["problems"]]
        return replace(report, checkpoints_checked=checked["checked"], checkpoint_problems=problems)

    def export_checkpoints(self, destination: str, retain_days: int | None = None) -> int:
        """The server signs its head; this process writes the export where it was told."""
        rows = self._t.call("POST", "/audit/checkpoints")
        found = [Checkpoint(**row) for row in rows]
        return checkpoint_exports.write_export(destination, found, retain_days)
