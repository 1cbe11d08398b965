"""Fair use: one caller's searches cannot take the database connections everyone else needs.

A run search may scan many rows and hold a database connection until its statement timeout.
Each caller (the authenticated user; the client address for anonymous reads) may run at most
``CLEW_SEARCHES_PER_USER`` searches at once, and the whole server at most
``CLEW_SEARCHES_PER_SERVER``; past either the caller is told to retry (429 for the caller's own
limit, 503 when the server is full), with ``Retry-After``, before any connection is taken.
Counts are per server process: several replicas each enforce their own.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from fastapi import Request

from clew.errors import InvalidInputError, StoreBusyError, TooManySearchesError
from clew.service.accounts import ANONYMOUS

PER_USER_ENV = "CLEW_SEARCHES_PER_USER"
PER_SERVER_ENV = "CLEW_SEARCHES_PER_SERVER"
RETRY_AFTER_S = 1


@dataclass
class SearchSlots:
    """How many searches each caller and the whole server are running now."""

    per_user: int
    per_server: int
    running: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_environment(cls) -> SearchSlots:
        return cls(per_user=_positive(PER_USER_ENV, 2), per_server=_positive(PER_SERVER_ENV, 8))

    def take(self, caller: str) -> None:
        with self.lock:
            if self.running[caller] >= self.per_user:
                raise _retry_after(
                    TooManySearchesError(
                        f"{caller} already runs {self.per_user} searches at once, the most "
                        f"allowed ({PER_USER_ENV}); wait for one to finish and retry."
                    )
                )
            if self.running.total() >= self.per_server:
                raise _retry_after(
                    StoreBusyError(
                        f"the server already runs {self.per_server} searches at once "
                        f"({PER_SERVER_ENV}); retry in {RETRY_AFTER_S} s."
                    )
                )
            self.running[caller] += 1

    def give_back(self, caller: str) -> None:
        with self.lock:
            self.running[caller] -= 1
            if self.running[caller] <= 0:
                del self.running[caller]


def _retry_after(error: TooManySearchesError | StoreBusyError) -> Exception:
    error.retry_after_s = RETRY_AFTER_S  # type: ignore[union-attr]
    return error


def _positive(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise InvalidInputError(f"{name}={text!r} is not a whole number; use 1 or more.")
    return int(text)


def _caller(request: Request) -> str:
    principal = getattr(request.state, "principal", None)
    if principal is not None and principal != ANONYMOUS:
        return f"user {principal.name!r}"
    client = request.client.host if request.client else "unknown"
    return f"the anonymous client at {client}"


async def search_slot(request: Request) -> AsyncIterator[None]:
    """The dependency of every route that searches the runs table (the API's search and the
    web UI's experiment pages); it runs after the app-wide ``authorize``, which names the caller.
    A search holds its slot while it runs."""
    slots: SearchSlots | None = getattr(request.app.state, "search_slots", None)
    if slots is None:
        slots = request.app.state.search_slots = SearchSlots.from_environment()
    caller = _caller(request)
    slots.take(caller)
    try:
        yield
    finally:
        slots.give_back(caller)
