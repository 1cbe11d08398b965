"""Five-field cron expressions (minute hour day-of-month month day-of-week), in UTC.

Monitor schedules (clew/service/monitor_schedules.py) say when a window is due with cron; this
small parser keeps the server free of another dependency. It understands ``*``, numbers, ranges
``a-b``, lists ``a,b`` and steps ``*/n`` / ``a-b/n``; day-of-week runs 0-6 from Sunday (7 is
Sunday too). As in cron, when both day fields are restricted a day matching either one is due.
Anything else is refused in one sentence before a schedule is stored.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from clew.errors import InvalidInputError

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12))
_WEEKDAY = ("day of week", 0, 7)
_MINUTE_MS = 60_000
_SEARCH_LIMIT = timedelta(days=366 * 5)


@dataclass(frozen=True)
class Cron:
    """A parsed expression: the allowed values of each field."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    any_day: bool
    any_weekday: bool

    def matches(self, moment: datetime) -> bool:
        """Whether ``moment`` (UTC, whole minute) is a time this expression fires."""
        if moment.minute not in self.minutes or moment.hour not in self.hours:
            return False
        if moment.month not in self.months:
            return False
        day = moment.day in self.days
        weekday = (moment.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return day and weekday
        return day or weekday

    def fire_times(self, after_ms: int, until_ms: int) -> Iterator[int]:
        """Every firing time in (``after_ms``, ``until_ms``], oldest first, in milliseconds."""
        moment = _minute_after(after_ms)
        while _ms(moment) <= until_ms:
            if self.matches(moment):
                yield _ms(moment)
            moment += timedelta(minutes=1)

    def previous(self, at_ms: int) -> int | None:
        """The newest firing time at or before ``at_ms`` (within five years), or None."""
        moment = datetime.fromtimestamp(at_ms // _MINUTE_MS * 60, UTC)
        floor = moment - _SEARCH_LIMIT
        while moment > floor:
            if self.matches(moment):
                return _ms(moment)
            moment -= timedelta(minutes=1)
        return None


def parse(text: str) -> Cron:
    """Parse a five-field expression, or raise one sentence naming the field at fault."""
    parts = text.split() if isinstance(text, str) else []
    if len(parts) != 5:
        raise _error(text, "it needs five fields: minute hour day-of-month month day-of-week")
    specs = (*_FIELDS, _WEEKDAY)
    values = [_field(part, *spec, text) for part, spec in zip(parts, specs, strict=True)]
    return Cron(
        text=" ".join(parts),
        minutes=values[0],
        hours=values[1],
        days=values[2],
        months=values[3],
        weekdays=frozenset(day % 7 for day in values[4]),
        any_day=parts[2] == "*",
        any_weekday=parts[4] == "*",
    )


def _field(part: str, name: str, low: int, high: int, text: str) -> frozenset[int]:
    found: set[int] = set()
    for item in part.split(","):
        span, _, step_text = item.partition("/")
        step = _number(step_text, name, text) if step_text else 1
        if step < 1:
            raise _error(text, f"the {name} step must be at least 1")
        if span == "*":
            first, last = low, high
        elif "-" in span:
            start, _, end = span.partition("-")
            first, last = _number(start, name, text), _number(end, name, text)
        else:
            first = _number(span, name, text)
            last = high if step_text else first
        if not low <= first <= last <= high:
            raise _error(text, f"the {name} field {item!r} is outside {low}-{high}")
        found.update(range(first, last + 1, step))
    return frozenset(found)


def _number(text: str, name: str, expression: str) -> int:
    if not text.isdigit():
        raise _error(expression, f"the {name} field has {text!r}, not a number")
    return int(text)


def _error(text: object, problem: str) -> InvalidInputError:
    return InvalidInputError(
        f"cron expression {text!r} does not parse: {problem} (e.g. '0 * * * *' for hourly)."
    )


def _minute_after(at_ms: int) -> datetime:
    return datetime.fromtimestamp((at_ms // _MINUTE_MS + 1) * 60, UTC)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp()) * 1000
