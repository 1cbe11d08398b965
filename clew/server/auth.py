"""Who is calling, and may they: one dependency applied to every route of the app.

The route's rule comes from ``permissions.RULES`` (fail closed: no rule, no access). The
caller is whoever owns the bearer token; the principal is stored on the request and is the
only actor the services ever see. Routes marked ``signing`` (approvals) also need the caller's
separate signing token in ``X-Clew-Signing-Token``: a fresh proof of identity per e-signature.
Web UI routes (/ui) take the same checks with the principal of the session in the login cookie
(``clew.service.sessions``), and the signing token from the approve form's password field
instead of the header. Failed token checks are rate-limited per client address and account
(``login_limits``): past the limit a check answers 429 with ``Retry-After``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from clew.domain.roles import Role
from clew.errors import AuthenticationError, PolicyError
from clew.server import idempotency
from clew.server.errors import HTTPError
from clew.server.forms import read_form
from clew.server.permissions import UI_RULES, Rule, is_ui_path, rule_for_route
from clew.server.web_sessions import (
    SESSION_COOKIE,
    SignInRequired,
    client_address,
    limits,
    session_principal,
)
from clew.service import accounts
from clew.service.accounts import ANONYMOUS, SIGNING, Principal

SIGNING_HEADER = "x-clew-signing-token"
SIGNING_FIELD = "signing_token"  # the approve form's field (the UI's version of the header)


@dataclass(frozen=True)
class AuthSettings:
    anonymous_read: bool = False


async def authorize(request: Request) -> None:
    """Resolve the caller and check the route's rule; raises 401/403 with a clear message."""
    idempotency.current.set(None)
    route = request.scope.get("route")
    method = "GET" if request.method == "HEAD" else request.method
    rule = rule_for_route(method, route)
    if rule is None:
        raise HTTPError(403, "forbidden", "this route has no permission rule, so it is refused.")
    if rule.role is None:
        return
    principal = await _principal(request, rule)
    request.state.principal = principal
    _require_role(principal, rule, request)
    if rule.signing:
        await _require_signature(request, principal, await _signing_secret(request))
    await idempotency.note(request, principal.name)


async def _principal(request: Request, rule: Rule) -> Principal:
    bearer = _bearer(request)
    cookie = request.cookies.get(SESSION_COOKIE) if _is_ui(request) else None
    if bearer is None and cookie is None:
        settings: AuthSettings = request.app.state.auth
        if settings.anonymous_read and rule.role == Role.VIEWER:
            return ANONYMOUS
        if _is_ui(request):
            raise SignInRequired("sign in to use the web UI.")
        raise AuthenticationError(
            "this server needs an API token; pass clew.connect(uri, token=...) or set CLEW_TOKEN."
        )
    if bearer is None:
        assert cookie is not None
        try:
            return await session_principal(request, cookie)
        except AuthenticationError:
            raise SignInRequired("the web UI session has ended; sign in again.") from None
    return await _checked(request, accounts.authenticate, bearer)


async def _checked(request: Request, check: Any, *args: Any) -> Principal:
    """``check(store, *args)`` within the client address's limit: a failure counts against the
    address and the account its token names, and past the limit no check is made (429). All in
    a worker thread, since the limits are counted in the store."""
    address, limiter, store = client_address(request), limits(request), request.app.state.store

    def limited() -> Principal:
        limiter.check(address)
        try:
            principal: Principal = check(store, *args)
        except AuthenticationError as error:
            limiter.failed(address, error.user)
            raise
        return principal

    return await run_in_threadpool(limited)


def _is_ui(request: Request) -> bool:
    return is_ui_path(getattr(request.scope.get("route"), "path", ""))


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise AuthenticationError("the Authorization header must be 'Bearer <token>'.")
    return secret.strip()


def _require_role(principal: Principal, rule: Rule, request: Request) -> None:
    assert rule.role is not None
    model = request.path_params.get(rule.model_param) if rule.model_param else None
    require_role_on(principal, model, rule.role)


def require_role_on(principal: Principal, model: str | None, needed: Role) -> None:
    """Refuse unless the principal holds ``needed`` on ``model`` (grants included); for routes
    that name the model in their body, the same check the permission table makes on a path."""
    role = principal.role_for(model)
    if role < needed:
        scope = f" on model {model!r}" if model else ""
        raise PolicyError(
            f"user {principal.name!r} is a {role.label}{scope} and this needs the "
            f"{needed.label} role; ask an admin for access."
        )


async def _signing_secret(request: Request) -> str:
    if _is_ui(request):
        secret = (await read_form(request)).get(SIGNING_FIELD, "").strip()
        if not secret:
            raise AuthenticationError(
                "this action is an electronic signature; type your signing token in the form "
                "(create one with `clew admin create-token --signing`)."
            )
        return secret
    secret = request.headers.get(SIGNING_HEADER, "")
    if not secret:
        raise AuthenticationError(
            "this action is an electronic signature; send your signing token in "
            "X-Clew-Signing-Token (create one with `clew admin create-token --signing`)."
        )
    return secret


async def _require_signature(request: Request, principal: Principal, secret: str) -> None:
    signer = await _checked(request, accounts.authenticate, secret, SIGNING)
    if signer.name != principal.name:
        await run_in_threadpool(limits(request).failed, client_address(request), principal.name)
        raise AuthenticationError(
            "the signing token belongs to another user; sign with your own signing token."
        )


def check_ui_permission(request: Request, permission: str) -> None:
    """The UI's per-request check (which forms to show, and again before a handler runs): the
    signed-in principal's role, raised by grants on the model in the path, as for the API."""
    _require_role(principal_of(request), UI_RULES[permission], request)


def ui_actor(request: Request) -> str | None:
    """The UI's ``get_actor``: the user ``authorize`` resolved from the token, never a name
    the client claims; None on public pages (login), where no one is resolved."""
    principal = getattr(request.state, "principal", None)
    return principal.name if principal is not None else None


def principal_of(request: Request) -> Principal:
    """The authenticated caller of a non-public route (set by ``authorize``)."""
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None:
        raise HTTPError(401, "unauthenticated", "this route needs an authenticated caller.")
    return principal
