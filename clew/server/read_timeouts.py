"""Header and body read timeouts for ``clew server``'s HTTP connections.

uvicorn times out only an idle keep-alive connection: a client that opens connections and sends
its request headers a byte at a time (or never finishes them), or declares a body and stops
sending it, holds a connection and its buffers for ever, so a few hundred such clients exhaust
the server. This protocol closes a connection whose request headers take longer than the
header timeout in all (counted from the request's first byte, or from connecting), or whose
body makes no progress for the body timeout (reading paused by the server's own flow control
does not count). The client gets ``408 Request Timeout`` when no answer has started.
Values come from ``CLEW_HEADER_TIMEOUT`` and ``CLEW_BODY_TIMEOUT`` (seconds), which
``clew server --header-timeout/--body-timeout`` set for every worker.
"""

from __future__ import annotations

import asyncio
import os

from clew.errors import InvalidInputError
from clew.server.http_protocol import NoDelayH11Protocol

HEADER_TIMEOUT_ENV, BODY_TIMEOUT_ENV = "CLEW_HEADER_TIMEOUT", "CLEW_BODY_TIMEOUT"
DEFAULT_HEADER_TIMEOUT, DEFAULT_BODY_TIMEOUT = 15.0, 60.0
_MESSAGE = b"the request was not sent in time; send it again.\n"
TIMED_OUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_MESSAGE), _MESSAGE)
)


def timeout_from_environment(name: str, default: float) -> float:
    """A positive number of seconds from ``name``, or ``default`` when it is unset."""
    text = os.environ.get(name, "")
    if not text:
        return default
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < 86_400:
        raise InvalidInputError(
            f"{name}={text!r} is not a number of seconds between 0 and 86400; set it to e.g. "
            f"{default:g}."
        )
    return seconds


class TimedH11Protocol(NoDelayH11Protocol):
    header_timeout = DEFAULT_HEADER_TIMEOUT
    body_timeout = DEFAULT_BODY_TIMEOUT

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.header_timeout = timeout_from_environment(HEADER_TIMEOUT_ENV, DEFAULT_HEADER_TIMEOUT)
        self.body_timeout = timeout_from_environment(BODY_TIMEOUT_ENV, DEFAULT_BODY_TIMEOUT)
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._between_requests() and not self._pending_bytes():
            self._arm_header_timer()  # the first bytes of a new request: its clock starts
        before = self.cycle
        super().data_received(data)
        if self.cycle is not before and self._header_timer is not None:
            self._header_timer.cancel()  # this request's headers are in
            self._header_timer = None
        self._rearm_body_timer()

    def on_response_complete(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_timer()  # a pipelined next request may be waiting already

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _pending_bytes(self) -> bytes:
        """What the client sent that is not yet a whole request."""
        return bytes(self.conn.trailing_data[0])

    def _arm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        self._header_timer = self.loop.call_later(self.header_timeout, self._timed_out)

    def _rearm_body_timer(self) -> None:
        """Restart the body's idle clock while a request's body is still coming in."""
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        cycle = self.cycle
        if cycle is not None and cycle.more_body and not cycle.response_complete:
            self._body_timer = self.loop.call_later(self.body_timeout, self._body_stalled)

    def _body_stalled(self) -> None:
        self._body_timer = None
        if self.flow.read_paused:  # the server is not reading: the client is not to blame
            self._rearm_body_timer()
            return
        self._timed_out()

    def _timed_out(self) -> None:
        """Close the connection; a client that began a request is told why, an idle one not
        (it would read the answer as the reply to its next request)."""
        self._header_timer = None
        if self.transport.is_closing():
            return
        waiting = self._between_requests()
        if (waiting and self._pending_bytes()) or (not waiting and not self.cycle.response_started):
            self.transport.write(TIMED_OUT)
        self.transport.close()

    def _cancel_timers(self) -> None:
        for timer in (self._header_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._body_timer = None
