"""Web UI sessions: what a browser holds instead of an API token.

Signing in with an API token opens a session; the browser's cookie carries only the session's
random id (256 bits), and the store keeps only its SHA-256, so neither a stolen database row nor
the cookie jar yields a token usable against the API. A session ends at the first of: idle for
``idle_ms``, its absolute ``expires_ms``, logout, an admin's revocation, or the end of the API
token it was opened with (revoked or expired) or of its user (disabled). Sessions live in the
store, so every server replica sees a logout or revocation on its next request.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select, update

from clew.domain import ids
from clew.domain.roles import Role
from clew.domain.sessions import SessionInfo
from clew.errors import AuthenticationError, ConflictError, NotFoundError
from clew.service import accounts, audit, policy
from clew.service.accounts import Principal
from clew.service.runs import now_ms
from clew.store import schema
from clew.store.location import Store

SESSION_PREFIX = "clews_"
DEFAULT_IDLE_S = 30 * 60
DEFAULT_ABSOLUTE_S = 12 * 3600
# A session's last use is written at most this often, not on every page view.
TOUCH_MS = 60_000


@dataclass(frozen=True)
class Lifetimes:
    """How long a session lasts unused (``idle_s``) and at most (``absolute_s``)."""

    idle_s: int = DEFAULT_IDLE_S
    absolute_s: int = DEFAULT_ABSOLUTE_S


@dataclass(frozen=True)
class OpenedSession:
    """A new session: ``secret`` goes into the browser's cookie and is never stored."""

    info: SessionInfo
    secret: str


def open_session(
    store: Store, principal: Principal, *, client: str, user_agent: str, lifetimes: Lifetimes
) -> OpenedSession:
    """Sign in ``principal``, just authenticated by its API token (``accounts.authenticate``)."""
    assert principal.token_id is not None
    secret = SESSION_PREFIX + secrets.token_urlsafe(32)
    created = now_ms()
    info = SessionInfo(
        ids.new_id(),
        principal.name,
        principal.token_id,
        created,
        created,
        lifetimes.idle_s * 1000,
        created + lifetimes.absolute_s * 1000,
        client[:100],
        user_agent[:200],
        None,
        None,
    )
    with store.db.write() as connection:
        row = {**info.to_dict(), "secret_hash": accounts.hash_token(secret)}
        connection.execute(schema.ui_sessions.insert().values(**row))
        audit.append(connection, principal.name, "session.open", _target(info), info.to_dict())
    return OpenedSession(info, secret)


def authenticate_session(store: Store, secret: str) -> Principal:
    """The principal of a live session; refuses an ended one with the reason."""
    sessions, tokens, users = schema.ui_sessions, schema.api_tokens, schema.users
    query = (
        select(
            sessions,
            tokens.c.revoked_ms.label("token_revoked_ms"),
            tokens.c.expires_ms.label("token_expires_ms"),
            users.c.role,
            users.c.disabled_ms,
        )
        .join(tokens, tokens.c.id == sessions.c.token_id)
        .join(users, users.c.name == sessions.c.user_name)
        .where(sessions.c.secret_hash == accounts.hash_token(secret))
    )
    now = now_ms()
    with store.db.read() as connection:
        row = connection.execute(query).first()
        _check_session(row, now)
        assert row is not None
        grants = accounts.grants_of(connection, row.user_name)
    if now - row.last_seen_ms >= TOUCH_MS:
        _touch(store, row.id, now)
    return Principal(row.user_name, Role.parse(row.role), grants, row.token_id)


def close_session(store: Store, secret: str) -> SessionInfo | None:
    """Logout: end the session whose secret the browser holds (None: no such session)."""
    table = schema.ui_sessions
    with store.db.write() as connection:
        row = connection.execute(
            select(table).where(table.c.secret_hash == accounts.hash_token(secret))
        ).first()
        if row is None or row.revoked_ms is not None:
            return None
        return _revoke(connection, _info(row), row.user_name, "session.close")


class SessionService:
    """List and revoke sessions (an admin's job; a user may end their own)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def list_sessions(self, user: str | None = None, ended: bool = False) -> list[SessionInfo]:
        """Sessions (of ``user``), newest first; only live ones unless ``ended``."""
        table = schema.ui_sessions
        query = select(table).order_by(table.c.created_ms.desc(), table.c.id.desc())
        if user is not None:
            query = query.where(table.c.user_name == user)
        now = now_ms()
        with self.store.db.read() as connection:
            found = [_info(row) for row in connection.execute(query)]
        return [info for info in found if ended or not info.ended(now)]

    def revoke(self, session_id: str, actor: str) -> SessionInfo:
        """End a session at once, on every replica (audited)."""
        table = schema.ui_sessions
        with self.store.db.write() as connection:
            row = connection.execute(select(table).where(table.c.id == session_id)).first()
            if row is None:
                raise NotFoundError(
                    f"no session {session_id!r}; list them with `clew sessions list`."
                )
            if actor != row.user_name:
                rules = policy.current(connection).rules
                action = f"revoke {row.user_name}'s session"
                policy.require_member(connection, rules, actor, rules.admin_roles, action)
            if row.revoked_ms is not None:
                raise ConflictError(f"session {session_id} was already ended.")
            return _revoke(connection, _info(row), actor, "session.revoke")


def _check_session(row: Any, now: int) -> None:
    if row is None:
        raise AuthenticationError("that session is unknown; sign in again.")
    if row.revoked_ms is not None:
        raise AuthenticationError(f"session {row.id} was ended; sign in again.")
    if now >= row.expires_ms or now >= row.last_seen_ms + row.idle_ms:
        raise AuthenticationError(f"session {row.id} has expired; sign in again.")
    if row.token_revoked_ms is not None or now >= row.token_expires_ms:
        raise AuthenticationError(
            f"the token session {row.id} was opened with is no longer valid; sign in again."
        )
    if row.disabled_ms is not None:
        raise AuthenticationError(f"user {row.user_name} is disabled; ask an admin.")


def _touch(store: Store, session_id: str, now: int) -> None:
    table = schema.ui_sessions
    with store.db.write() as connection:
        connection.execute(update(table).where(table.c.id == session_id).values(last_seen_ms=now))


def _revoke(connection: Connection, info: SessionInfo, actor: str, action: str) -> SessionInfo:
    ended = SessionInfo(**{**info.to_dict(), "revoked_ms": now_ms(), "revoked_by": actor})
    connection.execute(
        update(schema.ui_sessions)
        .where(schema.ui_sessions.c.id == info.id)
        .values(revoked_ms=ended.revoked_ms, revoked_by=actor)
    )
    audit.append(connection, actor, action, _target(info), {"id": info.id})
    return ended


def _info(row: Any) -> SessionInfo:
    return SessionInfo(**{name: getattr(row, name) for name in SessionInfo.__dataclass_fields__})


def _target(info: SessionInfo) -> str:
    return f"user:{info.user_name}"
