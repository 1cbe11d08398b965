"""The clew server's web sessions: the UI's ``SessionGate`` over the store, rate-limited.

Opening a session checks the API token (``clew.service.sessions``), after the sign-in limits
(``login_limits``) for the client's address and, once the token names one, its account. The
client's address is the TCP peer, or the ``X-Forwarded-For`` of a proxy listed in
``--forwarded-allow-ips`` (uvicorn's ``ProxyHeadersMiddleware`` rewrites it, and the scheme from
``X-Forwarded-Proto``, only for those peers).
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from clew.errors import AuthenticationError
from clew.server.login_limits import LoginLimits
from clew.service import accounts, sessions
from clew.store.location import Store

SESSION_COOKIE = "clew_session"


class SignInRequired(AuthenticationError):
    """A web UI request without a live session: the UI answers with its sign-in page."""


def client_address(request: Request) -> str:
    """Who is calling, as far as this server can tell (a trusted proxy's client, else the peer)."""
    return request.client.host if request.client is not None else "unknown"


def limits(request: Request) -> LoginLimits:
    login_limits: LoginLimits = request.app.state.login_limits
    return login_limits


@dataclass
class ServerSessions:
    """``SessionGate`` for ``create_ui_router``: sessions stored in the server's store."""

    store: Store
    lifetimes: sessions.Lifetimes

    @property
    def lifetime_s(self) -> int:
        return self.lifetimes.absolute_s

    def open(self, request: Request, token: str) -> str:
        address = client_address(request)
        limits(request).check(address)
        try:
            principal = accounts.authenticate(self.store, token)
        except AuthenticationError as error:
            limits(request).failed(address, error.user)
            raise
        limits(request).check(address, principal.name)
        limits(request).signed_in(principal.name)
        opened = sessions.open_session(
            self.store,
            principal,
            client=address,
            user_agent=request.headers.get("user-agent", ""),
            lifetimes=self.lifetimes,
        )
        return opened.secret

    def close(self, request: Request, session: str) -> None:
        sessions.close_session(self.store, session)


async def session_principal(request: Request, secret: str) -> accounts.Principal:
    """The principal of the UI session cookie ``secret`` (refused when ended)."""
    return await run_in_threadpool(sessions.authenticate_session, request.app.state.store, secret)
