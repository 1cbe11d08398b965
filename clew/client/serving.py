"""``clew serve``: a small HTTP inference endpoint around one loaded model version.

Predictions go through ``LoadedModel``, so each one gets an id and is captured and signed
exactly as in-process predictions are. The model is loaded (and its digest verified) in this
process before the app starts; the app never loads anything a request names.

Errors answer in ``clew server``'s shape (``{"code", "message", "request_id"}``, the request id
also in ``X-Request-ID``), so one client handles both. The model is probed once at start-up
with an input its signature describes: a model that loads but cannot predict (a bare file, an
unfitted estimator) makes ``/health`` answer 503 with the reason instead of reporting healthy
while every ``/predict`` fails.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clew.client.loaded_model import LoadedModel
from clew.client.shadowing import ShadowSender
from clew.domain import ids
from clew.errors import ClewError, InvalidInputError
from clew.integrations import flavors

DEFAULT_HOST = "127.0.0.1"
MAX_ROWS = 100_000
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")
_NUMERIC = re.compile(r"^(u?int\d*|float\d*|double|bool(ean)?|number|integer)$", re.IGNORECASE)
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


class PredictRequest(BaseModel):
    inputs: list[list[Any]] | list[dict[str, Any]] = Field(
        description="rows as lists of feature values, or as objects keyed by column name"
    )
    proba: bool = Field(False, description="return class probabilities (predict_proba)")


class PredictResponse(BaseModel):
    model: str
    digest: str
    outputs: list[Any]
    prediction_ids: list[str]
    request_id: str


class RefusedInput(InvalidInputError):
    """Inputs this model cannot take, answered 422 as ``clew serve`` always has."""

    http_status = 422


@dataclass(frozen=True)
class Health:
    """What the start-up probe found: ``problem`` is None when the model predicted."""

    probe: str
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def probe_inputs(model: LoadedModel) -> tuple[Any, str] | None:
    """One input row the version's signature vouches for, and where it came from.

    A signature's ``example`` is used as it is; then the input example the model was logged
    with (``log_model(..., input_example=...)`` records its first rows), which a model that
    cannot take zeros (a log, a lookup) accepts; otherwise a row of zeros when every input is
    numeric (or untyped, for a model fitted on arrays). None when the signature describes no
    input a probe could build without guessing (text or categorical columns).
    """
    signature = model.version.signature or {}
    example = signature.get("example")
    if isinstance(example, list) and example:
        return _frame(example[:1]), "the signature's example"
    if isinstance(example, dict) and example:
        return pd.DataFrame([example]), "the signature's example"
    recorded = _recorded_example(model)
    if recorded is not None:
        return recorded, "the logged input example"
    inputs = signature.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        return None
    types = [item.get("type") if isinstance(item, dict) else None for item in inputs]
    if not all(kind is None or _NUMERIC.match(str(kind)) for kind in types):
        return None
    names = [item.get("name") if isinstance(item, dict) else None for item in inputs]
    if all(isinstance(name, str) for name in names):
        return pd.DataFrame([[0.0] * len(names)], columns=names), "zeros shaped by the signature"
    return np.zeros((1, len(inputs))), "zeros shaped by the signature"


def _recorded_example(model: LoadedModel) -> Any:
    """The input example recorded with the version's model artifact, if any."""
    artifact = model._client._service.artifacts.resolve(f"artifact:{model.version.artifact_id}")
    flavor = artifact.properties.get("flavor")
    if not isinstance(flavor, dict):
        return None
    example = flavors.load_example(flavor.get("input_example"))
    return None if example is None or not len(example) else example


def probe(model: LoadedModel) -> Health:
    """Predict once, uncaptured, on ``probe_inputs``; the failure as one sentence if any."""
    found = probe_inputs(model)
    if found is None:
        return Health("none: the signature gives no input to try")
    inputs, source = found
    try:
        getattr(model.raw, "predict")(inputs)  # noqa: B009 - raw may be any object at all
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return Health(
            source,
            f"model {model.version.ref} cannot predict on {source} "
            f"({type(error).__name__}{': ' + reason if reason else ''}); "
            "check that the version holds a model its flavor can load.",
        )
    return Health(source)


class RequestIds:
    """Every request gets an id (the caller's ``X-Request-ID`` if sane), echoed back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        await self.app(scope, receive, send_with_id)


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text: str = value.decode("latin-1")
            if _CLIENT_REQUEST_ID.match(text):
                return text
    return ids.new_id()


def error(request: Request, status: int, code: str, message: str) -> JSONResponse:
    """``clew server``'s error body: a stable code, one sentence and the request id."""
    request_id = getattr(request.state, "request_id", None)
    return JSONResponse(
        {"code": code, "message": message, "request_id": request_id}, status_code=status
    )


def _install_errors(app: FastAPI) -> None:
    async def clew_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ClewError)
        return error(request, exc.http_status, exc.code, str(exc))

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = [_describe(problem) for problem in exc.errors()[:5]]
        return error(
            request, 422, "invalid_input", "the request is not valid: " + "; ".join(problems) + "."
        )

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        message = exc.detail if isinstance(exc.detail, str) else "the request was refused."
        if exc.status_code == 404:
            message = f"there is no route {request.url.path}; see /docs."
        if exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}."
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return error(request, exc.status_code, code, message)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        request_id = getattr(request.state, "request_id", "-")
        return error(
            request,
            500,
            "internal_error",
            f"clew serve failed on request {request_id}; its log has the details.",
        )

    app.add_exception_handler(ClewError, clew_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


def _describe(problem: Any) -> str:
    where = ".".join(str(part) for part in problem.get("loc", ()) if part != "body")
    return f"{where or 'body'}: {problem.get('msg', 'invalid')}"


def create_inference_app(
    model: LoadedModel, health: Health | None = None, shadow: ShadowSender | None = None
) -> FastAPI:
    """A FastAPI app with ``POST /predict``, ``GET /health`` and ``GET /metrics`` (Prometheus
    text: the capture counters) for one model version; ``health`` is the start-up probe's
    finding (probed here when not given); ``shadow`` gets a copy of each answered request."""
    found = probe(model) if health is None else health
    app = FastAPI(title=f"clew inference: {model.version.ref}", version=model.version.digest)
    app.add_middleware(RequestIds)
    _install_errors(app)

    @app.get("/health", response_model=None)
    def health_check(request: Request) -> Any:
        if not found.ok:
            assert found.problem is not None
            return error(request, 503, "unhealthy", found.problem)
        return {
            "status": "ok",
            "model": model.version.ref,
            "digest": model.version.digest,
            "probe": found.probe,
            "capture": model._client.capture_stats(),
            **({"shadow": shadow.stats()} if shadow is not None else {}),
        }

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> str:
        text = capture_metrics(model._client.capture_stats())
        return text + (shadow_metrics(shadow.stats()) if shadow is not None else "")

    @app.post("/predict", response_model=PredictResponse)
    def predict(body: PredictRequest, request: Request) -> Any:
        if not body.inputs:
            raise RefusedInput("inputs is empty; send at least one row.")
        if len(body.inputs) > MAX_ROWS:
            raise RefusedInput(f"{len(body.inputs)} rows is more than {MAX_ROWS}; split the batch.")
        frame = _frame(body.inputs)
        outputs, prediction_ids = _predict(model, frame, body.proba)
        if shadow is not None:
            shadow.offer(frame, body.proba, prediction_ids, request.state.request_id)
        return PredictResponse(
            model=model.version.ref,
            digest=model.version.digest,
            outputs=np.asarray(outputs).tolist(),
            prediction_ids=list(prediction_ids),
            request_id=request.state.request_id,
        )

    return app


def _predict(model: LoadedModel, frame: Any, proba: bool) -> tuple[Any, Any]:
    """The model's answer and ids; a refusal of these inputs as one sentence (422)."""
    try:
        if proba:
            return model.predict_proba_with_ids(frame)
        return model.predict_with_ids(frame)
    except InvalidInputError as refused:
        raise RefusedInput(str(refused)) from refused
    except ClewError:
        raise
    except Exception as failure:
        raise RefusedInput(f"the model could not predict on these inputs: {failure}") from failure


CAPTURE_TOTALS = ("submitted", "captured", "dropped", "failed")
CAPTURE_GAUGES = {  # metric: (capture_stats key, help)
    "clew_capture_queued_rows": (
        "queued",
        "Captured predictions not yet handed to the store, a server or the spool.",
    ),
    "clew_capture_pending_rows": (
        "pending",
        "Captured predictions waiting in the capture spool for the server to take them.",
    ),
    "clew_capture_pending_batches": (
        "pending_batches",
        "Capture batches waiting in the capture spool.",
    ),
}


def capture_metrics(stats: dict[str, Any]) -> str:
    """``capture_stats()`` as Prometheus text: row totals by outcome, and what still waits
    (alert on ``clew_capture_pending_rows`` to learn that a server is not taking captures)."""
    lines = [
        "# HELP clew_capture_rows_total Predictions this process captured, by outcome.",
        "# TYPE clew_capture_rows_total counter",
        *(f'clew_capture_rows_total{{outcome="{key}"}} {stats[key]}' for key in CAPTURE_TOTALS),
    ]
    for name, (key, help_text) in CAPTURE_GAUGES.items():
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {stats[key]}"]
    return "\n".join(lines) + "\n"


SHADOW_TOTALS = ("offered", "answered", "dropped", "failed", "recorded")


def shadow_metrics(stats: dict[str, Any]) -> str:
    """The shadow's counters as Prometheus text: requests by outcome (``dropped`` rises when
    the shadow falls behind; the champion never waits for it)."""
    lines = [
        "# HELP clew_shadow_requests_total Requests copied to the shadow version, by outcome.",
        "# TYPE clew_shadow_requests_total counter",
        *(f'clew_shadow_requests_total{{outcome="{key}"}} {stats[key]}' for key in SHADOW_TOTALS),
    ]
    return "\n".join(lines) + "\n"


def _frame(rows: list[list[Any]] | list[dict[str, Any]]) -> Any:
    if isinstance(rows[0], dict):
        return pd.DataFrame(rows)
    return np.asarray(rows)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything is announced; a taken port or an unknown
    interface is one sentence."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as failure:
        sock.close()
        raise InvalidInputError(
            f"cannot listen on {host}:{port} ({failure.strerror or failure}); "
            "choose another --port or --host."
        ) from failure
    sock.set_inheritable(True)
    return sock


def serve(
    model: LoadedModel,
    host: str = DEFAULT_HOST,
    port: int = 8000,
    *,
    endpoint: str | None = None,
    shadow: LoadedModel | None = None,
    announce: Callable[[Health], None] | None = None,
) -> None:
    """Run the endpoint until interrupted; queued predictions are written on the way out.

    The socket is bound and uvicorn is accepting connections before ``announce`` runs, so a
    caller who reads "serving ..." can send a request at once. The deployment (``endpoint``,
    by default the model's name) is recorded from start to stop, so ``clew status --at T``
    names the version that answered; a ``shadow`` version is recorded beside it and gets a
    copy of each request.
    """
    import uvicorn

    client = model._client
    health = probe(model)
    name = endpoint or model.version.name
    sock = bind(host, port)
    started = []
    try:
        started.append(client.start_deployment(model, name, address=f"{host}:{port}"))
        if shadow is not None:
            started.append(
                client.start_deployment(
                    shadow,
                    name,
                    role="shadow",
                    champion=started[0].deployment,
                    address=f"{host}:{port}",
                )
            )
    except BaseException:
        sock.close()
        for serving in reversed(started):
            client.stop_deployment(serving)
        raise
    sender = ShadowSender(shadow, started[1].deployment.id) if shadow is not None else None

    class Announcing(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if announce is not None and self.started:
                announce(health)

    app = create_inference_app(model, health, sender)
    server = Announcing(uvicorn.Config(app, log_level="warning", lifespan="off"))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        if sender is not None:
            sender.close()
        client.flush_captures()
        for serving in reversed(started):
            client.stop_deployment(serving)
