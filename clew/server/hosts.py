"""The Host allow-list: ``clew server`` answers only to the names it is reached by.

A web page on another site can make a browser resolve its own name to the server's address
(DNS rebinding) and then read whatever the server shows without credentials (with
``--anonymous-read``, everything). The browser still sends the page's name in ``Host``, so
refusing names the server does not know closes that door. A server bound to loopback answers to
the loopback names by default; one bound to another interface with anonymous reads on must be
told its names (``--allowed-hosts``), and refuses to start otherwise.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

from clew.errors import InvalidInputError
from clew.server.errors import HTTP_CODES
from clew.server.responses import JSONResponse

ALLOWED_HOSTS_ENV = "CLEW_ALLOWED_HOSTS"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
ANY = "*"


def parse(text: str) -> list[str]:
    """``"a.example, *.b.example"`` as a list of lower-case names."""
    return [name.strip().lower() for name in text.split(",") if name.strip()]


def is_loopback(bind: str) -> bool:
    if bind.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(bind: str, anonymous_read: bool, given: Sequence[str]) -> list[str]:
    """The names a server bound to ``bind`` answers to: ``given``, else a safe default."""
    if given:
        return list(given)
    if is_loopback(bind):
        return list(LOOPBACK_HOSTS)
    if anonymous_read:
        raise InvalidInputError(
            f"a server on {bind} with --anonymous-read must be told the names it is reached "
            "by; add --allowed-hosts clew.example.com (or CLEW_ALLOWED_HOSTS) so other sites "
            "cannot read it through DNS rebinding."
        )
    return [ANY]


def host_name(header: str) -> str:
    """The Host header without its port (an IPv6 literal keeps its brackets)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[: header.find("]") + 1]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def matches(name: str, allowed: Sequence[str]) -> bool:
    return any(
        pattern == ANY
        or name == pattern
        or (pattern.startswith("*.") and name.endswith(pattern[1:]))
        for pattern in allowed
    )


class HostAllowList:
    """Refuse a request whose Host header is not allowed, before anything else reads it."""

    def __init__(self, app: ASGIApp, allowed: Sequence[str]) -> None:
        self.app = app
        self.allowed = [name.lower() for name in allowed]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            header = dict(scope.get("headers", [])).get(b"host", b"").decode("latin-1")
            if not matches(host_name(header), self.allowed):
                message = (
                    f"this server does not answer to the host name {host_name(header)!r}; "
                    "use its own address, or add the name to clew server --allowed-hosts."
                )
                request_id = scope.get("state", {}).get("request_id")
                body = {"code": HTTP_CODES[400], "message": message, "request_id": request_id}
                await JSONResponse(body, status_code=400)(scope, receive, send)
                return
        await self.app(scope, receive, send)
