"""``clew serve`` as a real process: ready when it says so, errors in the server's shape, and
unhealthy (503, one sentence) when its model cannot predict."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from conftest import free_port
from serving_support import clew_command, clew_serve, iris_frame, register

import clew
from clew.client import serving
from clew.integrations import flavors

ERROR_KEYS = {"code", "message", "request_id"}


def test_answers_as_soon_as_it_says_it_is_serving(client: clew.Client) -> None:
    ref = register(client)
    with clew_serve(ref, port=free_port()) as served:
        health = httpx.get(f"{served.url}/health", timeout=10)  # no retry: it said it serves
        assert health.status_code == 200, health.text
        assert health.json()["status"] == "ok" and health.json()["model"] == "iris/1"
        assert health.json()["probe"] == "zeros shaped by the signature"
        features, _ = iris_frame()
        rows = features.head(2).to_dict(orient="records")
        answer = httpx.post(f"{served.url}/predict", json={"inputs": rows}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["prediction_ids"]) == 2
        assert answer.json()["request_id"] == answer.headers["x-request-id"]


def test_errors_have_the_server_shape(client: clew.Client) -> None:
    ref = register(client)
    with clew_serve(ref, port=free_port()) as served:
        malformed = httpx.post(
            f"{served.url}/predict", json={"rows": 1}, headers={"X-Request-ID": "req-7"}
        )
        assert malformed.status_code == 422
        assert set(malformed.json()) == ERROR_KEYS
        assert malformed.json()["code"] == "invalid_input"
        assert malformed.json()["request_id"] == "req-7" == malformed.headers["x-request-id"]
        assert "inputs" in malformed.json()["message"]
        empty = httpx.post(f"{served.url}/predict", json={"inputs": []})
        assert empty.status_code == 422 and set(empty.json()) == ERROR_KEYS
        assert empty.json()["message"] == "inputs is empty; send at least one row."
        wrong = httpx.post(f"{served.url}/predict", json={"inputs": [[1.0, 2.0]]})
        assert wrong.status_code == 422 and wrong.json()["code"] == "invalid_input"
        assert "\n" not in wrong.json()["message"] and "Traceback" not in wrong.text
        missing = httpx.get(f"{served.url}/nope")
        assert missing.status_code == 404 and missing.json()["code"] == "not_found"
        assert set(missing.json()) == ERROR_KEYS
        verb = httpx.delete(f"{served.url}/predict")
        assert verb.status_code == 405 and verb.json()["code"] == "method_not_allowed"


def test_a_model_that_cannot_predict_is_unhealthy(client: clew.Client, tmp_path: Path) -> None:
    """A version whose bytes load but do not predict (a bare file) must not report healthy."""
    weights = tmp_path / "model.bin"
    weights.write_bytes(b"not a model any flavor reads")
    with client.start_run("broken", "train") as run:
        artifact = run.log_model(weights, name="broken-model")
    signature = {"inputs": [{"name": "a", "type": "double"}, {"name": "b", "type": "double"}]}
    ref = client.register_model(artifact, "broken", signature=signature).ref
    with clew_serve(ref, port=free_port()) as served:
        health = httpx.get(f"{served.url}/health", timeout=10)
        assert health.status_code == 503
        body = health.json()
        assert set(body) == ERROR_KEYS and body["code"] == "unhealthy"
        assert body["message"].startswith("model broken/1 cannot predict")
        assert "\n" not in body["message"]
    assert "unhealthy: model broken/1 cannot predict" in served.output()


def test_a_taken_port_is_one_sentence(client: clew.Client) -> None:
    ref = register(client)
    port = free_port()
    with clew_serve(ref, port=port) as served:
        second = subprocess.run(
            clew_command("serve", ref, "--port", str(port)),
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert second.returncode == 1
        assert second.stderr.strip() == (
            f"error: cannot listen on 127.0.0.1:{port} (Address already in use); "
            "choose another --port or --host."
        )
        assert httpx.get(f"{served.url}/health").status_code == 200


SCORER = '''import numpy as np


class LogScorer:
    """Takes the log of every input: a row of zeros is refused, as a real model might."""

    def predict(self, inputs):
        values = np.asarray(inputs, dtype=float)
        if (values <= 0).any():
            raise ValueError("every input must be positive")
        return np.log(values).sum(axis=1)
'''


def test_the_probe_uses_the_logged_input_example(
    client: clew.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model that cannot take zeros is healthy when it was logged with an example it can."""
    (tmp_path / "log_scorer.py").write_text(SCORER)
    monkeypatch.syspath_prepend(str(tmp_path))
    from log_scorer import LogScorer  # type: ignore[import-not-found]

    example = pd.DataFrame({"a": [1.5, 2.0, 3.0], "b": [4.0, 5.0, 6.0]})
    with client.start_run("log", "train") as run:
        with_example = run.log_model(LogScorer(), name="log-model", input_example=example)
        without = run.log_model(LogScorer(), name="log-bare")
    healthy = serving.probe(client.load_model(client.register_model(with_example, "log").ref))
    assert healthy.ok and healthy.probe == "the logged input example"

    signature = {"inputs": [{"name": "a", "type": "double"}, {"name": "b", "type": "double"}]}
    bare = client.register_model(without, "log-bare", signature=signature).ref
    zeros = serving.probe(client.load_model(bare))
    assert zeros.probe == "zeros shaped by the signature"
    assert zeros.problem is not None and "every input must be positive" in zeros.problem


def test_an_example_is_recorded_small_and_as_it_was() -> None:
    frame = pd.DataFrame({"n": np.arange(50, dtype=np.int32), "x": np.linspace(0, 1, 50)})
    recorded = flavors.example_rows(frame)
    assert recorded is not None and len(recorded["rows"]) == flavors.EXAMPLE_ROWS
    restored = flavors.load_example(recorded)
    assert restored.dtypes.tolist() == frame.dtypes.tolist()
    assert restored.equals(frame.head(flavors.EXAMPLE_ROWS))
    array = np.arange(20, dtype=np.float32).reshape(10, 2)
    back = flavors.load_example(flavors.example_rows(array))
    assert back.dtype == np.float32 and np.array_equal(back, array[:5])
    assert flavors.example_rows(np.array([["a", "b"]])) is None  # text: zeros never fit it
    assert flavors.example_rows(np.zeros((5, 2000))) is None  # too large to keep
    assert flavors.load_example({"rows": "not rows"}) is None
