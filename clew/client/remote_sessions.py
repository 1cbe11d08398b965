"""``SessionService`` over HTTP: a server's web UI sessions, for its admins."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from clew.domain.sessions import SessionInfo

if TYPE_CHECKING:
    from clew.client.transport import Transport


class RemoteSessions:
    """List and revoke the server's UI sessions (its permission table: admins only)."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def list_sessions(self, user: str | None = None, ended: bool = False) -> list[SessionInfo]:
        params: dict[str, str] = {"ended": "true"} if ended else {}
        if user is not None:
            params["user"] = user
        return [SessionInfo(**row) for row in self._t.call("GET", "/sessions", params=params)]

    def revoke(self, session_id: str, actor: str) -> SessionInfo:
        """Attributed to the token's user (the server's business), not to ``actor``."""
        path = f"/sessions/{quote(session_id, safe='')}/revoke"
        return SessionInfo(**self._t.call("POST", path))
