"""Signing in to the UI in server mode: a token typed once, kept in an HttpOnly cookie.

The cookie is ``SameSite=Strict`` and never readable from JavaScript; every form also
carries a per-user CSRF token, so another site can neither read the token nor act with it.
"""

from collections.abc import Callable

from fastapi import APIRouter, Request
from starlette.responses import Response

from clew.server.ui import rendering
from clew.server.ui.pages import CheckToken, UIState, base_context, read_form, url_for

TOKEN_COOKIE = "clew_token"
SIGNING_FIELD = "signing_token"
COOKIE_SECONDS = 12 * 3600


def cookie_actor(check_token: CheckToken) -> Callable[[Request], str | None]:
    """A ``get_actor`` dependency for servers: the user of the cookie's or header's token."""

    def actor(request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
        token = token or request.cookies.get(TOKEN_COOKIE, "")
        return check_token(token) if token else None

    return actor


def add_routes(router: APIRouter, state: UIState) -> None:
    @router.get("/login", name="ui.login", include_in_schema=False)
    def login(request: Request, next: str = "") -> Response:
        return _login_page(request, next, None, 200)

    @router.post("/login", name="ui.login_submit", include_in_schema=False)
    async def login_submit(request: Request) -> Response:
        form = await read_form(request)
        token = form.get("token", "").strip()
        next_path = _local_path(form.get("next", ""))
        user = state.check_token(token) if state.check_token and token else None
        if user is None:
            message = "That token is not valid (unknown, expired or revoked); check it and retry."
            return _login_page(request, next_path, message, 401)
        target = next_path or url_for(request, "ui.models")
        response = Response(status_code=303, headers={"Location": target})
        response.set_cookie(
            TOKEN_COOKIE,
            token,
            max_age=COOKIE_SECONDS,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    @router.post("/logout", name="ui.logout", include_in_schema=False)
    def logout(request: Request) -> Response:
        response = Response(status_code=303, headers={"Location": url_for(request, "ui.login")})
        response.delete_cookie(TOKEN_COOKIE, path="/")
        return response


def _login_page(request: Request, next_path: str, message: str | None, status: int) -> Response:
    context = {**base_context(request, None), "next": _local_path(next_path), "message": message}
    return rendering.render("login.html", context, status)


def _local_path(path: str) -> str:
    """Only same-site paths are followed after login (no open redirect to another host)."""
    if path.startswith("/") and not path.startswith("//") and "\\" not in path:
        return path
    return ""
