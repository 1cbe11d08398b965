"""``create_app(store)``: the clew HTTP API over one opened store.

The app is stateless apart from the store it is given, so any number of replicas can serve one
PostgreSQL + object-store deployment. Every route goes through ``auth.authorize`` (declared
once, here) and must have a rule in ``permissions.RULES``; the app refuses to build otherwise.
The web UI is mounted under ``/ui`` behind the same ``authorize`` (its rules come from the
``permissions.ROUTE_PERMISSIONS`` table, see ``permissions.ui_rule``), signing in with an API
token. The routes and the UI share the app's one ``ServiceContainer`` (``app.state.services``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import RedirectResponse

from clew.errors import InvalidInputError
from clew.server import errors, monitor_scheduler
from clew.server.auth import AuthSettings, authorize, check_ui_permission, ui_actor
from clew.server.deliverer import DEFAULT_INTERVAL_S, INTERVAL_ENV, BackgroundDeliverer
from clew.server.hosts import ALLOWED_HOSTS_ENV, LOOPBACK_HOSTS, HostAllowList, parse
from clew.server.limits import MAX_JSON_BYTES, BodyLimit
from clew.server.login_limits import LoginLimits
from clew.server.observability import Metrics, RequestContext
from clew.server.permissions import check_routes
from clew.server.responses import JSONResponse
from clew.server.routes import (
    artifacts,
    audit,
    captures,
    deployments,
    imports,
    lineage,
    monitor_runs,
    monitoring,
    openlineage,
    operations,
    pipelines,
    predictions,
    registry,
    reproductions,
    runs,
    sessions,
    shadows,
    webhooks,
)
from clew.server.routes import cards as cards_routes
from clew.server.routes import explain as explain_routes
from clew.server.routes import exports as exports_routes
from clew.server.routes import findings as findings_routes
from clew.server.ui import create_ui_router
from clew.server.web_sessions import ServerSessions
from clew.service import accounts
from clew.service.container import ServiceContainer
from clew.service.sessions import DEFAULT_ABSOLUTE_S, DEFAULT_IDLE_S, Lifetimes
from clew.store.location import Store

API_PREFIX = "/api/v1"
log = logging.getLogger("clew.server")


def create_app(
    store: Store,
    *,
    anonymous_read: bool = False,
    max_json_bytes: int = MAX_JSON_BYTES,
    ui_secret: bytes | None = None,
    allowed_hosts: Sequence[str] | None = None,
    session_lifetimes: Lifetimes | None = None,
    forwarded_allow_ips: str | None = None,
    deliver_webhooks_every_s: float | None = None,
) -> FastAPI:
    """The API and the web UI over ``store``; replicas must share ``ui_secret`` (the UI's CSRF
    key; random per process when None). ``allowed_hosts`` are the Host names answered (see
    ``clew.server.hosts``; None answers any, for an app that is not listening itself).
    ``session_lifetimes`` sets the UI sessions' idle and absolute lifetimes;
    ``forwarded_allow_ips`` lists the proxies (addresses, networks or ``*``) whose
    ``X-Forwarded-For``/``-Proto`` are believed (none by default).
    ``deliver_webhooks_every_s`` runs the webhook deliverer in this process from start-up to
    shutdown (lifespan events), at that interval."""
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
    app.state.services = services = ServiceContainer(store)
    app.state.auth = AuthSettings(anonymous_read=anonymous_read)
    app.state.metrics = Metrics()
    app.state.login_limits = LoginLimits(store)
    for module in (operations, runs, artifacts, registry, predictions, captures, lineage, audit):
        app.include_router(module.router)
    app.include_router(sessions.router)
    app.include_router(webhooks.router)
    if deliver_webhooks_every_s is not None:
        _run_deliverer(app, services, deliver_webhooks_every_s)
    app.include_router(monitor_runs.router)
    app.include_router(monitoring.router)
    app.include_router(deployments.router)
    app.include_router(shadows.router)
    app.include_router(openlineage.router)
    app.include_router(imports.router)
    app.state.max_json_bytes = max_json_bytes
    app.include_router(reproductions.router)
    app.include_router(explain_routes.router)
    app.include_router(findings_routes.router)
    app.include_router(cards_routes.router)
    app.include_router(exports_routes.router)
    app.include_router(pipelines.router)
    app.include_router(_ui_router(services, ui_secret, session_lifetimes or Lifetimes()))
    app.add_api_route("/", _home, methods=["GET"], include_in_schema=False)
    errors.install(app)
    check_routes(app)
    app.add_middleware(BodyLimit, max_json_bytes=max_json_bytes)
    if allowed_hosts is not None:
        app.add_middleware(HostAllowList, allowed=allowed_hosts)
    app.add_middleware(RequestContext, metrics=app.state.metrics)
    _trust_proxies(app, forwarded_allow_ips)
    monitor_scheduler.install(app, services.monitor_schedules)
    monitor_scheduler.install_review_checks(app, services.reviews)
    return app


def _run_deliverer(app: FastAPI, services: ServiceContainer, interval_s: float) -> None:
    """Start the webhook deliverer with the server and stop it with the server."""
    deliverer = BackgroundDeliverer(services.webhooks, interval_s)
    app.router.add_event_handler("startup", deliverer.start)
    app.router.add_event_handler("shutdown", deliverer.stop)


def _home(request: Request) -> RedirectResponse:
    """A browser pointed at the server's address lands on the web UI (which asks for a login)."""
    return RedirectResponse(f"{request.scope.get('root_path', '')}/ui/", status_code=307)


def _trust_proxies(app: FastAPI, forwarded_allow_ips: str | None) -> None:
    """Believe ``X-Forwarded-For``/``-Proto`` from the listed proxies only (uvicorn's own
    middleware), so the session cookie is ``Secure`` behind a TLS-terminating proxy and rate
    limits count the real client, while nobody else can claim either."""
    if forwarded_allow_ips:
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=forwarded_allow_ips)


def _ui_router(services: ServiceContainer, secret: bytes | None, lifetimes: Lifetimes) -> APIRouter:
    """The UI as the server runs it: the actor is the session's user, roles decide every page."""
    return create_ui_router(
        lambda: services,
        ui_actor,
        sessions=ServerSessions(services.store, lifetimes),
        csrf_secret=secret,
        authorize_request=check_ui_permission,
        signing_required=True,
    )


def app_from_environment() -> FastAPI:
    """The app factory ``clew server`` gives uvicorn (one call per worker process).

    Reads ``CLEW_URI`` / ``CLEW_ARTIFACTS`` (the store), ``CLEW_ANONYMOUS_READ`` ("1" lets
    requests without a token read), ``CLEW_ALLOWED_HOSTS`` (comma-separated Host names; the
    loopback names when unset), ``CLEW_UI_SECRET`` (the UI's CSRF key, shared by every
    worker and replica; without it each process draws its own, so use it with ``--workers``),
    ``CLEW_SESSION_IDLE_MINUTES`` / ``CLEW_SESSION_HOURS`` (UI session lifetimes, default 30
    and 12), ``CLEW_FORWARDED_ALLOW_IPS`` (trusted proxies, see ``create_app``) and
    ``CLEW_WEBHOOK_INTERVAL_SECONDS`` (how often the webhook deliverer runs, default 5; 0 turns
    it off in this process).
    """
    import os

    from clew.store.location import open_store

    lifetimes = _lifetimes(os.environ)
    store = open_store(os.environ.get("CLEW_URI") or None, os.environ.get("CLEW_ARTIFACTS"))
    secret = os.environ.get("CLEW_UI_SECRET")
    report_dangling_grants(store)
    return create_app(
        store,
        anonymous_read=os.environ.get("CLEW_ANONYMOUS_READ") == "1",
        ui_secret=secret.encode() if secret else None,
        allowed_hosts=parse(os.environ.get(ALLOWED_HOSTS_ENV, "")) or LOOPBACK_HOSTS,
        session_lifetimes=lifetimes,
        forwarded_allow_ips=os.environ.get("CLEW_FORWARDED_ALLOW_IPS") or None,
        deliver_webhooks_every_s=_deliverer_interval(os.environ),
    )


def _deliverer_interval(environ: Mapping[str, str]) -> float | None:
    text = environ.get(INTERVAL_ENV) or str(DEFAULT_INTERVAL_S)
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 3600:
        raise InvalidInputError(f"{INTERVAL_ENV}={text!r} must be 0 (off) to 3600 seconds.")
    return seconds or None


def report_dangling_grants(store: Store) -> None:
    """One warning line per dangling grant (``accounts.Grant``) as the server starts: a store
    from before grants were checked may hold some, and nobody would look otherwise."""
    for found in accounts.dangling_grants(store):
        log.warning(
            "dangling grant: %s is %s on %r: %s; %s.",
            found.user,
            found.role,
            found.model,
            found.problem,
            accounts.DANGLING_FIX,
        )


def _lifetimes(environ: Mapping[str, str]) -> Lifetimes:
    idle = _whole(environ, "CLEW_SESSION_IDLE_MINUTES", DEFAULT_IDLE_S // 60)
    hours = _whole(environ, "CLEW_SESSION_HOURS", DEFAULT_ABSOLUTE_S // 3600)
    return Lifetimes(idle_s=idle * 60, absolute_s=hours * 3600)


def _whole(environ: Mapping[str, str], name: str, default: int) -> int:
    text = environ.get(name) or str(default)
    if not text.isdigit() or int(text) < 1:
        raise InvalidInputError(f"{name}={text!r} must be a whole number of at least 1.")
    return int(text)
