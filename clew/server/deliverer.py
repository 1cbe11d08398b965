"""The webhook deliverer inside ``clew server``: a background thread sending what is due.

Every replica (and every uvicorn worker) may run one: deliveries are leased in the store before
they are sent (clew.service.webhooks), so each is sent by exactly one deliverer and a replica
that dies mid-send leaves its lease to expire for another. A failed pass (the database briefly
unreachable) is logged and retried at the next tick; it never stops the server.
"""

from __future__ import annotations

import logging
import threading

from clew.service.webhooks import WebhookService

logger = logging.getLogger("clew.webhooks")
INTERVAL_ENV = "CLEW_WEBHOOK_INTERVAL_SECONDS"
DEFAULT_INTERVAL_S = 5.0


class BackgroundDeliverer:
    """Runs ``service.deliver()`` every ``interval_s`` seconds until ``stop``."""

    def __init__(self, service: WebhookService, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        self._service = service
        self._interval_s = interval_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clew-webhooks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                report = self._service.deliver()
            except Exception:  # the next tick retries; the server keeps serving
                logger.exception("clew: a webhook delivery pass failed; retrying shortly")
            else:
                if report.delivered or report.retrying or report.gave_up:
                    logger.info("clew: webhooks %s", report.to_dict())
            self._stopping.wait(self._interval_s)
