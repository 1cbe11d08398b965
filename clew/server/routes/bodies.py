"""Request bodies shared by the routes (strict types, bounded sizes, no extra fields), and
``PlainRoute``, the route class that sends the routes' answers as they are.

Strict mode means ``"1.5"`` is not a number and ``1`` is not a string: a wrong type is a 422
naming the field, never a silent coercion. Integers that reach the database are bounded to
64 bits so an absurd step or seed is a 422 rather than a driver overflow.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Annotated, Any

from fastapi.routing import APIRoute
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from starlette.responses import Response

from clew.server import idempotency
from clew.server.limits import check_depth
from clew.server.responses import JSONResponse

Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
Text = Annotated[str, Field(max_length=10_000)]
NAME_LENGTH = 250
Name = Annotated[str, Field(min_length=1, max_length=NAME_LENGTH)]
Id = Annotated[str, Field(min_length=1, max_length=64)]


def _bounded_json(value: dict[str, Any]) -> dict[str, Any]:
    checked: dict[str, Any] = check_depth(value, "the JSON value")
    return checked


JsonObject = Annotated[dict[str, Any], AfterValidator(_bounded_json)]


class Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class PlainRoute(APIRoute):
    """Routes return plain JSON-able values, sent as they are by ``responses.JSONResponse``.

    No response model is inferred and nothing is re-validated on the way out, which keeps the
    hot paths fast and NaN metrics NaN (FastAPI's own encoder would turn them into null).
    """

    def __init__(self, path: str, endpoint: Any, **options: Any) -> None:
        options["response_model"] = None
        status = options.get("status_code") or 200
        super().__init__(path, _responding(endpoint, status), **options)


def _responding(endpoint: Callable[..., Any], status: int) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(endpoint):

        @functools.wraps(endpoint)
        async def asynchronous(*args: Any, **kwargs: Any) -> Response:
            if idempotency.current.get() is not None:
                raise RuntimeError("POST routes must be synchronous to honour Idempotency-Key.")
            return _response(await endpoint(*args, **kwargs), status)

        return asynchronous

    @functools.wraps(endpoint)
    def synchronous(*args: Any, **kwargs: Any) -> Response:
        return idempotency.run_once(lambda: _response(endpoint(*args, **kwargs), status))

    return synchronous


def _response(value: Any, status: int) -> Response:
    if isinstance(value, Response):
        return value
    if value is None and status == 204:
        return Response(status_code=204)
    return JSONResponse(value, status_code=status)
