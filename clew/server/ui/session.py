"""Signing in to the UI in server mode: a token typed once opens a server-side session.

The browser keeps only the session's opaque id, in an ``HttpOnly`` (no script reads it),
``SameSite=Lax`` (no other site's form or script sends it) cookie, ``Secure`` when the page
came over https. Every form, sign-in and sign-out included, carries a CSRF token: bound to the
session once signed in, and to a one-time cookie on the sign-in form (so another site cannot
sign a victim into the attacker's account).
"""

import hmac
import secrets
from collections.abc import Callable
from typing import Protocol

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from clew.errors import ClewError, TooManyAttemptsError
from clew.server.forms import read_form
from clew.server.ui import rendering
from clew.server.ui.pages import (
    UIState,
    base_context,
    error_page,
    url_for,
)
from clew.server.web_sessions import SESSION_COOKIE

LOGIN_COOKIE = "clew_login"
LEGACY_TOKEN_COOKIE = "clew_token"  # older clews kept the raw token here; cleared on sight
LOGIN_FORM_SECONDS = 3600
EXPIRED_FORM = (
    "this sign-in form has expired or did not come from this clew; reload the page and sign in "
    "again."
)


class SessionGate(Protocol):
    """How the host app opens and ends sessions (the clew server: ``web_sessions``)."""

    lifetime_s: int

    def open(self, request: Request, token: str) -> str:
        """The new session's cookie value; raises ``ClewError`` for a refused token."""
        ...

    def close(self, request: Request, session: str) -> None:
        """End the session the browser holds (nothing when it is unknown or ended)."""
        ...


def cookie_actor(check_session: Callable[[str], str | None]) -> Callable[[Request], str | None]:
    """A ``get_actor`` dependency for apps embedding the router: the user of the session."""

    def actor(request: Request) -> str | None:
        session = request.cookies.get(SESSION_COOKIE, "")
        return check_session(session) if session else None

    return actor


def add_routes(router: APIRouter, state: UIState) -> None:
    @router.get("/login", name="ui.login", include_in_schema=False)
    def login(request: Request, next: str = "") -> Response:
        return _login_page(request, state, next, None, 200)

    @router.post("/login", name="ui.login_submit", include_in_schema=False)
    async def login_submit(request: Request) -> Response:
        form = await read_form(request)
        next_path = _local_path(form.get("next", ""))
        nonce = request.cookies.get(LOGIN_COOKIE, "")
        if state.sessions is None or not nonce or not _same(form, state.login_csrf(nonce)):
            return _login_page(request, state, next_path, EXPIRED_FORM, 403)
        try:
            token = form.get("token", "").strip()
            session = await run_in_threadpool(state.sessions.open, request, token)
        except TooManyAttemptsError as error:
            refused = _login_page(request, state, next_path, str(error), 429)
            refused.headers["Retry-After"] = str(error.retry_after_s)
            return refused
        except ClewError as error:
            message = f"That token is not valid: {error}"
            return _login_page(request, state, next_path, message, 401)
        target = next_path or url_for(request, "ui.models")
        response = Response(status_code=303, headers={"Location": target})
        _set_cookie(response, request, SESSION_COOKIE, session, state.sessions.lifetime_s, "/")
        response.delete_cookie(LOGIN_COOKIE, path=url_for(request, "ui.login"))
        response.delete_cookie(LEGACY_TOKEN_COOKIE, path="/")
        return response

    @router.post("/logout", name="ui.logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        form = await read_form(request)
        session = request.cookies.get(SESSION_COOKIE, "")
        if session and state.sessions is not None:
            if not _same(form, state.csrf_token(request, "")):
                return error_page(request, EXPIRED_FORM.replace("sign-in", "sign-out"), 403)
            await run_in_threadpool(state.sessions.close, request, session)
        response = Response(status_code=303, headers={"Location": url_for(request, "ui.login")})
        response.delete_cookie(SESSION_COOKIE, path="/")
        response.delete_cookie(LEGACY_TOKEN_COOKIE, path="/")
        return response


def _login_page(
    request: Request, state: UIState, next_path: str, message: str | None, status: int
) -> Response:
    """The sign-in form with a fresh one-time CSRF nonce in its own short-lived cookie."""
    nonce = secrets.token_urlsafe(24)
    context = {
        **base_context(request, None),
        "next": _local_path(next_path),
        "message": message,
        "login_csrf": state.login_csrf(nonce),
    }
    response = rendering.render("login.html", context, status)
    path = url_for(request, "ui.login")
    _set_cookie(response, request, LOGIN_COOKIE, nonce, LOGIN_FORM_SECONDS, path)
    return response


def _set_cookie(
    response: Response, request: Request, name: str, value: str, seconds: int, path: str
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=seconds,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path=path,
    )


def _same(form: dict[str, str], expected: str) -> bool:
    return hmac.compare_digest(form.get("csrf", ""), expected)


def _local_path(path: str) -> str:
    """Only same-site paths are followed after login (no open redirect to another host)."""
    if path.startswith("/") and not path.startswith("//") and "\\" not in path:
        return path
    return ""
