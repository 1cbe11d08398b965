"""Rate limits on sign-ins and token checks: 429 with ``Retry-After`` instead of endless guesses.

Two sliding windows, held in this process's memory:

- per client address (the peer, or the ``X-Forwarded-For`` of a configured proxy): every
  failed check counts, at sign-in, on a bearer token and on a signing token;
- per account: every sign-in counts, and every failed check that names the account (its
  revoked, expired or wrong-purpose token, another user's signing token).

Tokens are 256-bit random, so the limits do not protect them from guessing; they stop floods,
credential stuffing against a future password or SSO login, and a leaked old token being
hammered. With several server processes each one counts on its own, so a client spread over
N processes gets up to N times the limit (docs/deployment.md says so).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from clew.errors import TooManyAttemptsError

WINDOW_S = 300.0
MAX_FAILURES_PER_ADDRESS = 10
MAX_SIGN_INS_PER_ACCOUNT = 10
# Keys not seen for a whole window are forgotten; past this many keys the oldest go first.
MAX_KEYS = 100_000


@dataclass
class LoginLimits:
    """Counts recent attempts per key (``address:…`` or ``account:…``) and refuses past the
    limit until the oldest counted attempt leaves the window."""

    window_s: float = WINDOW_S
    per_address: int = MAX_FAILURES_PER_ADDRESS
    per_account: int = MAX_SIGN_INS_PER_ACCOUNT
    _seen: dict[str, deque[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, address: str, account: str | None = None) -> None:
        """Raise ``TooManyAttemptsError`` when the address or the account is over its limit."""
        now = time.monotonic()
        with self._lock:
            wait = self._wait(f"address:{address}", self.per_address, now)
            if account is not None:
                wait = max(wait, self._wait(f"account:{account}", self.per_account, now))
        if wait > 0:
            who = f"account {account!r} or address {address}" if account else f"address {address}"
            raise TooManyAttemptsError(
                f"too many sign-in attempts or failed token checks for {who}; wait "
                f"{math.ceil(wait)} s and retry with a valid token.",
                math.ceil(wait),
            )

    def failed(self, address: str, account: str | None = None) -> None:
        """Count one failed check against the address (and the account it named)."""
        self._count(f"address:{address}")
        if account is not None:
            self._count(f"account:{account}")

    def signed_in(self, account: str) -> None:
        """Count one successful sign-in against the account."""
        self._count(f"account:{account}")

    def _count(self, key: str) -> None:
        now = time.monotonic()
        with self._lock:
            if key not in self._seen and len(self._seen) >= MAX_KEYS:
                self._forget(now)
            self._seen.setdefault(key, deque()).append(now)

    def _wait(self, key: str, limit: int, now: float) -> float:
        """Seconds until ``key`` may try again (0: now)."""
        seen = self._seen.get(key)
        if seen is None:
            return 0.0
        while seen and seen[0] <= now - self.window_s:
            seen.popleft()
        if len(seen) < limit:
            return 0.0
        return seen[-limit] + self.window_s - now

    def _forget(self, now: float) -> None:
        cutoff = now - self.window_s
        stale = [key for key, seen in self._seen.items() if not seen or seen[-1] <= cutoff]
        for key in stale or list(self._seen)[: len(self._seen) // 10 + 1]:
            del self._seen[key]
