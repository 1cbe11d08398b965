"""How long a clew server remembers idempotency keys (see ``clew/server/idempotency.py``).

A client retries one call for seconds or minutes, never for a day, so a key older than
``KEY_TTL_MS`` is treated as unknown (a new request may claim it) and ``clew gc --yes`` deletes
such rows. Without an expiry the table grew by one row per keyed POST forever, and a claim left
behind by a server killed mid-request answered "in progress" to every later retry.
"""

from __future__ import annotations

from sqlalchemy import Connection, delete, func, select

from clew.store import schema

KEY_TTL_MS = 24 * 60 * 60 * 1000


def is_expired(created_ms: int, now_ms: int) -> bool:
    return created_ms < now_ms - KEY_TTL_MS


def count_expired(connection: Connection, now_ms: int) -> int:
    table = schema.idempotency_keys
    query = select(func.count()).where(table.c.created_ms < now_ms - KEY_TTL_MS)
    return int(connection.execute(query).scalar() or 0)


def purge_expired(connection: Connection, now_ms: int) -> int:
    """Delete expired keys inside the caller's write transaction; return how many went."""
    table = schema.idempotency_keys
    result = connection.execute(delete(table).where(table.c.created_ms < now_ms - KEY_TTL_MS))
    return result.rowcount
