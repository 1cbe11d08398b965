"""The server's own schedules inside ``clew server``: background threads while it serves.

Every ``CLEW_MONITOR_INTERVAL`` seconds (60 by default; 0 turns it off) a thread asks
``MonitorScheduleService.run_due`` to run the windows that are due. Several servers on one
store may all run the thread: the service's runner lock lets one of them work at a time, and
the runner's idempotency per window means none is run twice.

Every ``CLEW_REVIEW_INTERVAL`` seconds (300 by default; 0 turns it off) a second thread asks
``ReviewService.raise_overdue`` to raise a ``review_overdue`` event for each overdue model
review, which the webhook deliverer then sends. The service looks for the events already raised
in the store, under the write lock, so a restart or a second server never raises one twice.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI

from clew.errors import ClewError
from clew.service.monitor_schedules import MonitorScheduleService
from clew.service.reviews import ReviewService

INTERVAL_ENV = "CLEW_MONITOR_INTERVAL"
DEFAULT_INTERVAL_S = 60.0
REVIEW_INTERVAL_ENV = "CLEW_REVIEW_INTERVAL"
DEFAULT_REVIEW_INTERVAL_S = 300.0
# The actor of the review_overdue events the server raises on its own.
REVIEW_ACTOR = "clew-server"
_log = logging.getLogger(__name__)


class Ticker:
    """A daemon thread calling ``tick`` every ``interval_s`` seconds until ``stop``; a failed
    tick (the database briefly unreachable) is logged and tried again at the next one."""

    def __init__(self, name: str, interval_s: float, tick: Callable[[], object]) -> None:
        self.name = name
        self.interval_s = interval_s
        self._tick = tick
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except (ClewError, OSError) as error:
                _log.warning("%s did not run: %s", self.name, error)
            self._stop.wait(self.interval_s)


def _raise_overdue_reviews(service: ReviewService) -> None:
    """Raise each overdue review as a ``review_overdue`` event, and log it."""
    for event in service.raise_overdue(REVIEW_ACTOR):
        _log.info("clew: %s", event.comment)


def interval_s(name: str = INTERVAL_ENV, default: float = DEFAULT_INTERVAL_S) -> float:
    """The interval configured in ``name``; a value that is not a number falls back to the
    default."""
    text = os.environ.get(name, "")
    try:
        return float(text) if text else default
    except ValueError:
        _log.warning("%s=%r is not a number of seconds; using %s", name, text, default)
        return default


def install(app: FastAPI, service: MonitorScheduleService) -> None:
    """Run the monitor schedules while ``app`` serves."""
    _while_serving(app, lambda: Ticker("clew-monitor", interval_s(), service.run_due))


def install_review_checks(app: FastAPI, service: ReviewService) -> None:
    """Raise overdue reviews while ``app`` serves."""
    seconds = (REVIEW_INTERVAL_ENV, DEFAULT_REVIEW_INTERVAL_S)
    _while_serving(
        app,
        lambda: Ticker(
            "clew-reviews", interval_s(*seconds), lambda: _raise_overdue_reviews(service)
        ),
    )


def _while_serving(app: FastAPI, make: Callable[[], Ticker]) -> None:
    """Start ``make()``'s thread with ``app`` and stop it after (wrapping whatever lifespan
    the app already has); an interval of 0 or less starts nothing."""
    previous: Callable[[Any], Any] = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(served: Any) -> AsyncIterator[Any]:
        ticker = make()
        running = ticker.interval_s > 0
        if running:
            ticker.start()
        try:
            async with previous(served) as state:
                yield state
        finally:
            if running:
                ticker.stop()

    app.router.lifespan_context = lifespan
