"""Capture overhead per flavor: ``load_model(...).predict`` against the bare model, 10k rows.

For each flavor a small model is trained on 10 features, logged, registered and loaded with
``client.load_model``; then ``--pairs`` 10,000-row predicts are made through ``LoadedModel``
(signature check, prediction ids, capture queued) and on the bare model (``.raw``), alternating
(order flipped every pair). Two CPU figures, both from the same run:

* caller overhead: the calling thread's CPU (``time.thread_time``) per captured call over the
  bare call's, medians of the pairs — what capture adds to ``predict`` itself (target ≤ 5%);
* whole-process overhead: the process's CPU (every thread, the capture writer's included,
  ``flush_captures()`` inside the timed region) for all the captured calls over all the bare
  ones — what capture costs the machine (reported, no target: the writer's Parquet and
  signing work is measured by bench_capture.py).

CPU time rather than wall time so the figures hold on a busy machine.

    uv run python benchmarks/bench_flavors.py [--quick] [--pairs N] [--only xgboost,...]
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from report import Result, finish, parser
from sklearn.datasets import make_classification

import clew

FEATURES = 10
CALL_ROWS = 10_000
TARGET_OVERHEAD = 5.0


def sklearn_model(X: np.ndarray, y: np.ndarray, _: Path) -> tuple[Any, Any]:
    """The established path (bench_capture.py's LogisticRegression), for comparison."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=500).fit(X, y), X


def xgboost_model(X: np.ndarray, y: np.ndarray, _: Path) -> tuple[Any, Any]:
    import xgboost

    return xgboost.XGBClassifier(n_estimators=50, max_depth=4, n_jobs=1).fit(X, y), X


def lightgbm_model(X: np.ndarray, y: np.ndarray, _: Path) -> tuple[Any, Any]:
    import lightgbm

    model = lightgbm.LGBMClassifier(n_estimators=50, num_threads=1, verbose=-1)
    return model.fit(X, y), X


def onnx_model(X: np.ndarray, y: np.ndarray, scratch: Path) -> tuple[Any, Any]:
    from skl2onnx import to_onnx
    from sklearn.ensemble import RandomForestClassifier

    arrays = X.astype(np.float32)
    forest = RandomForestClassifier(n_estimators=20, max_depth=8, n_jobs=1, random_state=0)
    proto = to_onnx(forest.fit(arrays, y), arrays[:1], options={"zipmap": False})
    path = scratch / "forest.onnx"
    path.write_bytes(proto.SerializeToString())
    return path, arrays


def torch_model(X: np.ndarray, y: np.ndarray, _: Path) -> tuple[Any, Any]:
    import torch

    torch.set_num_threads(1)
    arrays = X.astype(np.float32)
    net = torch.nn.Sequential(
        torch.nn.Linear(FEATURES, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2)
    )
    return net, arrays


def python_model(X: np.ndarray, y: np.ndarray, scratch: Path) -> tuple[Any, Any]:
    """A hand-written scorer in its own module: a linear score and a logistic link."""
    source = scratch / "bench_scorer.py"
    source.write_text(
        "import numpy as np\n\n\n"
        "class Scorer:\n"
        "    def __init__(self, weights):\n"
        "        self.weights = weights\n\n"
        "    def predict(self, inputs):\n"
        "        return 1 / (1 + np.exp(-(np.asarray(inputs) @ self.weights)))\n"
    )
    sys.path.insert(0, str(scratch))
    module = importlib.import_module("bench_scorer")
    return module.Scorer(np.linspace(-1, 1, FEATURES)), X


MODELS: dict[str, Callable[[np.ndarray, np.ndarray, Path], tuple[Any, Any]]] = {
    "sklearn": sklearn_model,
    "xgboost": xgboost_model,
    "lightgbm": lightgbm_model,
    "onnx": onnx_model,
    "torch": torch_model,
    "python": python_model,
}


def loaded(client: clew.Client, name: str, model: Any, inputs: np.ndarray) -> Any:
    with client.start_run("bench", f"train-{name}", capture_code=False) as run:
        artifact = run.log_model(model, name=name, input_example=inputs[:8])
    version = client.register_model(artifact, name)
    return client.load_model(version.ref)


def measure(client: clew.Client, model: Any, batch: np.ndarray, pairs: int) -> dict[str, float]:
    """Median caller-thread CPU per call (bare, captured) and whole-process CPU of each side."""
    raw = model.raw
    for _ in range(5):
        model.predict(batch)
        raw.predict(batch)
    client.flush_captures()
    thread: dict[str, list[float]] = {"bare": [], "captured": []}
    process = {"bare": 0.0, "captured": 0.0}
    calls = [("bare", raw.predict), ("captured", model.predict)]
    for index in range(pairs):
        for side, call in calls if index % 2 else reversed(calls):
            began_process, began = time.process_time(), time.thread_time()
            call(batch)
            thread[side].append(time.thread_time() - began)
            process[side] += time.process_time() - began_process
    began_flush = time.process_time()
    client.flush_captures()
    process["captured"] += time.process_time() - began_flush
    return {
        "bare": statistics.median(thread["bare"]),
        "captured": statistics.median(thread["captured"]),
        "process_bare": process["bare"],
        "process_captured": process["captured"],
    }


def results_for(name: str, figures: dict[str, float], pairs: int) -> list[Result]:
    caller = 100 * (figures["captured"] - figures["bare"]) / figures["bare"]
    whole = 100 * (figures["process_captured"] - figures["process_bare"]) / figures["process_bare"]
    common = {"benchmark": "flavors", "unit": "%", "higher_is_better": False}
    return [
        Result(
            operation=f"{name}: predict overhead, caller CPU, 10k rows",
            clew=caller,
            target_value=TARGET_OVERHEAD,
            note=f"bare predict {figures['bare'] * 1e3:.3f} ms thread CPU, captured "
            f"{figures['captured'] * 1e3:.3f} ms (medians of {pairs} interleaved pairs)",
            **common,
        ),
        Result(
            operation=f"{name}: predict overhead, whole-process CPU incl. writer, 10k rows",
            clew=whole,
            note=f"{pairs} calls each side; bare {figures['process_bare']:.3f} s, captured + "
            f"flush {figures['process_captured']:.3f} s process CPU",
            **common,
        ),
    ]


def main() -> None:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--pairs", type=int, help="interleaved call pairs per flavor")
    arguments.add_argument("--only", help="comma-separated flavors (default: every installed)")
    options = arguments.parse_args()
    pairs = options.pairs or (20 if options.quick else 100)
    chosen = options.only.split(",") if options.only else list(MODELS)
    X, y = make_classification(n_samples=20_000, n_features=FEATURES, random_state=0)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="clew-bench-flavors-") as scratch:
        client = clew.connect(str(Path(scratch) / "home"))
        for name in chosen:
            if name not in ("python", "sklearn") and importlib.util.find_spec(name) is None:
                print(f"{name}: not installed, skipped")
                continue
            model, arrays = MODELS[name](X, y, Path(scratch))
            batch = np.ascontiguousarray(arrays[:CALL_ROWS])
            figures = measure(client, loaded(client, name, model, arrays), batch, pairs)
            results += results_for(name, figures, pairs)
        client.close()
    finish("Capture overhead per flavor", results, options.json)


if __name__ == "__main__":
    main()
