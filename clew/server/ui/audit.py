"""The audit log: newest first, filtered by target, actor or action, paged by sequence number.

Verifying the chain reads every entry, so the page loads at once and asks for the verdict
separately (``verify.json``); a long history never slows the listing down.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.responses import JSONResponse, Response

from clew.server.ui.pages import Offset, Page
from clew.service import audit, record_check

PAGE_SIZE = 100


def add_routes(router: APIRouter, page: Any, action: Any) -> None:
    @router.get("/audit", name="ui.audit")
    def audit_log(
        current: Annotated[Page, Depends(page)],
        target: str = "",
        actor: str = "",
        action: str = "",
        before: Offset | None = None,
    ) -> Response:
        found = audit.entries(
            current.store,
            target.strip() or None,
            PAGE_SIZE + 1,
            actor=actor.strip() or None,
            action=action.strip() or None,
            before_seq=before,
        )
        shown = found[:PAGE_SIZE]
        older = shown[-1].seq if len(found) > PAGE_SIZE else None
        return current.render(
            "audit.html",
            entries=shown,
            target=target,
            actor_filter=actor,
            action_filter=action,
            before=before,
            older=older,
        )

    @router.get("/audit/verify.json", name="ui.audit_verify")
    def verify(current: Annotated[Page, Depends(page)]) -> Response:
        checked, broken = audit.verify_chain(current.store)
        rows, problems = record_check.verify_records(current.store)
        first = problems[0] if problems else None
        return JSONResponse(
            {
                "checked": checked,
                "rows_checked": rows,
                "ok": broken is None and first is None,
                "broken_seq": broken.seq if broken else (first.seq if first else None),
                "reason": broken.reason if broken else (first.describe() if first else None),
                "altered_records": len(problems),
            }
        )
