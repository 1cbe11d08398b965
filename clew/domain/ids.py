"""Time-ordered identifiers (ULIDs), so ids sort by creation time in every backend."""

from __future__ import annotations

import itertools
import os
import random
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Our own generator, seeded by the OS: ``clew.seed`` reseeds the global ``random``, and ids must
# stay unique however users seed their training. Drawing from it costs no system call.
_random = random.Random()
_lock = threading.Lock()
_last_ms = 0
_last_random = 0
_call_base = _random.getrandbits(79)  # PendingId's low bits: 2**79 draws before any overflow
_call_counter = itertools.count()


def _after_fork_in_child() -> None:
    """A child must not repeat its parent's ids, nor wait on a lock a parent's thread held."""
    global _lock, _last_ms, _call_base
    _random.seed()
    _lock = threading.Lock()
    _last_ms = 0
    _call_base = _random.getrandbits(79)


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)


# Two digits per step from a table of all 1,024 pairs: 13 steps instead of 26 make an id cost
# ~1.5 µs instead of ~4, and one is made per predict call.
_PAIRS = [high + low for high in _ALPHABET for low in _ALPHABET]
_PAIR_SHIFTS = range(120, -1, -10)


def _encode(value: int) -> str:
    """The 26 Crockford base32 digits of a 128-bit value (the first one holds 3 bits)."""
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _PAIR_SHIFTS])


def new_id() -> str:
    """A 26-character ULID; monotonic within one process even inside the same millisecond."""
    return _encode(_new_value())


def _new_value() -> int:
    global _last_ms, _last_random
    with _lock:
        now_ms = time.time_ns() // 1_000_000
        if now_ms <= _last_ms:
            now_ms = _last_ms
            _last_random += 1
        else:
            _last_random = _random.getrandbits(79)
        _last_ms = now_ms
        return now_ms << 80 | _last_random


class PendingId:
    """A ULID drawn now whose 26 characters are written the first time someone reads them.

    ``predict`` draws one per call, where every microsecond counts (a fast model's 5% budget
    is ~10 µs): writing the characters right after the model ran cost ~5 µs, so the capture
    writer or a caller asking for ids does it later. Its 80 low bits are a per-process random
    base plus a counter, which makes it unique without ``new_id``'s lock; two calls in the
    same millisecond still sort in the order they were drawn.
    """

    __slots__ = ("_text", "_value", "time_ms")

    def __init__(self) -> None:
        self.time_ms = time.time_ns() // 1_000_000
        self._value = self.time_ms << 80 | (_call_base + next(_call_counter))
        self._text: str | None = None

    def __str__(self) -> str:
        if self._text is None:
            self._text = _encode(self._value)
        return self._text

    def __repr__(self) -> str:
        return f"PendingId({str(self)!r})"


def is_id(text: str) -> bool:
    """True when ``text`` looks like a ULID that clew could have issued."""
    return len(text) == 26 and all(ch in _ALPHABET for ch in text.upper())


def id_time_ms(identifier: str) -> int:
    """The creation time (ms since the epoch) encoded in a ULID."""
    value = 0
    for ch in identifier[:10].upper():
        value = value * 32 + _ALPHABET.index(ch)
    return value
