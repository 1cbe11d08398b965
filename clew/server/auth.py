"""Who is calling, and may they: one dependency applied to every route of the app.

The route's rule comes from ``permissions.RULES`` (fail closed: no rule, no access). The
caller is whoever owns the bearer token; the principal is stored on the request and is the
only actor the services ever see. Routes marked ``signing`` (approvals) also need the caller's
separate signing token in ``X-Clew-Signing-Token``: a fresh proof of identity per e-signature.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from clew.errors import PolicyError
from clew.server import idempotency
from clew.server.errors import HTTPError
from clew.server.permissions import Rule, rule_for
from clew.service import accounts
from clew.service.accounts import ANONYMOUS, SIGNING, AuthenticationError, Principal, Role

SIGNING_HEADER = "x-clew-signing-token"


@dataclass(frozen=True)
class AuthSettings:
    anonymous_read: bool = False


async def authorize(request: Request) -> None:
    """Resolve the caller and check the route's rule; raises 401/403 with a clear message."""
    idempotency.current.set(None)
    route = request.scope.get("route")
    method = "GET" if request.method == "HEAD" else request.method
    rule = rule_for(method, getattr(route, "path", ""))
    if rule is None:
        raise HTTPError(403, "forbidden", "this route has no permission rule, so it is refused.")
    if rule.role is None:
        return
    principal = await _principal(request, rule)
    request.state.principal = principal
    _require_role(principal, rule, request)
    if rule.signing:
        await _require_signature(request, principal)
    await idempotency.note(request, principal.name)


async def _principal(request: Request, rule: Rule) -> Principal:
    secret = _bearer(request)
    if secret is None:
        settings: AuthSettings = request.app.state.auth
        if settings.anonymous_read and rule.role == Role.VIEWER:
            return ANONYMOUS
        raise AuthenticationError(
            "this server needs an API token; pass clew.connect(uri, token=...) or set CLEW_TOKEN."
        )
    return await run_in_threadpool(accounts.authenticate, request.app.state.store, secret)


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
    role = principal.role_for(model)
    if role < rule.role:
        scope = f" on model {model!r}" if model else ""
        raise PolicyError(
            f"user {principal.name!r} is a {role.label}{scope} and this needs the "
            f"{rule.role.label} role; ask an admin for access."
        )


async def _require_signature(request: Request, principal: Principal) -> None:
    secret = request.headers.get(SIGNING_HEADER)
    if not secret:
        raise AuthenticationError(
            "this action is an electronic signature; send your signing token in "
            "X-Clew-Signing-Token (create one with `clew admin create-token --signing`)."
        )
    signer = await run_in_threadpool(
        accounts.authenticate, request.app.state.store, secret, SIGNING
    )
    if signer.name != principal.name:
        raise AuthenticationError(
            "the signing token belongs to another user; sign with your own signing token."
        )


def principal_of(request: Request) -> Principal:
    """The authenticated caller of a non-public route (set by ``authorize``)."""
    principal = getattr(request.state, "principal", None)
    if principal is None:
        raise HTTPError(401, "unauthenticated", "this route needs an authenticated caller.")
    return principal
