"""``create_app(store)``: the clew HTTP API over one opened store.

The app is stateless apart from the store it is given, so any number of replicas can serve one
PostgreSQL + object-store deployment. Every route goes through ``auth.authorize`` (declared
once, here) and must have a rule in ``permissions.RULES``; the app refuses to build otherwise.
The web UI is mounted under ``/ui`` behind the same ``authorize`` (its rules come from the UI's
own ``ROUTE_PERMISSIONS`` table, see ``permissions.ui_rule``), signing in with an API token.
"""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import RedirectResponse

from clew.server import errors, fair_use
from clew.server.auth import AuthSettings, authorize, check_ui_permission, token_user, ui_actor
from clew.server.deps import Services
from clew.server.limits import MAX_JSON_BYTES, BodyLimit
from clew.server.observability import Metrics, RequestContext
from clew.server.permissions import check_routes
from clew.server.responses import JSONResponse
from clew.server.routes import (
    artifacts,
    audit,
    captures,
    lineage,
    operations,
    predictions,
    registry,
    runs,
)
from clew.server.ui import create_ui_router
from clew.store.location import Store

API_PREFIX = "/api/v1"


def create_app(
    store: Store,
    *,
    anonymous_read: bool = False,
    max_json_bytes: int = MAX_JSON_BYTES,
    ui_secret: bytes | None = None,
) -> FastAPI:
    """The API and the web UI over ``store``; replicas must share ``ui_secret`` (the UI's CSRF
    key; random per process when None)."""
    from clew import __version__

    app = FastAPI(
        title="clew",
        version=__version__,
        description="Model registry, lineage and experiment tracking for teams that answer "
        "to auditors.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,
        redoc_url=None,
        default_response_class=JSONResponse,
        dependencies=[Depends(authorize), Depends(fair_use.search_slot)],
    )
    app.state.store = store
    app.state.services = Services.open(store)
    app.state.auth = AuthSettings(anonymous_read=anonymous_read)
    app.state.metrics = Metrics()
    for module in (operations, runs, artifacts, registry, predictions, captures, lineage, audit):
        app.include_router(module.router)
    app.include_router(_ui_router(store, ui_secret))
    app.add_api_route("/", _home, methods=["GET"], include_in_schema=False)
    errors.install(app)
    check_routes(app)
    app.add_middleware(BodyLimit, max_json_bytes=max_json_bytes)
    app.add_middleware(RequestContext, metrics=app.state.metrics)
    return app


def _home(request: Request) -> RedirectResponse:
    """A browser pointed at the server's address lands on the web UI (which asks for a login)."""
    return RedirectResponse(f"{request.scope.get('root_path', '')}/ui/", status_code=307)


def _ui_router(store: Store, secret: bytes | None) -> APIRouter:
    """The UI as the server runs it: the actor is the token's user, roles decide every page."""
    return create_ui_router(
        lambda: store,
        ui_actor,
        check_token=partial(token_user, store),
        csrf_secret=secret,
        authorize_request=check_ui_permission,
        signing_required=True,
    )


def app_from_environment() -> FastAPI:
    """The app factory ``clew server`` gives uvicorn (one call per worker process).

    Reads ``CLEW_URI`` / ``CLEW_ARTIFACTS`` (the store), ``CLEW_ANONYMOUS_READ`` ("1" lets
    requests without a token read) and ``CLEW_UI_SECRET`` (the UI's CSRF key, shared by every
    worker and replica; without it each process draws its own, so use it with ``--workers``).
    """
    import os

    from clew.store.location import open_store

    store = open_store(os.environ.get("CLEW_URI") or None, os.environ.get("CLEW_ARTIFACTS"))
    secret = os.environ.get("CLEW_UI_SECRET")
    return create_app(
        store,
        anonymous_read=os.environ.get("CLEW_ANONYMOUS_READ") == "1",
        ui_secret=secret.encode() if secret else None,
    )
