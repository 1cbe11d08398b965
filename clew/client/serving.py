"""``clew serve``: a small HTTP inference endpoint around one loaded model version.

Predictions go through ``LoadedModel``, so each one gets an id and is captured and signed
exactly as in-process predictions are. The model is loaded (and its digest verified) in this
process before the app starts; the app never loads anything a request names.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field

from clew.client.loaded_model import LoadedModel

DEFAULT_HOST = "127.0.0.1"
MAX_ROWS = 100_000


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


def create_inference_app(model: LoadedModel) -> FastAPI:
    """A FastAPI app with ``POST /predict``, ``GET /health`` and ``GET /metrics`` (Prometheus
    text: the capture counters) for one model version."""
    app = FastAPI(title=f"clew inference: {model.version.ref}", version=model.version.digest)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": model.version.ref,
            "digest": model.version.digest,
            "capture": model._client.capture_stats(),
        }

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> str:
        return capture_metrics(model._client.capture_stats())

    @app.post("/predict", response_model=PredictResponse)
    def predict(request: PredictRequest) -> Any:
        if not request.inputs:
            return _refuse("inputs is empty; send at least one row.")
        if len(request.inputs) > MAX_ROWS:
            return _refuse(f"{len(request.inputs)} rows is more than {MAX_ROWS}; split the batch.")
        frame = _frame(request.inputs)
        try:
            if request.proba:
                outputs, ids = model.predict_proba_with_ids(frame)
            else:
                outputs, ids = model.predict_with_ids(frame)
        except Exception as error:  # the model refused the input: say why, as a 422
            return _refuse(f"the model could not predict on these inputs: {error}")
        return PredictResponse(
            model=model.version.ref,
            digest=model.version.digest,
            outputs=np.asarray(outputs).tolist(),
            prediction_ids=list(ids),
        )

    return app


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


def _frame(rows: list[list[Any]] | list[dict[str, Any]]) -> Any:
    if isinstance(rows[0], dict):
        return pd.DataFrame(rows)
    return np.asarray(rows)


def _refuse(message: str) -> JSONResponse:
    return JSONResponse(status_code=422, content={"code": "invalid_input", "detail": message})


def serve(model: LoadedModel, host: str = DEFAULT_HOST, port: int = 8000) -> None:
    """Run the endpoint until interrupted; queued predictions are written on the way out."""
    import uvicorn

    try:
        uvicorn.run(create_inference_app(model), host=host, port=port, log_level="info")
    finally:
        model._client.flush_captures()
