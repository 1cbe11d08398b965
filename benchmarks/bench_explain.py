"""Explanations of a 100-tree forest: clew's ``explain`` and ``explain_prediction`` against
calling SHAP directly, in the same process, by CPU time (median of ``--rounds``).

A ``RandomForestClassifier(n_estimators=100, max_depth=8)`` is trained on ``--rows`` rows of
10 features and registered in a temporary embedded store. Global: ``clew.explain(ref, data,
record=False)`` (loads and digest-checks the version, explains a seeded sample of
``GLOBAL_ROWS`` rows) against ``shap.TreeExplainer(model).shap_values`` on the same sample, so
the difference is clew's own cost (loading, digest check, sampling, the document). Local:
``clew.explain_prediction(id)`` (looks the captured prediction up, verifies its proof, loads
the exact version, explains the row) against ``TreeExplainer(model).shap_values(row)``.
Budget: both under 1 s.

``--choices`` also times what SHAP offers for a global summary of every row, and how far each
ranking of mean |SHAP| is from exact TreeSHAP on every row (Spearman's rho and the top-3
features): smaller samples, ``approximate=True`` (Saabas attributions) and interventional
TreeSHAP against a 100-row background. Exact TreeSHAP on every row is the reference and costs
tens of CPU seconds.

    uv run --frozen python benchmarks/bench_explain.py [--rows N] [--rounds N] [--choices]
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable

import numpy as np
import pandas as pd
import shap
from cpu_time import cpu_seconds, sized_parser
from scipy.stats import spearmanr
from sklearn.ensemble import RandomForestClassifier

import clew
from clew.client.explain import GLOBAL_ROWS

FEATURES = [f"x{i}" for i in range(10)]


def _forest(rows: int) -> tuple[RandomForestClassifier, pd.DataFrame]:
    rng = np.random.default_rng(0)
    data = pd.DataFrame(rng.normal(size=(rows, 10)), columns=FEATURES)
    noisy = data["x0"] + data["x1"] * data["x2"] + rng.normal(size=rows) > 0
    data["target"] = noisy.astype(int)
    model = RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0, n_jobs=1)
    return model.fit(data[FEATURES], data["target"]), data


def _importance(values: object) -> np.ndarray:
    array = np.asarray(values)
    positive = array[:, :, -1] if array.ndim == 3 else array
    return np.abs(positive).mean(axis=0)


def _report(name: str, seconds: float) -> None:
    print(f"{name:44s} {seconds:7.3f} CPU s", flush=True)


def _choices(model: RandomForestClassifier, X: pd.DataFrame, rounds: int) -> None:
    """Each way of summarising every row, timed, and its ranking against exact TreeSHAP."""
    explainer = shap.TreeExplainer(model)
    background = X.sample(100, random_state=0)
    options: dict[str, Callable[[], object]] = {
        f"exact, sample of {n}": lambda n=n: explainer.shap_values(
            X.sample(n, random_state=0), check_additivity=False
        )
        for n in (200, 300, GLOBAL_ROWS, 1_000)
    }
    options["approximate (Saabas), every row"] = lambda: explainer.shap_values(
        X, approximate=True, check_additivity=False
    )
    options["interventional, 100 background, sample of 200"] = lambda: shap.TreeExplainer(
        model, background, feature_perturbation="interventional"
    ).shap_values(X.sample(200, random_state=0), check_additivity=False)
    reference = _importance(explainer.shap_values(X, check_additivity=False))
    top = set(np.argsort(-reference)[:3])
    for name, call in options.items():
        seconds = cpu_seconds(call, rounds)
        found = _importance(call())
        rho = spearmanr(reference, found).statistic
        same_top = top == set(np.argsort(-found)[:3])
        print(f"{name:44s} {seconds:7.3f} CPU s  rho {rho:.3f}  top-3 same: {same_top}")


def main() -> None:
    parser = sized_parser(10_000)
    parser.add_argument("--choices", action="store_true", help="time SHAP's other options")
    options = parser.parse_args()
    model, data = _forest(options.rows)
    X = data[FEATURES]
    sample = X.sample(GLOBAL_ROWS, random_state=0) if len(X) > GLOBAL_ROWS else X
    with tempfile.TemporaryDirectory() as home:
        client = clew.connect(home)
        with client.start_run("bench", "train", capture_code=False) as run:
            artifact = run.log_model(model, name="forest")
        ref = client.register_model(artifact, "forest").ref
        _, ids = client.load_model(ref).predict_with_ids(X.iloc[:1])
        client.flush_captures()
        work: dict[str, Callable[[], object]] = {
            "clew explain (sampled)": lambda: client.explain(ref, data, record=False),
            f"shap TreeExplainer (same {len(sample)} rows)": lambda: shap.TreeExplainer(
                model
            ).shap_values(sample, check_additivity=False),
            "clew explain_prediction": lambda: client.explain_prediction(ids[0]),
            "shap TreeExplainer (one row)": lambda: shap.TreeExplainer(model).shap_values(
                X.iloc[:1]
            ),
        }
        print(f"forest: 100 trees, max_depth 8; rows: {options.rows:,}; sample: {GLOBAL_ROWS:,}")
        figures = {name: cpu_seconds(call, options.rounds) for name, call in work.items()}
        client.close()
    for name, seconds in figures.items():
        _report(name, seconds)
    clew_global, shap_global, clew_local, shap_local = figures.values()
    print(f"clew's own cost, global: {clew_global - shap_global:.3f} CPU s")
    print(f"clew's own cost, local: {clew_local - shap_local:.3f} CPU s")
    if options.choices:
        _choices(model, X, options.rounds)


if __name__ == "__main__":
    main()
