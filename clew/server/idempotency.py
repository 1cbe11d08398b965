"""Idempotency keys: a retried POST returns the first attempt's answer instead of acting twice.

The client sends the same ``Idempotency-Key`` on every retry of one call. The first request to
arrive claims the key (a row inserted before the route runs; the primary key makes the claim
atomic across replicas), and its response is stored when the route succeeds. A retry then gets
the stored response; a retry that arrives while the first is still running gets 409
``request_in_progress`` (the client waits and retries); a failed first attempt releases the key
so the retry runs for real. Keys are scoped to the authenticated user, and a key reused for a
different request body is refused. A key expires after a day (``clew.service.idempotency``): an
expired row is replaced by the next claim and ``clew gc --yes`` deletes the rest. These rows
are protocol bookkeeping, not records of the registry, so they are not audited.
"""

from __future__ import annotations

import contextvars
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
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
    """Run the route once per key: replay a stored answer, or run it and store the answer."""
    pending = current.get()
    if pending is None:
        return produce()
    current.set(None)
    stored = _claim(pending)
    if stored is not None:
        return stored
    try:
        response = produce()
    except BaseException:
        _release(pending)
        raise
    if response.status_code < 400:
        _settle(pending, response)
    else:
        _release(pending)
    return response


def _claim(pending: Pending) -> Response | None:
    table = schema.idempotency_keys
    now = now_ms()
    mine = (table.c.user_name == pending.user, table.c.key == pending.key)
    with pending.store.db.write() as connection:
        row = connection.execute(select(table).where(*mine)).first()
        if row is not None and idempotency.is_expired(row.created_ms, now):
            connection.execute(delete(table).where(*mine))
            row = None
        if row is None:
            try:
                with connection.begin_nested():
                    connection.execute(
                        table.insert().values(
                            user_name=pending.user,
                            key=pending.key,
                            request_digest=pending.fingerprint,
                            created_ms=now,
                        )
                    )
                return None
            except IntegrityError:
                row = None
    if row is None or row.status_code is None:
        raise HTTPError(
            409,
            "request_in_progress",
            "an earlier attempt of this request is still running; retry in a moment.",
        )
    if row.request_digest != pending.fingerprint:
        raise HTTPError(
            422,
            "invalid_input",
            f"Idempotency-Key {pending.key!r} was already used for a different request; use "
            "a new key.",
        )
    media = "application/json" if row.response else None
    return Response(row.response or b"", status_code=row.status_code, media_type=media)


def _settle(pending: Pending, response: Response) -> None:
    table = schema.idempotency_keys
    with pending.store.db.write() as connection:
        connection.execute(
            update(table)
            .where(table.c.user_name == pending.user, table.c.key == pending.key)
            .values(status_code=response.status_code, response=bytes(response.body).decode())
        )


def _release(pending: Pending) -> None:
    table = schema.idempotency_keys
    with pending.store.db.write() as connection:
        connection.execute(
            delete(table).where(table.c.user_name == pending.user, table.c.key == pending.key)
        )
