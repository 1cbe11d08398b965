"""``create_app(store)``: the clew HTTP API over one opened store.

The app is stateless apart from the store it is given, so any number of replicas can serve one
PostgreSQL + object-store deployment. Every route goes through ``auth.authorize`` (declared
once, here) and must have a rule in ``permissions.RULES``; the app refuses to build otherwise.
"""

from __future__ import annotations

from fastapi import Depends, FastAPI

from clew.server import errors
from clew.server.auth import AuthSettings, authorize
from clew.server.deps import Services
from clew.server.limits import MAX_JSON_BYTES, BodyLimit
from clew.server.observability import Metrics, RequestContext
from clew.server.permissions import check_routes
from clew.server.responses import JSONResponse
from clew.server.routes import artifacts, audit, lineage, operations, registry, runs
from clew.store.location import Store

API_PREFIX = "/api/v1"


def create_app(
    store: Store, *, anonymous_read: bool = False, max_json_bytes: int = MAX_JSON_BYTES
) -> FastAPI:
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
        dependencies=[Depends(authorize)],
    )
    app.state.store = store
    app.state.services = Services.open(store)
    app.state.auth = AuthSettings(anonymous_read=anonymous_read)
    app.state.metrics = Metrics()
    for module in (operations, runs, artifacts, registry, lineage, audit):
        app.include_router(module.router)
    errors.install(app)
    check_routes(app)
    app.add_middleware(BodyLimit, max_json_bytes=max_json_bytes)
    app.add_middleware(RequestContext, metrics=app.state.metrics)
    return app


def app_from_environment() -> FastAPI:
    """The app factory ``clew server`` gives uvicorn (one call per worker process).

    Reads ``CLEW_URI`` / ``CLEW_ARTIFACTS`` (the store) and ``CLEW_ANONYMOUS_READ`` ("1" lets
    requests without a token read).
    """
    import os

    from clew.store.location import open_store

    store = open_store(os.environ.get("CLEW_URI") or None, os.environ.get("CLEW_ARTIFACTS"))
    return create_app(store, anonymous_read=os.environ.get("CLEW_ANONYMOUS_READ") == "1")
