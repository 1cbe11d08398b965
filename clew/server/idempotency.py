"""Idempotency keys: a retried POST returns the first attempt's answer instead of acting twice.

The client sends the same ``Idempotency-Key`` on every retry of one call. The first request to
arrive claims the key (a row inserted in the same transaction as the route's writes, under the
store's write lock, so replicas queue rather than race) and stores its response before that
transaction commits. A retry then gets the stored response; a retry that arrives while the
first is still running waits for the lock and replays its answer; a failed or killed first
attempt commits nothing, so the retry runs for real. Keys are scoped to the authenticated user,
and a key reused for a different request body is refused. A key expires after a day
(``clew.service.idempotency``): an expired row is replaced by the next claim and ``clew gc
--yes`` deletes the rest. These rows are protocol bookkeeping, not records of the registry, so
they are not audited.
"""

from __future__ import annotations

import contextvars
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request
from sqlalchemy import Connection, delete, select, update
from starlette.responses import Response

from clew.server.errors import HTTPError
from clew.service import idempotency
from clew.service.runs import now_ms
from clew.store import schema
from clew.store.location import Store

HEADER = "idempotency-key"
_KEY = re.compile(r"^[A-Za-z0-9._:\-]{8,100}$")


@dataclass(frozen=True)
class Pending:
    """A POST that carried a key, waiting for its route to run (set by ``authorize``)."""

    store: Store
    user: str
    key: str
    fingerprint: str


current: contextvars.ContextVar[Pending | None] = contextvars.ContextVar(
    "clew_idempotency", default=None
)


async def note(request: Request, user: str) -> None:
    """Remember the request's key for ``run_once``; the claim itself happens only once the
    body has been validated, so a refused request never holds a key."""
    current.set(None)
    key = request.headers.get(HEADER)
    if request.method != "POST" or key is None:
        return
    if not _KEY.match(key):
        raise HTTPError(
            422, "invalid_input", "Idempotency-Key must be 8-100 letters, digits or . _ : -."
        )
    body = await request.body()
    fingerprint = hashlib.sha256(request.url.path.encode() + b"\n" + body).hexdigest()
    current.set(Pending(request.app.state.store, user, key, fingerprint))


def run_once(produce: Callable[[], Response]) -> Response:
    """Run the route once per key: replay a stored answer, or run it and store the answer.

    Claim, route and stored answer share one database transaction: a request killed half-way
    leaves nothing behind (its retry runs afresh), and a retry racing the first attempt
    waits for the write lock, then replays the committed answer.
    """
    pending = current.get()
    if pending is None:
        return produce()
    current.set(None)
    try:
        with pending.store.db.single_transaction() as connection:
            stored = _claim(connection, pending)
            if stored is not None:
                return stored
            response = produce()
            if response.status_code >= 400:
                raise _Refused(response)
            _settle(connection, pending, response)
            return response
    except _Refused as refused:
        return refused.response


class _Refused(Exception):
    """An error answer: its transaction rolls back, so the key stays free for a retry."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def _claim(connection: Connection, pending: Pending) -> Response | None:
    table = schema.idempotency_keys
    mine = (table.c.user_name == pending.user, table.c.key == pending.key)
    row = connection.execute(select(table).where(*mine)).first()
    if row is not None and (
        row.status_code is None or idempotency.is_expired(row.created_ms, now_ms())
    ):
        # Expired, or a claim an older clew left unsettled when it was killed.
        connection.execute(delete(table).where(*mine))
        row = None
    if row is None:
        connection.execute(
            table.insert().values(
                user_name=pending.user,
                key=pending.key,
                request_digest=pending.fingerprint,
                created_ms=now_ms(),
            )
        )
        return None
    if row.request_digest != pending.fingerprint:
        raise HTTPError(
            422,
            "invalid_input",
            f"Idempotency-Key {pending.key!r} was already used for a different request; use "
            "a new key.",
        )
    media = "application/json" if row.response else None
    return Response(row.response or b"", status_code=row.status_code, media_type=media)


def _settle(connection: Connection, pending: Pending, response: Response) -> None:
    table = schema.idempotency_keys
    connection.execute(
        update(table)
        .where(table.c.user_name == pending.user, table.c.key == pending.key)
        .values(status_code=response.status_code, response=bytes(response.body).decode())
    )
