"""What every UI request handler receives: the services, who is asking, and how to answer.

The server app and ``clew ui`` differ only in the dependencies they hand to
``create_ui_router``: where the services (a ``ServiceContainer``) come from, who the actor
is, and (server mode) which permissions the actor's roles grant. Everything a page shows or
does goes through the service layer with that actor, so the policy's answer is the same as on
the CLI or the API.

Permissions fail closed: every route that reads or writes names its permission in
``clew.server.permissions.ROUTE_PERMISSIONS``; a route missing from the table is refused.
"""

import hashlib
import hmac
import secrets
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, HTTPException, Path, Query, Request
from fastapi.routing import APIRoute
from starlette.responses import HTMLResponse, RedirectResponse, Response

from clew.errors import ClewError, PolicyError
from clew.server.forms import read_form
from clew.server.permissions import ROUTE_PERMISSIONS
from clew.server.redaction import public_message
from clew.server.ui import rendering, static_files
from clew.server.web_sessions import SESSION_COOKIE, SignInRequired
from clew.service.container import ServiceContainer
from clew.store.location import Store

GetServices = Callable[..., ServiceContainer]
GetActor = Callable[..., str | None]
Authorize = Callable[[str, str], None]
AuthorizeRequest = Callable[[Request, str], None]
Sessions = Any  # a ``session.SessionGate`` (that module imports this one)
# Numbers in URLs are bounded so a huge one is a 422, not an overflow in the database.
VersionNumber = Annotated[int, Path(ge=1, le=2**31)]
Offset = Annotated[int, Query(ge=0, le=2**31)]


class UIRoute(APIRoute):
    """Refusals and errors raised by the service become a readable HTML page.

    Each router uses its own subclass (``route_class_for``) carrying its ``UIState``, put on the
    request before any dependency runs, so a refusal by the host app's own dependencies (the
    server's ``authorize``) is rendered as a page too.
    """

    ui_state: "UIState"

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        state = self.ui_state

        async def handle(request: Request) -> Response:
            request.state.clew_ui = state
            try:
                return await handler(request)
            except SignInRequired:
                return _redirect_or_raise(login_redirect(request))
            except ClewError as error:
                page = error_page(request, str(error), error.http_status)
                retry_after = getattr(error, "retry_after_s", None)
                if retry_after is not None:
                    page.headers["Retry-After"] = str(retry_after)
                return page
            except HTTPException as error:
                return _redirect_or_raise(error)

        return handle


def _redirect_or_raise(error: HTTPException) -> Response:
    """A redirect raised as an exception, answered as one; any other error raised on."""
    if not 300 <= error.status_code < 400:
        raise error
    return Response(status_code=error.status_code, headers=error.headers)


def error_page(request: Request, message: str, status: int) -> HTMLResponse:
    message = public_message(request, status, "ui", message, log_fault=True)
    return rendering.render(
        "error.html", {**base_context(request, None), "message": message}, status
    )


def url_for(
    request: Request, route: str, query: Mapping[str, Any] | None = None, /, **path: Any
) -> str:
    """A path (no host) to a named route, honouring the app's root path behind a proxy."""
    root_path: str = request.scope.get("root_path", "")
    path_text = root_path + str(request.app.url_path_for(route, **path))
    if query:
        pairs = [
            (key, item)
            for key, value in query.items()
            for item in (value if isinstance(value, list | tuple) else [value])
            if item is not None and item != ""
        ]
        if pairs:
            path_text += "?" + urlencode(pairs)
    return path_text


def base_context(request: Request, actor: str | None) -> dict[str, Any]:
    """What the layout template needs on every page."""

    def url(route: str, query: Mapping[str, Any] | None = None, /, **path: Any) -> str:
        return url_for(request, route, query, **path)

    def static(name: str) -> str:
        return url("ui.static", {"v": static_files.FILES[name].version}, name=name)

    return {
        "url": url,
        "static": static,
        "actor": actor,
        "login_enabled": _state(request).sessions is not None,
        "signing_required": _state(request).signing_required,
        "current_path": request.url.path,
    }


@dataclass
class Page:
    """One request's view of clew: the services, the actor and helpers to answer."""

    request: Request
    services: ServiceContainer
    actor: str
    csrf: str
    refusal: Callable[[str], str | None]
    form: dict[str, str] = field(default_factory=dict)

    @property
    def store(self) -> Store:
        """The store behind the services, for the read models that take one."""
        return self.services.store

    def may(self, permission: str) -> bool:
        return self.refusal(permission) is None

    def url(self, route: str, query: Mapping[str, Any] | None = None, /, **path: Any) -> str:
        return url_for(self.request, route, query, **path)

    def render(self, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        full = {
            **base_context(self.request, self.actor),
            "csrf": self.csrf,
            "may": self.may,
            "refusal": self.refusal,
            **context,
        }
        return rendering.render(template, full, status_code)

    def redirect(
        self, route: str, query: Mapping[str, Any] | None = None, /, **path: Any
    ) -> Response:
        return RedirectResponse(self.url(route, query, **path), status_code=303)


@dataclass
class UIState:
    """The dependencies the app supplied, kept on the router for its handlers."""

    get_services: GetServices
    get_actor: GetActor
    authorize: Authorize | None
    sessions: Sessions | None
    csrf_secret: bytes
    authorize_request: AuthorizeRequest | None = None
    signing_required: bool = False

    def csrf_token(self, request: Request, actor: str) -> str:
        """Bound to the browser's session (server) or else to the actor (``clew ui``), so a
        token seen in one session is useless in another."""
        session = request.cookies.get(SESSION_COOKIE)
        return self._mac(f"session:{session}" if session else f"user:{actor}")

    def login_csrf(self, nonce: str) -> str:
        """The sign-in form's token, bound to the one-time nonce in that form's cookie."""
        return self._mac(f"login:{nonce}")

    def _mac(self, binding: str) -> str:
        return hmac.new(self.csrf_secret, binding.encode(), hashlib.sha256).hexdigest()[:40]

    def check(self, request: Request, actor: str, permission: str) -> None:
        """Raise when the actor may not use ``permission`` (no checker: everything allowed)."""
        if self.authorize_request is not None:
            self.authorize_request(request, permission)
        if self.authorize is not None:
            self.authorize(actor, permission)

    def refusal(self, request: Request, actor: str, permission: str) -> str | None:
        """Why the actor may not use ``permission``, or None when they may."""
        try:
            self.check(request, actor, permission)
        except ClewError as error:
            return str(error)
        except HTTPException as error:
            return str(error.detail)
        return None


def _state(request: Request) -> UIState:
    """The router's state, attached to each request by its ``UIRoute``."""
    state: UIState = request.state.clew_ui
    return state


def route_class_for(state: UIState) -> type[UIRoute]:
    return type("BoundUIRoute", (UIRoute,), {"ui_state": state})


def make_dependencies(state: UIState) -> tuple[Any, Any]:
    """The ``page`` (GET) and ``action`` (POST, CSRF-checked) dependencies for handlers."""

    def page(
        request: Request,
        services: Annotated[ServiceContainer, Depends(state.get_services)],
        actor: Annotated[str | None, Depends(state.get_actor)],
    ) -> Page:
        if actor is None:
            raise login_redirect(request)
        permission = _permission(request)
        if permission is not None:
            state.check(request, actor, permission)
        return Page(
            request,
            services,
            actor,
            state.csrf_token(request, actor),
            lambda wanted: state.refusal(request, actor, wanted),
        )

    async def form_fields(request: Request) -> dict[str, str]:
        return await read_form(request)

    def action(
        page: Annotated[Page, Depends(page)],
        form: Annotated[dict[str, str], Depends(form_fields)],
    ) -> Page:
        if not hmac.compare_digest(form.get("csrf", ""), page.csrf):
            raise PolicyError(
                "this form has expired or did not come from this clew; reload the page and retry."
            )
        page.form = form
        return page

    return page, action


def _permission(request: Request) -> str | None:
    route = request.scope.get("route")
    name = getattr(route, "name", None)
    if name not in ROUTE_PERMISSIONS:
        raise PolicyError(f"the page {request.url.path} declares no permission, so it is refused.")
    return ROUTE_PERMISSIONS[name]


def login_redirect(request: Request) -> HTTPException:
    """Send a browser that is not signed in to the login page (401 when login is disabled)."""
    if _state(request).sessions is None:
        return HTTPException(401, "not signed in")
    target = url_for(request, "ui.login", {"next": request.url.path})
    return HTTPException(303, "sign in first", headers={"Location": target})


def new_csrf_secret() -> bytes:
    return secrets.token_bytes(32)
