"""Sign-in attempts and failed token checks counted in the store, so that every server process
behind a load balancer counts the same attempts (the limits: ``clew/server/login_limits.py``).

Each attempt is a row (key, time). A key at its limit gets a ``login_blocks`` row saying until
when it is refused, which every process reads back. A key's rows older than the window go when
it is counted again, and ``prune`` drops everyone's, so the tables hold about one window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from clew.service.runs import now_ms
from clew.store import schema
from clew.store.location import Store

KEY_LENGTH = 200  # schema.NAME


@dataclass(frozen=True)
class Counted:
    """A key's attempts within the window, the one just counted included (at most its limit
    plus one: more are not read), and until when the key is refused (0: it is not)."""

    count: int
    until_ms: int


def count(store: Store, key: str, limit: int, window_ms: int) -> Counted:
    """Count one attempt against ``key``; at ``limit`` attempts within ``window_ms`` the key is
    refused until the oldest of its last ``limit`` attempts leaves the window."""
    table, key, now = schema.login_attempts, key[:KEY_LENGTH], now_ms()
    with store.db.write() as connection:
        cutoff = now - window_ms
        connection.execute(delete(table).where(table.c.key == key, table.c.time_ms <= cutoff))
        connection.execute(table.insert().values(key=key, time_ms=now))
        recent = connection.execute(
            select(table.c.time_ms)
            .where(table.c.key == key, table.c.time_ms > cutoff)
            .order_by(table.c.time_ms.desc())
            .limit(limit + 1)
        ).scalars()
        times = list(recent)
        until = times[limit - 1] + window_ms if len(times) >= limit else 0
        if until:
            _block(connection, store.db.dialect, key, until)
    return Counted(len(times), until)


def _block(connection: Connection, dialect: str, key: str, until_ms: int) -> None:
    """Refuse ``key`` until ``until_ms`` (later of this and any block already there): one
    statement, so two processes blocking one key at once cannot collide."""
    table = schema.login_blocks
    insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    statement = insert.values(key=key, until_ms=until_ms)
    later = statement.excluded.until_ms
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=[table.c.key],
            set_={"until_ms": later},
            where=table.c.until_ms < later,
        )
    )


def blocks(store: Store, keys: Sequence[str] | None = None, limit: int = 100_000) -> dict[str, int]:
    """The keys refused now (of ``keys``, or all of them up to ``limit``), with until when."""
    table = schema.login_blocks
    query = select(table.c.key, table.c.until_ms).where(table.c.until_ms > now_ms())
    if keys is not None:
        query = query.where(table.c.key.in_([key[:KEY_LENGTH] for key in keys]))
    with store.db.read() as connection:
        rows = connection.execute(query.order_by(table.c.until_ms.desc()).limit(limit))
        return {key: until for key, until in rows}


def prune(store: Store, window_ms: int) -> None:
    """Forget attempts older than the window and blocks that have ended, for every key."""
    now = now_ms()
    attempts, refused = schema.login_attempts, schema.login_blocks
    with store.db.write() as connection:
        connection.execute(delete(attempts).where(attempts.c.time_ms <= now - window_ms))
        connection.execute(delete(refused).where(refused.c.until_ms <= now))
