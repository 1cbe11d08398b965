"""Request ids, one structured log line per request, and Prometheus-style counters.

Implemented as a plain ASGI middleware (no per-request task or body copy), so it costs a few
microseconds on the hot paths that the benchmarks measure.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import defaultdict
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clew.domain import ids
from clew.service.audit import request_id_scope

access_log = logging.getLogger("clew.server.access")
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
API_HEADERS = [
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"cache-control", b"no-store"),
]


class Metrics:
    """Request counts and latency sums per (method, route, status); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count: dict[tuple[str, str, int], int] = defaultdict(int)
        self._seconds: dict[tuple[str, str], float] = defaultdict(float)
        self._observed: dict[tuple[str, str], int] = defaultdict(int)
        self.started = time.time()

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self._count[(method, route, status)] += 1
            self._seconds[(method, route)] += seconds
            self._observed[(method, route)] += 1

    def render(self) -> str:
        lines = [
            "# HELP clew_http_requests_total HTTP requests answered, by route and status.",
            "# TYPE clew_http_requests_total counter",
        ]
        with self._lock:
            for (method, route, status), count in sorted(self._count.items()):
                labels = f'method="{method}",route="{_label(route)}",status="{status}"'
                lines.append(f"clew_http_requests_total{{{labels}}} {count}")
            lines += [
                "# HELP clew_http_request_seconds Time spent answering requests.",
                "# TYPE clew_http_request_seconds summary",
            ]
            for (method, route), seconds in sorted(self._seconds.items()):
                labels = f'method="{method}",route="{_label(route)}"'
                lines.append(f"clew_http_request_seconds_sum{{{labels}}} {seconds:.6f}")
                observed = self._observed[(method, route)]
                lines.append(f"clew_http_request_seconds_count{{{labels}}} {observed}")
        lines += [
            "# HELP clew_process_start_time_seconds When this server process started.",
            "# TYPE clew_process_start_time_seconds gauge",
            f"clew_process_start_time_seconds {self.started:.3f}",
        ]
        return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class RequestContext:
    """Give each request an id (the client's ``X-Request-ID`` if sane), time it, log it.

    The id is also the ``request_id`` of every audit entry the request writes.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        extra = SECURITY_HEADERS + (API_HEADERS if not scope["path"].startswith("/ui") else [])
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                headers.extend(extra)
                message["headers"] = headers
            await send(message)

        try:
            with request_id_scope(request_id):
                await self.app(scope, receive, send_with_headers)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.observe(scope["method"], route, status, elapsed)
            _log(scope, request_id, route, status, elapsed)


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text: str = value.decode("latin-1")
            if _CLIENT_REQUEST_ID.match(text):
                return text
    return ids.new_id()


def _log(scope: Scope, request_id: str, route: str, status: int, elapsed: float) -> None:
    if not access_log.isEnabledFor(logging.INFO):
        return
    principal = scope.get("state", {}).get("principal")
    record: dict[str, Any] = {
        "request_id": request_id,
        "method": scope["method"],
        "route": route,
        "status": status,
        "ms": round(elapsed * 1000, 2),
        "user": getattr(principal, "name", None),
        "client": (scope.get("client") or ("-",))[0],
    }
    digest = scope.get("path_params", {}).get("digest")
    if digest:
        record["digest"] = digest  # which blob, so a download joins its audit entry
    access_log.info(json.dumps(record))
