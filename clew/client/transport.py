"""``Transport``: one connection pool to a ``clew server``, with auth, safe retries and the
server's errors raised as clew's own exception classes.

Retries: connection failures, 502/503/504 and "request in progress" are retried with backoff.
Every POST carries an ``Idempotency-Key`` that stays the same across the retries of one call,
so a retried request never creates a second run, metric batch or version.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from clew import errors
from clew.domain.records import R, from_fields
from clew.errors import ClewError

API = "/api/v1"


RETRY_STATUSES = {502, 503, 504}


ATTEMPTS = 6


DIRECT_CONNECT_SECONDS = 5.0


logger = logging.getLogger(__name__)


def _error_classes() -> dict[str, type[ClewError]]:
    found: dict[str, type[ClewError]] = {}
    pending: list[type[ClewError]] = [ClewError]
    while pending:
        cls = pending.pop()
        found.setdefault(cls.code, cls)
        pending.extend(cls.__subclasses__())
    return found


class Transport:
    """One HTTP connection pool to a server, with auth, retries and error mapping."""

    def __init__(self, base_url: str, token: str | None, timeout: float = 60.0) -> None:
        headers = {"User-Agent": "clew-python"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)
        # For presigned object-store URLs the server redirects blob downloads to: no token,
        # and a short connect timeout, since the server's relay is there if they can't be had.
        self.direct = httpx.Client(
            headers={"User-Agent": "clew-python"},
            timeout=httpx.Timeout(timeout, connect=DIRECT_CONNECT_SECONDS),
        )
        self.relay_only = False
        self._errors = _error_classes()

    def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Send one request (retrying safely) and return the decoded JSON (None for 204)."""
        extra = dict(headers or {})
        if method == "POST":
            extra.setdefault("Idempotency-Key", uuid.uuid4().hex)
        content = None if json_body is None else encode_json(json_body)
        if content is not None:
            extra["Content-Type"] = "application/json"
        return self.decode(self.send(method, path, lambda: content, params, extra))

    def send(
        self,
        method: str,
        path: str,
        body: Callable[[], Any] = lambda: None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """The raw response to ``method API+path`` after safe retries; ``body`` makes the
        content afresh for each attempt (a file's chunks can be read only once)."""
        return self._with_retries(
            lambda: self.http.request(
                method, API + path, content=body(), params=params, headers=headers
            )
        )

    def record(self, cls: type[R], method: str, path: str, **options: Any) -> R:
        """One request answered by a record in its wire form (``call``'s options)."""
        return from_fields(cls, self.call(method, path, **options))

    def records(self, cls: type[R], method: str, path: str, **options: Any) -> list[R]:
        return [from_fields(cls, row) for row in self.call(method, path, **options)]

    def _with_retries(self, send: Callable[[], httpx.Response]) -> httpx.Response:
        for attempt in range(ATTEMPTS):
            last = attempt == ATTEMPTS - 1
            try:
                response = send()
            except httpx.TransportError as error:
                if last:
                    raise errors.ServerUnavailableError(
                        f"the clew server at {self.base_url} did not answer ({error}); check that "
                        "it is running and reachable at that address, then retry."
                    ) from error
            else:
                if not _retryable(response) or last:
                    return response
            pause_before_retry(attempt)
        raise AssertionError("unreachable")

    def decode(self, response: httpx.Response) -> Any:
        if response.status_code < 400:
            if response.status_code == 204 or not response.content:
                return None
            return json.loads(response.content)
        raise self.error(response)

    def error(self, response: httpx.Response) -> ClewError:
        try:
            body = json.loads(response.content)
            code, message = body["code"], body["message"]
        except (ValueError, KeyError, TypeError):
            code = "http_error"
            message = f"the server answered HTTP {response.status_code}: {response.text[:200]}"
        cls = self._errors.get(code)
        error = cls(message) if cls else ClewError(message)
        error.code = code
        error.http_status = response.status_code
        if response.headers.get("retry-after", "").isdigit():
            error.retry_after_s = int(response.headers["retry-after"])  # type: ignore[attr-defined]
        return error

    def stop_direct(self, url: str, error: Exception) -> None:
        """Download through the server from now on: the object store its redirects point at
        is out of reach from here (a firewall, a private endpoint, an expired URL)."""
        if not self.relay_only:
            logger.warning(
                "clew: could not download from the object store at %s (%s); downloading "
                "through the clew server instead from now on.",
                httpx.URL(url).host,
                error,
            )
        self.relay_only = True

    def blob_path(self, digest: str) -> str:
        """A blob's download path, asking the server to relay it once redirects failed."""
        return f"/blobs/{digest}" + ("?relay=true" if self.relay_only else "")

    def close(self) -> None:
        self.http.close()
        self.direct.close()


def pause_before_retry(attempt: int) -> None:
    """Exponential backoff shared by every retried request: 0.1 s doubling, at most 3 s."""
    time.sleep(min(0.1 * 2**attempt, 3.0))


def _retryable(response: httpx.Response) -> bool:
    if response.status_code in RETRY_STATUSES:
        return True
    return response.status_code == 409 and b'"request_in_progress"' in response.content[:200]


def encode_json(value: Any) -> bytes:
    return json.dumps(value, default=str, allow_nan=True, separators=(",", ":")).encode()


def plain_json(value: Any) -> Any:
    """What the embedded store would have stored: JSON-able, unknown objects as strings."""
    return json.loads(encode_json(value))


def path_segment(text: str) -> str:
    return quote(text, safe="")
