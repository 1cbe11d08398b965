"""Explanations of a 100-tree forest: clew's ``explain`` and ``explain_prediction`` against
calling SHAP directly, in the same process, by CPU time (median of ``--rounds``).

A ``RandomForestClassifier(n_estimators=100, max_depth=8)`` is trained on ``--rows`` rows of
10 features and registered in a temporary embedded store. Global: ``clew.explain(ref, data,
record=False)`` (loads and digest-checks the version, explains a seeded sample of
``GLOBAL_ROWS`` rows) and with ``max_rows`` = every row, against ``shap.TreeExplainer(model)
.shap_values(X)`` on every row. Local: ``clew.explain_prediction(id)`` (looks the captured
prediction up, verifies its proof, loads the exact version, explains the row) against
``TreeExplainer(model).shap_values(row)``. Budget: both under 1 s.

    uv run --frozen python benchmarks/bench_explain.py [--rows N] [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import shap
from sklearn.ensemble import RandomForestClassifier

import clew
from clew.client.explain import GLOBAL_ROWS


def _cpu(work: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.process_time()
        work()
        times.append(time.process_time() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only-sampled", action="store_true", help="time clew's default only")
    options = parser.parse_args()
    rng = np.random.default_rng(0)
    features = [f"x{i}" for i in range(10)]
    data = pd.DataFrame(rng.normal(size=(options.rows, 10)), columns=features)
    data["target"] = data["x0"] + data["x1"] * data["x2"] + rng.normal(size=options.rows) > 0
    data["target"] = data["target"].astype(int)
    model = RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0, n_jobs=1)
    model.fit(data[features], data["target"])
    with tempfile.TemporaryDirectory() as home:
        client = clew.connect(home)
        with client.start_run("bench", "train", capture_code=False) as run:
            artifact = run.log_model(model, name="forest")
        ref = client.register_model(artifact, "forest").ref
        loaded = client.load_model(ref)
        _, ids = loaded.predict_with_ids(data[features].iloc[:1])
        client.flush_captures()
        X = data[features]

        work: dict[str, Callable[[], object]] = {
            "clew explain (sampled)": lambda: client.explain(ref, data, record=False),
            "clew explain_prediction": lambda: client.explain_prediction(ids[0]),
            "shap TreeExplainer (one row)": lambda: shap.TreeExplainer(model).shap_values(
                X.iloc[:1]
            ),
            "shap TreeExplainer (every row)": lambda: shap.TreeExplainer(model).shap_values(
                X, check_additivity=False
            ),
            "clew explain (every row)": lambda: client.explain(
                ref, data, record=False, max_rows=len(data)
            ),
        }
        print(f"forest: 100 trees, max_depth 8; rows: {options.rows:,}; sample: {GLOBAL_ROWS:,}")
        if options.only_sampled:
            work = {name: work[name] for name in list(work)[:3]}
        figures = {}
        for name, call in work.items():
            figures[name] = _cpu(call, options.rounds)
            print(f"{name:34s} {figures[name]:.3f} CPU s", flush=True)
        client.close()
    if options.only_sampled:
        return
    shap_all = figures["shap TreeExplainer (every row)"]
    shap_one = figures["shap TreeExplainer (one row)"]
    sampled, every = figures["clew explain (sampled)"], figures["clew explain (every row)"]
    local = figures["clew explain_prediction"]
    print(f"ratio global (shap every row / clew sampled): {shap_all / sampled:.2f}x")
    print(f"ratio global (shap / clew, both every row): {shap_all / every:.2f}x")
    print(f"ratio local (shap one row / clew explain_prediction): {shap_one / local:.2f}x")


if __name__ == "__main__":
    main()
