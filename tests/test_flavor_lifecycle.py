"""Every flavor's whole life: a small model trained here is logged, registered, approved,
promoted, loaded by alias, predicts, is served over HTTP, and its predictions are captured
and traced back to the version, whose record names the framework and its version."""

from __future__ import annotations

import importlib.util
import inspect
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import uvicorn
from conftest import free_port

import clew
from clew.client.loaded_model import LoadedModel
from clew.client.serving import create_inference_app
from clew.integrations import flavors

AsUser = Callable[..., clew.Client]


def training_data() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(7)
    features = pd.DataFrame(rng.normal(size=(300, 4)), columns=["age", "income", "tenure", "calls"])
    target = ((features["age"] + features["calls"]) > 0).astype(np.int64).to_numpy()
    return features, target


def xgboost_classifier(tmp_path: Path) -> tuple[Any, Any, str]:
    xgboost = pytest.importorskip("xgboost")
    features, target = training_data()
    model = xgboost.XGBClassifier(n_estimators=8, max_depth=2).fit(features, target)
    return model, None, "xgboost"


def xgboost_booster(tmp_path: Path) -> tuple[Any, Any, str]:
    xgboost = pytest.importorskip("xgboost")
    features, target = training_data()
    booster = xgboost.train({"max_depth": 2}, xgboost.DMatrix(features, target), 8)
    return booster, None, "xgboost"


def lightgbm_classifier(tmp_path: Path) -> tuple[Any, Any, str]:
    lightgbm = pytest.importorskip("lightgbm")
    features, target = training_data()
    model = lightgbm.LGBMClassifier(n_estimators=8, num_leaves=4, verbose=-1)
    return model.fit(features, target), None, "lightgbm"


def lightgbm_booster(tmp_path: Path) -> tuple[Any, Any, str]:
    lightgbm = pytest.importorskip("lightgbm")
    features, target = training_data()
    data = lightgbm.Dataset(features, target)
    booster = lightgbm.train({"num_leaves": 4, "verbose": -1}, data, num_boost_round=8)
    return booster, None, "lightgbm"


def onnx_file(tmp_path: Path) -> tuple[Any, Any, str]:
    pytest.importorskip("onnxruntime")
    skl2onnx = pytest.importorskip("skl2onnx")
    from sklearn.linear_model import LogisticRegression

    features, target = training_data()
    arrays = features.to_numpy(dtype=np.float32)
    fitted = LogisticRegression().fit(arrays, target)
    proto = skl2onnx.to_onnx(fitted, arrays[:1], options={"zipmap": False})
    path = tmp_path / "churn.onnx"
    path.write_bytes(proto.SerializeToString())
    return path, None, "onnx"


def torch_module(tmp_path: Path) -> tuple[Any, Any, str]:
    torch = pytest.importorskip("torch")
    features, target = training_data()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    inputs = torch.as_tensor(np.array(features, dtype=np.float32))
    optimiser = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(30):
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(inputs), torch.as_tensor(target))
        loss.backward()
        optimiser.step()
    return net, features.to_numpy(dtype=np.float32)[:5], "torch"


def user_module(tmp_path: Path, name: str, code: str) -> Any:
    """A module of the user's own, imported from its file (the test edits it after logging)."""
    source = tmp_path / f"{name}.py"
    source.write_text("import numpy as np\n\n\n" + code)
    spec = importlib.util.spec_from_file_location(name, source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def python_model(tmp_path: Path) -> tuple[Any, Any, str]:
    module = user_module(
        tmp_path,
        "churn_rules",
        "class CallsRule:\n"
        "    def __init__(self, cut):\n"
        "        self.cut = cut\n\n"
        "    def predict(self, inputs):\n"
        "        return (np.asarray(inputs['calls']) > self.cut).astype(np.int64)\n",
    )
    features, _ = training_data()
    return module.CallsRule(0.0), features.head(5), "python"


def python_function(tmp_path: Path) -> tuple[Any, Any, str]:
    module = user_module(
        tmp_path,
        "churn_score",
        "def score(inputs):\n    return np.asarray(inputs['age'] * 0.5 + inputs['calls'])\n",
    )
    features, _ = training_data()
    return module.score, features.head(5), "python"


FLAVORS = [
    xgboost_classifier,
    xgboost_booster,
    lightgbm_classifier,
    lightgbm_booster,
    onnx_file,
    torch_module,
    python_model,
    python_function,
]


def own_predictions(model: Any, features: pd.DataFrame) -> np.ndarray:
    """What the model predicts without clew, to compare clew's answers with."""
    if isinstance(model, Path):
        import onnxruntime

        session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        return session.run(None, {"X": features.to_numpy(dtype=np.float32)})[0]
    if inspect.isfunction(model):
        return np.asarray(model(features))
    kind = type(model).__module__.split(".")[0]
    if kind == "torch":
        import torch

        with torch.no_grad():
            return model(torch.as_tensor(features.to_numpy(dtype=np.float32))).numpy()
    if type(model).__name__ == "Booster" and kind == "xgboost":
        return model.inplace_predict(features)
    return np.asarray(model.predict(features))


def inputs_for(flavor: str, features: pd.DataFrame) -> Any:
    """Arrays for the flavors whose models took arrays, DataFrames for the others."""
    if flavor in ("onnx", "torch"):
        return features.to_numpy(dtype=np.float32)
    return features


@contextmanager
def serving(model: LoadedModel) -> Iterator[str]:
    """The model behind a real uvicorn on a free port, as ``clew serve`` runs it."""
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
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.mark.parametrize("make", FLAVORS, ids=lambda make: make.__name__)
def test_a_model_of_each_flavor_is_governed_served_captured_and_traced(
    client: clew.Client, as_user: AsUser, tmp_path: Path, make: Callable[..., Any]
) -> None:
    model, example, flavor = make(tmp_path)
    features, _ = training_data()
    expected = own_predictions(model, features)
    with client.start_run("flavors", "train") as run:
        artifact = run.log_model(model, name=f"churn-{flavor}", input_example=example)
    if flavor == "python":  # the packaged copy is what loads, not the user's edited file
        module = getattr(model, "__module__", None) or type(model).__module__
        (tmp_path / f"{module}.py").write_text("raise ImportError('edited since')\n")
        del sys.modules[module]
    description = artifact.properties["flavor"]
    assert description["flavor"] == flavor
    if flavor != "python":
        assert description["library"] == flavor
        assert description["library_version"] == _installed_version(flavor)
    else:
        assert "numpy==" + np.__version__ in description["requirements"]
    client.register_model(artifact, "churn")
    approver = as_user("bob")
    approver.approve("churn/1", "reviewed")
    approver.promote("churn/1", "production")

    loaded = as_user("alice").load_model("churn@production")
    inputs = inputs_for(flavor, features)
    outputs, ids = loaded.predict_with_ids(inputs)
    np.testing.assert_allclose(np.asarray(outputs), expected, rtol=1e-5, atol=1e-6)
    assert loaded.version.signature["inputs"]

    with serving(loaded) as url:
        rows = inputs[:3] if isinstance(inputs, np.ndarray) else inputs.head(3)
        body = rows.tolist() if isinstance(rows, np.ndarray) else rows.to_dict("records")
        answer = httpx.post(f"{url}/predict", json={"inputs": body}, timeout=30)
        assert answer.status_code == 200, answer.text
        served = answer.json()
        np.testing.assert_allclose(np.asarray(served["outputs"]), expected[:3], rtol=1e-5)

    client.flush_captures()
    for prediction_id, row in ((ids[7], 7), (served["prediction_ids"][1], 1)):
        trace = client.trace(prediction_id)
        step = trace.step("prediction")
        assert step.verified, step
        np.testing.assert_allclose(np.asarray(step.details["output"]), expected[row], rtol=1e-5)
        assert trace.step("model_version").verified


def _installed_version(flavor: str) -> str:
    module = __import__(flavor)
    return str(module.__version__)


def test_an_xgboost_wrapper_is_recorded_as_xgboost_not_scikit_learn(client: clew.Client) -> None:
    xgboost = pytest.importorskip("xgboost")
    features, target = training_data()
    model = xgboost.XGBRegressor(n_estimators=4, max_depth=2).fit(features, target)
    assert flavors.choose(model, None).name == "xgboost"
    with client.start_run("flavors", "train") as run:
        artifact = run.log_model(model, name="churn-xgb")
    assert artifact.properties["flavor"]["library"] == "xgboost"
    assert artifact.properties["flavor"]["library_version"] == xgboost.__version__
    assert artifact.properties["flavor"]["executes_code_on_load"] is False
    version = client.register_model(artifact, "churn")
    assert [c["name"] for c in version.signature["inputs"]] == list(features.columns)
    assert {c["type"] for c in version.signature["inputs"]} == {"double"}
