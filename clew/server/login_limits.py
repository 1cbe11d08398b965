"""Rate limits on sign-ins and token checks: 429 with ``Retry-After`` instead of endless guesses.

Two sliding windows, counted in the store (``clew.service.login_attempts``) so that every
server process on one store shares them: a client spread over N replicas behind a load
balancer gets the limit once, not N times.

- per client address (the peer, or the ``X-Forwarded-For`` of a configured proxy): every
  failed check counts, at sign-in, on a bearer token and on a signing token;
- per account: every sign-in counts, and every failed check that names the account (its
  revoked, expired or wrong-purpose token, another user's signing token).

Checking costs a request nothing: each process reads the refused keys back from the store at
most once a second (``REFRESH_S``) and checks its copy; sign-ins, which are rare, read the store
itself. A failed check is counted in the store at once, and a failure past the limit is
answered 429 like a refused one, so within that second another process can still make one
check of a refused key but never answer it 401: at most the limit of failures gets an answer.

Tokens are 256-bit random, so the limits do not protect them from guessing; they stop floods,
credential stuffing against a future password or SSO login, and a leaked old token being
hammered.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

from clew.errors import TooManyAttemptsError
from clew.service import login_attempts
from clew.service.login_attempts import Counted
from clew.service.runs import now_ms
from clew.store.location import Store

WINDOW_S = 300.0
MAX_FAILURES_PER_ADDRESS = 10
MAX_SIGN_INS_PER_ACCOUNT = 10
REFRESH_S = 1.0  # how stale a process's copy of the refused keys may be


@dataclass
class LoginLimits:
    """Counts attempts per key (``address:…`` or ``account:…``) in ``store`` and refuses past
    the limit until the oldest counted attempt leaves the window."""

    store: Store
    window_s: float = WINDOW_S
    per_address: int = MAX_FAILURES_PER_ADDRESS
    per_account: int = MAX_SIGN_INS_PER_ACCOUNT
    refresh_s: float = REFRESH_S
    _refused: dict[str, int] = field(default_factory=dict)
    _read_at: float = -math.inf
    _pruned_at: float = -math.inf
    _reading: threading.Lock = field(default_factory=threading.Lock)

    def check(self, address: str, account: str | None = None) -> None:
        """Raise ``TooManyAttemptsError`` when the address or the account is over its limit
        (with an account, as at sign-in, the store is asked; otherwise this process's copy)."""
        keys = [_address(address)] + ([_account(account)] if account is not None else [])
        refused = login_attempts.blocks(self.store, keys) if account is not None else self._copy()
        wait_ms = max(refused.get(key, 0) for key in keys) - now_ms()
        if wait_ms > 0:
            raise _too_many(address, account, wait_ms)

    def failed(self, address: str, account: str | None = None) -> None:
        """Count one failed check against the address (and the account it named); raise
        ``TooManyAttemptsError`` if it was past the limit, which another process had made
        before this one heard of it."""
        counted = [self._count(_address(address), self.per_address)]
        if account is not None:
            counted.append(self._count(_account(account), self.per_account))
        past = [one for one, limit in counted if one.count > limit]
        if past:
            raise _too_many(address, account, max(one.until_ms for one in past) - now_ms())

    def signed_in(self, account: str) -> None:
        """Count one successful sign-in against the account."""
        self._count(_account(account), self.per_account)

    def _count(self, key: str, limit: int) -> tuple[Counted, int]:
        window_ms = int(self.window_s * 1000)
        self._prune(window_ms)
        counted = login_attempts.count(self.store, key, limit, window_ms)
        if counted.until_ms:
            self._refused = {**self._refused, key: counted.until_ms}
        return counted, limit

    def _copy(self) -> dict[str, int]:
        """The refused keys, read from the store when the copy is older than ``refresh_s``
        (by one thread at a time; the others keep using the copy meanwhile)."""
        if time.monotonic() - self._read_at >= self.refresh_s and self._reading.acquire(False):
            try:
                self._refused = login_attempts.blocks(self.store)
                self._read_at = time.monotonic()
            finally:
                self._reading.release()
        return self._refused

    def _prune(self, window_ms: int) -> None:
        """Drop every key's old attempts once a window, when this process counts one."""
        if time.monotonic() - self._pruned_at >= self.window_s:
            self._pruned_at = time.monotonic()
            login_attempts.prune(self.store, window_ms)


def _address(address: str) -> str:
    return f"address:{address}"


def _account(account: str) -> str:
    return f"account:{account}"


def _too_many(address: str, account: str | None, wait_ms: int) -> TooManyAttemptsError:
    wait = max(1, math.ceil(wait_ms / 1000))
    who = f"account {account!r} or address {address}" if account else f"address {address}"
    return TooManyAttemptsError(
        f"too many sign-in attempts or failed token checks for {who}; wait {wait} s and retry "
        "with a valid token.",
        wait,
    )
