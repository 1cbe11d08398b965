"""``create_ui_router``: every page of the web UI as one FastAPI router under ``/ui``.

The server app includes it with its own services, authentication and permission checks;
``clew ui`` includes it in a small app over the embedded store (see ``app.py``).
"""

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from starlette.responses import Response

from clew.server.ui import (
    audit,
    experiments,
    lineage,
    models,
    monitoring,
    predictions,
    session,
    static_files,
)
from clew.server.ui.pages import (
    Authorize,
    AuthorizeRequest,
    GetActor,
    GetServices,
    Page,
    Sessions,
    UIState,
    make_dependencies,
    new_csrf_secret,
    route_class_for,
)


def create_ui_router(
    get_services: GetServices,
    get_actor: GetActor,
    *,
    authorize: Authorize | None = None,
    sessions: Sessions | None = None,
    csrf_secret: bytes | None = None,
    authorize_request: AuthorizeRequest | None = None,
    signing_required: bool = False,
) -> APIRouter:
    """The web UI's routes.

    ``get_services`` and ``get_actor`` are FastAPI dependencies: the first returns the
    ``ServiceContainer`` every page uses, the second the acting user's name, or None when the
    request is not signed in (the UI then sends the browser to its login page).
    ``authorize(actor, permission)`` raises a ``ClewError`` when the actor's roles do not grant
    ``permission`` (``read``, ``approve``, ``promote``; see ``permissions.ROUTE_PERMISSIONS``);
    without it every signed-in actor may use every page, and the governance policy alone
    decides approvals and promotions.
    ``sessions`` (a ``session.SessionGate``) enables the login page: it opens a session for a
    valid token and ends it on logout; the browser keeps only the session id, in the
    ``web_sessions.SESSION_COOKIE`` cookie that ``get_actor`` should accept. Replicas behind one
    load balancer must share ``csrf_secret``.
    ``authorize_request(request, permission)`` is ``authorize`` for apps that decide per request
    (the clew server: the principal's role, raised by grants on the model in the path).
    ``signing_required`` adds a signing-token field to the approve form (an e-signature that the
    app checks, as the server does for ``ui.version_approve``).
    """
    state = UIState(
        get_services,
        get_actor,
        authorize,
        sessions,
        csrf_secret or new_csrf_secret(),
        authorize_request,
        signing_required,
    )
    # HTML pages, not API: kept out of the app's OpenAPI document.
    router = APIRouter(prefix="/ui", route_class=route_class_for(state), include_in_schema=False)
    page, action = make_dependencies(state)

    @router.get("/", name="ui.home", include_in_schema=False)
    def home(current: Annotated[Page, Depends(page)]) -> Response:
        return current.redirect("ui.models")

    @router.get("/static/{name}", name="ui.static", include_in_schema=False)
    def static(name: str) -> Response:
        found = static_files.FILES.get(name)
        if found is None:
            raise HTTPException(404, "no such file")
        return Response(
            found.body,
            media_type=found.content_type,
            headers={
                "Cache-Control": "public, max-age=31536000, immutable",
                "X-Content-Type-Options": "nosniff",
            },
        )

    for module in (models, experiments, lineage, predictions, audit, monitoring):
        module.add_routes(router, page, action)
    session.add_routes(router, state)
    return router
