"""A web UI session as a value: who, from where, how long it lasts, whether it was revoked.

``service/sessions.py`` opens, checks and ends sessions in the store; a remote client lists
and revokes them through a server and gets the same value back. Never holds the secret.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class SessionInfo:
    """One session as an admin sees it; never its secret."""

    id: str
    user_name: str
    token_id: str
    created_ms: int
    last_seen_ms: int
    idle_ms: int
    expires_ms: int
    client: str
    user_agent: str
    revoked_ms: int | None
    revoked_by: str | None

    def ended(self, now: int) -> bool:
        idle = now >= self.last_seen_ms + self.idle_ms
        return self.revoked_ms is not None or now >= self.expires_ms or idle

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
