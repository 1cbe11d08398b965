"""The HTTP inference endpoint, run by a real uvicorn on a free port."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from capture_support import iris, register_iris
from conftest import free_port

import clew
from clew.client.serving import create_inference_app


@pytest.fixture
def endpoint(client: clew.Client) -> Iterator[str]:
    model = register_iris(client)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_inference_app(model), host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_predictions_over_http_carry_ids_that_trace(client: clew.Client, endpoint: str) -> None:
    features, _ = iris()
    health = httpx.get(f"{endpoint}/health").json()
    assert health["status"] == "ok" and health["model"] == "iris/1"
    response = httpx.post(f"{endpoint}/predict", json={"inputs": features[:5].tolist()})
    assert response.status_code == 200
    body = response.json()
    assert len(body["outputs"]) == len(body["prediction_ids"]) == 5
    assert body["digest"].startswith("sha256:")
    trace = client.trace(body["prediction_ids"][2])
    assert trace.step("prediction").verified
    assert trace.step("prediction").details["output"] == body["outputs"][2]


def test_probabilities_and_bad_input_over_http(endpoint: str) -> None:
    features, _ = iris()
    proba = httpx.post(f"{endpoint}/predict", json={"inputs": features[:2].tolist(), "proba": True})
    assert proba.status_code == 200 and len(proba.json()["outputs"][0]) == 3
    empty = httpx.post(f"{endpoint}/predict", json={"inputs": []})
    assert empty.status_code == 422 and "at least one row" in empty.json()["message"]
    wrong = httpx.post(f"{endpoint}/predict", json={"inputs": [[1.0, 2.0]]})
    assert wrong.status_code == 422 and wrong.json()["code"] == "invalid_input"
    malformed = httpx.post(f"{endpoint}/predict", json={"rows": 1})
    assert malformed.status_code == 422
