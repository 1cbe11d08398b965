"""Models: the inventory, one model's versions and aliases, and the version page (the live
model card) with its approve / reject / promote forms.

Every decision is the service's: the forms call the container's ``approvals`` and
``promotion`` services with the signed-in actor, and a refusal (self-approval, a role the
policy does not allow, missing evidence) comes back as the policy's own sentence, shown on the
page.
"""

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.responses import JSONResponse, Response

from clew.domain import cards
from clew.errors import ClewError
from clew.server.permissions import APPROVE, PROMOTE
from clew.server.ui import dashboard, monitoring
from clew.server.ui.dashboard import REVIEW_STATES, Filters
from clew.server.ui.pages import Offset, Page, VersionNumber
from clew.service import inventory
from clew.service.model_card import model_card, verify_version

PAGE_SIZE = 50
VERSIONS_SHOWN = 100
DECISIONS = ("approve", "reject")
SUGGESTED_ALIASES = ("production", "staging", "champion", "challenger")


def add_routes(router: APIRouter, page: Any, action: Any) -> None:
    @router.get("/models", name="ui.models")
    def models(
        current: Annotated[Page, Depends(page)],
        q: str = "",
        owner: str = "",
        risk_tier: str = "",
        review: str = "",
        sort: str = "name",
        desc: bool = False,
        offset: Offset = 0,
    ) -> Response:
        sort = sort if sort in inventory.SORTS else "name"
        filters = Filters(q.strip(), owner, risk_tier, review, sort, desc)
        found = _inventory(current, filters, max(offset, 0), PAGE_SIZE)
        names = [row.model.name for row in found.rows]
        return current.render(
            "models.html",
            page=found,
            q=q,
            owner=owner,
            risk_tier=risk_tier,
            review=review,
            review_states=REVIEW_STATES,
            sort=sort,
            desc=desc,
            sorts=inventory.SORTS,
            page_size=PAGE_SIZE,
            monitor=monitoring.summaries(current, found.rows),
            reviews=current.services.reviews.statuses_for(names),
            violations=current.services.reviews.last_violations(names),
        )

    @router.get("/models.csv", name="ui.models_csv")
    def models_csv(
        current: Annotated[Page, Depends(page)],
        q: str = "",
        owner: str = "",
        risk_tier: str = "",
        review: str = "",
        sort: str = "name",
        desc: bool = False,
    ) -> Response:
        sort = sort if sort in inventory.SORTS else "name"
        filters = Filters(q.strip(), owner, risk_tier, review, sort, desc)
        text = dashboard.inventory_csv(
            current, lambda offset, limit: _inventory(current, filters, offset, limit)
        )
        headers = {"Content-Disposition": 'attachment; filename="clew-inventory.csv"'}
        return Response(text, media_type="text/csv; charset=utf-8", headers=headers)

    @router.get("/models/{name}", name="ui.model")
    def model(name: str, current: Annotated[Page, Depends(page)]) -> Response:
        overview = inventory.model_overview(current.store, name, VERSIONS_SHOWN)
        latest = overview.model.last_version
        monitor = monitoring.summary(current, f"{name}/{latest}") if latest else None
        return current.render("model.html", overview=overview, monitor=monitor)

    @router.get("/models/{name}/versions/{version}", name="ui.version")
    def version_page(
        name: str,
        version: VersionNumber,
        current: Annotated[Page, Depends(page)],
        done: str = "",
    ) -> Response:
        return _version(current, name, version, notice=done or None)

    @router.get("/models/{name}/versions/{version}/card", name="ui.version_card")
    def card_page(
        name: str, version: VersionNumber, current: Annotated[Page, Depends(page)]
    ) -> Response:
        """The structured model card (every value escaped; clew/domain/cards.py)."""
        found = current.services.cards.card(f"{name}/{version}")
        return Response(cards.to_html(found), media_type="text/html; charset=utf-8")

    @router.get("/models/{name}/versions/{version}/integrity.json", name="ui.version_integrity")
    def integrity(
        name: str, version: VersionNumber, current: Annotated[Page, Depends(page)]
    ) -> Response:
        return JSONResponse(asdict(verify_version(current.store, name, version)))

    @router.post("/models/{name}/versions/{version}/decide", name="ui.version_approve")
    def decide(
        name: str, version: VersionNumber, current: Annotated[Page, Depends(action)]
    ) -> Response:
        ref = f"{name}/{version}"
        decision = current.form.get("decision", "")
        comment = current.form.get("comment", "")
        service = current.services.approvals
        try:
            if decision == "approve":
                service.approve(ref, current.actor, comment)
            elif decision == "reject":
                service.reject(ref, current.actor, comment)
            else:
                return _version(current, name, version, problem="choose approve or reject.")
        except ClewError as refusal:
            return _refused(current, name, version, refusal)
        notice = f"{ref} {decision}d by {current.actor}"
        return current.redirect("ui.version", {"done": notice}, name=name, version=version)

    @router.post("/models/{name}/versions/{version}/promote", name="ui.version_promote")
    def promote(
        name: str, version: VersionNumber, current: Annotated[Page, Depends(action)]
    ) -> Response:
        ref = f"{name}/{version}"
        alias = current.form.get("alias", "").strip()
        comment = current.form.get("comment", "")
        new_alias = current.form.get("new_alias") == "1"
        try:
            current.services.promotion.promote(ref, alias, current.actor, comment, new_alias)
        except ClewError as refusal:
            return _refused(current, name, version, refusal)
        notice = f"{name}@{alias} now points at {ref}"
        return current.redirect("ui.version", {"done": notice}, name=name, version=version)


def _inventory(current: Page, filters: Filters, offset: int, limit: int) -> inventory.InventoryPage:
    """One page of the inventory under ``filters``; a validation-state filter first asks which
    models are in that state (it is derived, not stored)."""
    names = None
    if filters.review in REVIEW_STATES:
        statuses = current.services.reviews.review_statuses()
        names = [status.model for status in statuses if status.state == filters.review]
    return inventory.inventory(
        current.store,
        search=filters.q,
        owner=filters.owner,
        risk_tier=filters.risk_tier,
        sort=filters.sort,
        descending=filters.desc,
        offset=offset,
        limit=limit,
        names=names,
    )


def _refused(current: Page, name: str, version: int, refusal: ClewError) -> Response:
    """The version page again, with the service's reason and the user's input kept.

    It is answered as a page that loaded fine (200): the refusal is its content, in the
    alert box, and browsers would otherwise log a failed resource load.
    """
    return _version(current, name, version, problem=str(refusal))


def _version(
    current: Page,
    name: str,
    version: int,
    *,
    notice: str | None = None,
    problem: str | None = None,
) -> Response:
    card = model_card(current.store, name, version)
    return current.render(
        "version.html",
        card=card,
        notice=notice,
        problem=problem,
        form=current.form,
        may_approve=current.may(APPROVE),
        may_promote=current.may(PROMOTE),
        suggested_aliases=SUGGESTED_ALIASES,
        monitor=monitoring.summary(current, card.version.ref, card.status),
        evidence=current.services.explanations.approval_evidence(card.version.ref),
    )
