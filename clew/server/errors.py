"""Turning every failure into JSON with a stable ``code``, a one-sentence ``message`` and a status.

``ClewError`` subclasses already carry ``code`` and ``http_status`` (clew/errors.py), so the
mapping is one place and never drifts from the SDK's exceptions; the remote client turns the
``code`` back into the same exception class, so ``except clew.errors.NotFoundError`` works the
same against an embedded store and a server.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from clew.errors import ClewError
from clew.server.responses import JSONResponse

log = logging.getLogger("clew.server")

HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    411: "length_required",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "too_many_requests",
    503: "unavailable",
}


class HTTPError(ClewError):
    """A refusal decided by the HTTP layer itself (authentication, size limits)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.http_status = status
        self.code = code


def error_body(code: str, message: str, request: Request | None) -> dict[str, Any]:
    request_id = getattr(request.state, "request_id", None) if request is not None else None
    return {"code": code, "message": message, "request_id": request_id}


def error_response(request: Request | None, status: int, code: str, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(error_body(code, message, request), status_code=status, headers=headers)


async def _clew_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ClewError)
    status = error.http_status
    if status >= 500:
        log.error("request %s failed: %s", getattr(request.state, "request_id", "-"), error)
    response = error_response(request, status, error.code, str(error))
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:  # a limit the caller may try again after (fair_use.py)
        response.headers["Retry-After"] = str(retry_after)
    return response


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    problems = [_describe(problem) for problem in error.errors()[:5]]
    message = "the request is not valid: " + "; ".join(problems) + "."
    return error_response(request, 422, "invalid_input", message)


def _describe(problem: dict[str, Any]) -> str:
    where = ".".join(str(part) for part in problem.get("loc", ()) if part != "body")
    return f"{where or 'body'}: {problem.get('msg', 'invalid')}"


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    code = HTTP_CODES.get(error.status_code, "http_error")
    message = error.detail if isinstance(error.detail, str) else "the request was refused."
    if error.status_code == 404 and message == "Not Found":
        message = f"there is no API route {request.url.path}; see /api/v1/openapi.json."
    if error.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}."
    return error_response(request, error.status_code, code, message)


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    request_id = getattr(request.state, "request_id", "-")
    log.exception("request %s failed unexpectedly", request_id, exc_info=error)
    return error_response(
        request,
        500,
        "internal_error",
        f"the server failed on request {request_id}; the server log has the details.",
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(ClewError, _clew_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
