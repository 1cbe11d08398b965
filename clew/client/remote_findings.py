"""Validation findings and model reviews over HTTP.

Answers come back as the values an embedded store returns (``Finding``, ``Review``,
``ReviewStatus``, ``RegistryEvent``); the server attributes every write to the token's user,
so the ``actor`` arguments are ignored.
"""

from __future__ import annotations

from typing import Any

from clew.client.transport import Transport, path_segment
from clew.domain.findings import Finding, Review, ReviewStatus
from clew.domain.records import RegistryEvent


class RemoteFindings:
    """``FindingService`` over HTTP."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def add(
        self,
        ref: str,
        actor: str,
        *,
        severity: str,
        description: str,
        remediation: str = "",
        owner: str | None = None,
        due: str | None = None,
    ) -> Finding:
        body = {
            "ref": ref,
            "severity": severity,
            "description": description,
            "remediation": remediation,
            "owner": owner,
            "due": due,
        }
        return Finding.from_dict(self._t.call("POST", "/findings", json_body=body))

    def update(
        self,
        finding_id: str,
        actor: str,
        note: str,
        *,
        status: str | None = None,
        severity: str | None = None,
        remediation: str | None = None,
        owner: str | None = None,
        due: str | None = None,
    ) -> Finding:
        body = {
            "note": note,
            "status": status,
            "severity": severity,
            "remediation": remediation,
            "owner": owner,
            "due": due,
        }
        path = f"/findings/{path_segment(finding_id)}"
        return Finding.from_dict(self._t.call("POST", path, json_body=body))

    def get(self, finding_id: str) -> Finding:
        return Finding.from_dict(self._t.call("GET", f"/findings/{path_segment(finding_id)}"))

    def list_findings(
        self,
        model: str | None = None,
        *,
        version: int | None = None,
        status: str | None = None,
        limit: int = 1000,
    ) -> list[Finding]:
        params: dict[str, Any] = {"limit": limit}
        for key, value in (("model", model), ("version", version), ("status", status)):
            if value is not None:
                params[key] = value
        return [Finding.from_dict(row) for row in self._t.call("GET", "/findings", params=params)]


class RemoteReviews:
    """``ReviewService`` over HTTP."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def review(self, ref: str, actor: str, comment: str) -> Review:
        body = {"ref": ref, "comment": comment}
        return Review.from_dict(self._t.call("POST", "/reviews", json_body=body))

    def reviews(self, model: str) -> list[Review]:
        rows = self._t.call("GET", f"/reviews/{path_segment(model)}")
        return [Review.from_dict(row) for row in rows]

    def review_status(self, model: str, as_of: str | None = None) -> ReviewStatus:
        params = {"as_of": as_of} if as_of is not None else None
        path = f"/reviews/{path_segment(model)}/status"
        return ReviewStatus.from_dict(self._t.call("GET", path, params=params))

    def review_statuses(self, as_of: str | None = None) -> list[ReviewStatus]:
        params = {"as_of": as_of} if as_of is not None else None
        rows = self._t.call("GET", "/reviews", params=params)
        return [ReviewStatus.from_dict(row) for row in rows]

    def raise_overdue(self, actor: str) -> list[RegistryEvent]:
        return self._t.records(RegistryEvent, "POST", "/reviews/overdue")

    def set_review_due(self, model: str, due: str, actor: str, reason: str) -> RegistryEvent:
        body = {"due": due, "reason": reason}
        path = f"/reviews/{path_segment(model)}/due"
        return self._t.record(RegistryEvent, "POST", path, json_body=body)
