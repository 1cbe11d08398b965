"""``RemoteUserKeys``: users' signing keys over HTTP, shaped like ``UserKeyService``."""

from __future__ import annotations

from clew.client.transport import Transport, path_segment
from clew.domain.keys import UserKey


class RemoteUserKeys:
    """``UserKeyService`` over HTTP: registering and revoking others' keys is for admins."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def register(self, user: str, public_key: str, actor: str) -> UserKey:
        body = {"user": user, "public_key": public_key}
        return UserKey(**self._t.call("POST", "/user-keys", json_body=body))

    def list_keys(self, user: str | None = None) -> list[UserKey]:
        params = {} if user is None else {"user": user}
        return [UserKey(**key) for key in self._t.call("GET", "/user-keys", params=params)]

    def revoke(self, key_id: str, actor: str) -> UserKey:
        return UserKey(**self._t.call("POST", f"/user-keys/{path_segment(key_id)}/revoke"))
