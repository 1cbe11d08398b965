"""``create_ui_app``: the web UI alone, over the embedded store, for ``clew ui``.

It listens on 127.0.0.1 by default and acts as the local user (``CLEW_USER`` or the OS user),
exactly like the CLI would; the governance policy still decides every approval. Requests
whose Host header is not this machine are refused, so a web page elsewhere can not reach
the UI through DNS rebinding, and every form carries a CSRF token.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import RedirectResponse

from clew.server.ui.router import create_ui_router
from clew.service.container import ServiceContainer
from clew.service.identity import current_actor
from clew.store.location import Store

LOCAL_HOSTS = ["127.0.0.1", "localhost", "[::1]"]


def create_ui_app(store: Store, *, allowed_hosts: list[str] | None = None) -> FastAPI:
    """An app serving the UI at ``/ui/`` over one store on this machine (a clew server serves
    the same UI itself; ``clew.client.admin.ui_app`` refuses a server address)."""
    services = ServiceContainer(store)

    def get_services() -> ServiceContainer:
        return services

    app = FastAPI(title="clew ui", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(create_ui_router(get_services, current_actor))

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=307)

    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts or LOCAL_HOSTS)
    return app
