"""The monitor schedules' runner inside ``clew server``: a background thread while it serves.

Every ``CLEW_MONITOR_INTERVAL`` seconds (60 by default; 0 turns it off) the thread asks
``MonitorScheduleService.run_due`` to run the windows that are due. Several servers on one
store may all run the thread: the service's runner lock lets one of them work at a time, and
the runner's idempotency per window means none is run twice.
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
from clew.store.location import Store

INTERVAL_ENV = "CLEW_MONITOR_INTERVAL"
DEFAULT_INTERVAL_S = 60.0
_log = logging.getLogger(__name__)


class ScheduleRunner:
    """The thread that runs due windows until ``stop``."""

    def __init__(self, store: Store, interval_s: float) -> None:
        self.service = MonitorScheduleService(store)
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="clew-monitor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.service.run_due()
            except (ClewError, OSError) as error:
                _log.warning("the monitor schedules did not run: %s", error)
            self._stop.wait(self.interval_s)


def interval_s() -> float:
    """The configured interval; a value that is not a number falls back to the default."""
    text = os.environ.get(INTERVAL_ENV, "")
    try:
        return float(text) if text else DEFAULT_INTERVAL_S
    except ValueError:
        _log.warning("%s=%r is not a number of seconds; using %s", INTERVAL_ENV, text, 60)
        return DEFAULT_INTERVAL_S


def install(app: FastAPI, store: Store) -> None:
    """Run the schedules while ``app`` serves (wrapping whatever lifespan it already has)."""
    previous: Callable[[Any], Any] = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(served: Any) -> AsyncIterator[Any]:
        seconds = interval_s()
        runner = ScheduleRunner(store, seconds) if seconds > 0 else None
        if runner is not None:
            runner.start()
        try:
            async with previous(served) as state:
                yield state
        finally:
            if runner is not None:
                runner.stop()

    app.router.lifespan_context = lifespan
