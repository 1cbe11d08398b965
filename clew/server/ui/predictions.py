"""A captured prediction's trace: each step with its verdict, and the thread as a graph.

The steps and their verdicts are ``trace_prediction``'s; the graph is the lineage upstream
of the model that made the prediction, with the prediction itself added in front and every
node that a trace step checked marked with its outcome (verified, not checkable, failed).
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.responses import JSONResponse, Response

from clew.domain.trace import VERIFIED, Trace
from clew.server.ui.lineage import graph_payload
from clew.server.ui.pages import Page
from clew.service.trace import trace_prediction

TRACE_DEPTH = 10


def add_routes(router: APIRouter, page: Any, action: Any) -> None:
    @router.get("/predictions/{prediction_id}", name="ui.prediction")
    def prediction(prediction_id: str, current: Annotated[Page, Depends(page)]) -> Response:
        found = trace_prediction(current.store, prediction_id.removeprefix("prediction:"))
        return current.render("prediction.html", trace=found)

    @router.get("/predictions/{prediction_id}/graph.json", name="ui.prediction_graph")
    def graph(prediction_id: str, current: Annotated[Page, Depends(page)]) -> Response:
        found = trace_prediction(current.store, prediction_id.removeprefix("prediction:"))
        return JSONResponse(trace_graph(current, found))


def trace_graph(current: Page, found: Trace) -> dict[str, Any]:
    """The model's upstream lineage, the prediction in front, nodes marked by verdict."""
    model = found.step("model_version")
    artifact_id = model.details["artifact_id"]
    payload = graph_payload(current, f"artifact:{artifact_id}", TRACE_DEPTH, "upstream")
    verdicts = _verdicts(found)
    for node in payload["nodes"]:
        key = node["id"] if node["id"] in verdicts else node["ref"]
        if key in verdicts:
            node["outcome"] = verdicts[key]
            node["verified"] = verdicts[key] == VERIFIED
    step = found.step("prediction")
    prediction_id = f"prediction:{found.prediction_id}"
    payload["nodes"].append(
        {
            "id": prediction_id,
            "kind": "prediction",
            "type": "prediction",
            "name": found.prediction_id,
            "ref": prediction_id,
            "digest": step.details.get("merkle_root"),
            "href": current.url("ui.prediction", prediction_id=found.prediction_id),
            "expand_ref": None,
            "outcome": step.outcome,
            "verified": step.verified,
        }
    )
    payload["edges"].append({"source": artifact_id, "target": prediction_id, "association": "Made"})
    payload["start"] = prediction_id
    return payload


def _verdicts(found: Trace) -> dict[str, str]:
    """Node id or ref -> the outcome of the trace step about it."""
    verdicts = {
        found.step("model_version").details["artifact_id"]: found.step("model_version").outcome
    }
    for step in found.steps_of("training_run"):
        if "id" in step.details:
            verdicts[step.details["id"]] = step.outcome
    for step in found.steps_of("input_data") + found.steps_of("data_source"):
        verdicts[step.details["ref"]] = step.outcome
    return verdicts
