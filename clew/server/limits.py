"""Refusing oversized and over-deep request bodies before any parser or service sees them.

JSON bodies are capped in bytes here (declared ``Content-Length`` or, for chunked requests, as
they stream in); blob uploads stream to disk and are capped by the upload route instead.
Nesting depth is checked on the parsed values that services would store (``properties``,
params), because Python's JSON encoder recurses and a hostile 100,000-level document must be
a 4xx, not a crashed worker.
"""

from __future__ import annotations

import json
from typing import TypeVar

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clew.errors import InvalidInputError
from clew.server.errors import HTTP_CODES
from clew.server.responses import dumps

MAX_JSON_BYTES = 32 * 1024 * 1024
MAX_DEPTH = 32
MAX_METRIC_POINTS = 200_000
BLOB_PREFIX = "/api/v1/blobs/"

T = TypeVar("T")


class BodyTooLarge(HTTPException):
    """Raised inside ``receive`` when a streamed body passes the limit (an HTTPException, so
    FastAPI's body parser lets it through as a 413 instead of a generic 400)."""

    def __init__(self, message: str) -> None:
        super().__init__(413, message)


class BodyLimit:
    def __init__(self, app: ASGIApp, max_json_bytes: int = MAX_JSON_BYTES) -> None:
        self.app = app
        self.max_bytes = max_json_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(BLOB_PREFIX):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _refuse(scope, send, 413, self._message())
            return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self._message())
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _refuse(scope, send, 413, self._message())

    def _message(self) -> str:
        return (
            f"the request body is larger than {self.max_bytes} bytes; send metrics in smaller "
            "batches and upload files as blobs (PUT /api/v1/blobs/<digest>)."
        )


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(scope: Scope, send: Send, status: int, message: str) -> None:
    request_id = scope.get("state", {}).get("request_id")
    body = dumps({"code": HTTP_CODES[status], "message": message, "request_id": request_id})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def check_depth(value: T, what: str, limit: int = MAX_DEPTH) -> T:
    """Refuse JSON values nested deeper than ``limit`` (iteratively: no recursion to exhaust)."""
    stack = [(value, 1)]
    while stack:
        current, depth = stack.pop()
        if depth > limit:
            raise _too_deep(what, limit)
        if isinstance(current, dict):
            stack.extend((item, depth + 1) for item in current.values())
        elif isinstance(current, list):
            stack.extend((item, depth + 1) for item in current)
    return value


def check_text_depth(text: bytes, value: T, what: str, limit: int = MAX_DEPTH) -> T:
    """``check_depth(value, ...)`` read off ``text``, the UTF-8 JSON ``value`` was parsed from,
    with a handful of passes of C string operations instead of a Python step per value (a
    batch of 1,000 OpenLineage events holds some 100,000 values).

    Strings (escapes first) become ``[]``, as does every character of any other scalar, and
    ``{}`` become ``[]``: each value is then a bracket group exactly as deep as the value.
    Each pass deletes every ``[]`` present when it starts (``bytes.replace`` does not rescan
    what it joined), one level, so the text empties in as many passes as the value is deep.
    """
    if json.detect_encoding(text) != "utf-8":
        return check_depth(value, what, limit)
    if b"\\" in text:
        text = text.replace(b"\\\\", b"").replace(b'\\"', b"")
    skeleton = b"[]".join(text.split(b'"')[0::2])
    skeleton = skeleton.translate(_BRACKETS, b" \t\n\r,:").replace(b"x", b"[]")
    for _ in range(limit):
        if not skeleton:
            return value
        skeleton = skeleton.replace(b"[]", b"")
    if skeleton:
        raise _too_deep(what, limit)
    return value


# Opening brackets to ``[``, closing to ``]``, every other byte (a scalar's) to ``x``.
_BRACKETS = bytes(
    ord("[") if byte in b"[{" else ord("]") if byte in b"]}" else ord("x") for byte in range(256)
)


def _too_deep(what: str, limit: int) -> InvalidInputError:
    return InvalidInputError(
        f"{what} is nested deeper than {limit} levels; flatten it or store it as an artifact."
    )
