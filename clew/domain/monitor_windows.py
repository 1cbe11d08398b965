"""Monitoring windows as users name them: ``--window 1h``, ``--start/--end`` or ``--last N``.

A duration window is the newest *complete* one, aligned to the duration (``1h`` at 10:25 is
09:00-10:00), so asking again within the hour names the same window and the runner's
idempotency holds; a schedule's window ends at its firing time. Nothing here does I/O.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from clew.domain.monitoring import Window
from clew.errors import InvalidInputError

_UNITS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")


def parse_duration(text: str) -> int:
    """``30m``, ``1h``, ``7d`` in milliseconds, or one sentence."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    if not match or int(match[1]) == 0:
        raise InvalidInputError(
            f"window {text!r} is not a duration; use a whole number and a unit "
            "(s, m, h, d or w), e.g. 1h or 7d."
        )
    return int(match[1]) * _UNITS[match[2]]


def parse_time(text: str) -> int:
    """An ISO 8601 time (UTC unless it says otherwise) in milliseconds, or one sentence."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (TypeError, ValueError) as error:
        raise InvalidInputError(
            f"time {text!r} is not an ISO 8601 time; use e.g. 2026-12-07T10:00:00Z."
        ) from error
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def window_for(
    model: str,
    version: int,
    now_ms: int,
    *,
    duration: str | None = None,
    start: str | None = None,
    end: str | None = None,
    last: int | None = None,
) -> Window:
    """The one window the options name; a duration alone is the newest complete one."""
    if duration is not None and (start is not None or end is not None):
        raise InvalidInputError("give either a window duration or a start and end time, not both.")
    if duration is not None:
        length = parse_duration(duration)
        end_ms = now_ms // length * length
        return Window(model, version, end_ms - length, end_ms, last)
    if start is None and end is None and last is None:
        raise InvalidInputError(
            "name a window: a duration (1h), a start and end time, or the last N predictions."
        )
    return Window(
        model,
        version,
        parse_time(start) if start is not None else None,
        parse_time(end) if end is not None else None,
        last,
    )


def ending_at(model: str, version: int, end_ms: int, length_ms: int) -> Window:
    """The window a schedule firing at ``end_ms`` reads: the ``length_ms`` before it."""
    return Window(model, version, end_ms - length_ms, end_ms)
