"""Validation findings and model reviews (SR 11-7).

Each write names its model (a ref in the body, or the finding's own version), so the per-model
grant is checked here with ``require_role_on``: recording, changing or reviewing needs the
approver role on the model; the owner of a finding marking it remediated needs contributor.
The service then applies the policy's approver roles and separation of duties.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import Field

from clew.domain import findings as rules
from clew.domain.roles import Role
from clew.server.auth import require_role_on
from clew.server.deps import ActorDep, PrincipalDep, ServicesDep
from clew.server.routes.bodies import Body, Id, Name, PlainRoute, Text
from clew.server.routes.registry import event_wire
from clew.service import registry

router = APIRouter(prefix="/api/v1", tags=["findings"], route_class=PlainRoute)

Ref = Annotated[str, Field(min_length=1, max_length=400)]
Short = Annotated[str, Field(min_length=1, max_length=40)]
Day = Annotated[str, Query(min_length=1, max_length=40)]


class AddFinding(Body):
    ref: Ref
    severity: Short
    description: Text
    remediation: Text = ""
    owner: Name | None = None
    due: Short | None = None


class UpdateFinding(Body):
    note: Text
    status: Short | None = None
    severity: Short | None = None
    remediation: Text | None = None
    owner: Name | None = None
    due: Short | None = None

    def only_remediated(self) -> bool:
        others = (self.severity, self.remediation, self.owner, self.due)
        return self.status == rules.REMEDIATED and all(value is None for value in others)


class ReviewBody(Body):
    ref: Ref
    comment: Text


class ReviewDueBody(Body):
    due: Short
    reason: Text


def _model_of(ref: str) -> str:
    return registry.parse_model_ref(ref).name


@router.post("/findings", status_code=201)
def add_finding(
    body: AddFinding, services: ServicesDep, actor: ActorDep, principal: PrincipalDep
) -> dict[str, Any]:
    require_role_on(principal, _model_of(body.ref), Role.APPROVER)
    found = services.findings.add(
        body.ref,
        actor,
        severity=body.severity,
        description=body.description,
        remediation=body.remediation,
        owner=body.owner,
        due=body.due,
    )
    return found.to_dict()


@router.get("/findings")
def list_findings(
    services: ServicesDep,
    model: Annotated[str | None, Query(min_length=1, max_length=250)] = None,
    version: Annotated[int | None, Query(ge=1, le=2**31)] = None,
    status: Annotated[str | None, Query(min_length=1, max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
) -> list[dict[str, Any]]:
    found = services.findings.list_findings(model, version=version, status=status, limit=limit)
    return [finding.to_dict() for finding in found]


@router.get("/findings/{finding_id}")
def get_finding(finding_id: Id, services: ServicesDep) -> dict[str, Any]:
    return services.findings.get(finding_id).to_dict()


@router.post("/findings/{finding_id}")
def update_finding(
    finding_id: Id,
    body: UpdateFinding,
    services: ServicesDep,
    actor: ActorDep,
    principal: PrincipalDep,
) -> dict[str, Any]:
    found = services.findings.get(finding_id)
    needed = Role.CONTRIBUTOR if body.only_remediated() else Role.APPROVER
    require_role_on(principal, found.model, needed)
    updated = services.findings.update(
        finding_id,
        actor,
        body.note,
        status=body.status,
        severity=body.severity,
        remediation=body.remediation,
        owner=body.owner,
        due=body.due,
    )
    return updated.to_dict()


@router.post("/reviews", status_code=201)
def review(
    body: ReviewBody, services: ServicesDep, actor: ActorDep, principal: PrincipalDep
) -> dict[str, Any]:
    require_role_on(principal, _model_of(body.ref), Role.APPROVER)
    return services.reviews.review(body.ref, actor, body.comment).to_dict()


@router.get("/reviews")
def review_statuses(services: ServicesDep, as_of: Day | None = None) -> list[dict[str, Any]]:
    return [status.to_dict() for status in services.reviews.review_statuses(as_of)]


@router.post("/reviews/overdue")
def raise_overdue(services: ServicesDep, actor: ActorDep) -> list[dict[str, Any]]:
    return [event_wire(event) for event in services.reviews.raise_overdue(actor)]


@router.post("/reviews/{name}/due", status_code=201)
def set_review_due(
    name: Name, body: ReviewDueBody, services: ServicesDep, actor: ActorDep, principal: PrincipalDep
) -> dict[str, Any]:
    require_role_on(principal, name, Role.APPROVER)
    return event_wire(services.reviews.set_review_due(name, body.due, actor, body.reason))


@router.get("/reviews/{name}")
def reviews(name: Name, services: ServicesDep) -> list[dict[str, Any]]:
    return [item.to_dict() for item in services.reviews.reviews(name)]


@router.get("/reviews/{name}/status")
def review_status(name: Name, services: ServicesDep, as_of: Day | None = None) -> dict[str, Any]:
    return services.reviews.review_status(name, as_of).to_dict()
