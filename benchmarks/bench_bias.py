"""Bias metrics over 1M rows and 3 sensitive attributes: clew's numpy counting against fairlearn.

clew computes pre- and post-training metrics for every attribute (``clew.domain.bias.compute``:
per-group rates with Wilson intervals, demographic parity difference and ratio, equalized odds
and equal opportunity differences); the peer is what a team would write with fairlearn: a
``MetricFrame`` of the same per-group rates plus the four disparity functions, per attribute.
Both run in this process, timed by CPU time (steadier on a shared machine than the wall clock),
median of ``--rounds``; the disparities are checked equal to 1e-12 first. Budget: under 2 s.

    uv run --frozen python benchmarks/bench_bias.py [--rows N] [--rounds N]
"""

from __future__ import annotations

import numpy as np
from cpu_time import cpu_seconds, sized_parser
from fairlearn import metrics as fm
from sklearn.metrics import accuracy_score

from clew.domain import bias


def _data(rows: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    attributes = {
        "sex": rng.choice(np.array(["f", "m"]), rows),
        "age_band": rng.choice(np.array(["18-30", "31-50", "51-70", "70+"]), rows),
        "region": rng.integers(0, 8, rows),
    }
    truth = rng.integers(0, 2, rows)
    predicted = np.where(rng.random(rows) < 0.2, 1 - truth, truth)
    return truth, predicted, attributes


def main() -> None:
    options = sized_parser(1_000_000).parse_args()
    truth, predicted, attributes = _data(options.rows)
    rates = {
        "selection_rate": fm.selection_rate,
        "accuracy": accuracy_score,
        "tpr": fm.true_positive_rate,
        "fpr": fm.false_positive_rate,
        "fnr": fm.false_negative_rate,
    }
    disparities = {
        "demographic_parity_difference": fm.demographic_parity_difference,
        "demographic_parity_ratio": fm.demographic_parity_ratio,
        "equalized_odds_difference": fm.equalized_odds_difference,
        "equal_opportunity_difference": fm.equal_opportunity_difference,
    }

    def ours() -> bias.BiasMetrics:
        return bias.compute(truth, attributes, predicted)

    def peer() -> dict[str, dict[str, float]]:
        found = {}
        for name, values in attributes.items():
            frame = fm.MetricFrame(
                metrics=rates, y_true=truth, y_pred=predicted, sensitive_features=values
            )
            found[name] = {
                key: function(truth, predicted, sensitive_features=values)
                for key, function in disparities.items()
            }
            found[name]["groups"] = len(frame.by_group)
        return found

    mine, theirs = ours(), peer()
    for name, expected in theirs.items():
        for key, value in expected.items():
            if key == "groups":
                continue
            measured = mine.attribute(name).summary[key]
            assert measured is not None and abs(measured - value) < 1e-12, (name, key)
    clew_s, peer_s = cpu_seconds(ours, options.rounds), cpu_seconds(peer, options.rounds)
    print(f"rows: {options.rows:,} x {len(attributes)} sensitive attributes")
    print(f"clew bias.compute:     {clew_s:.3f} CPU s (budget 2 s)")
    print(f"fairlearn MetricFrame: {peer_s:.3f} CPU s")
    print(f"ratio (fairlearn / clew): {peer_s / clew_s:.2f}x")


if __name__ == "__main__":
    main()
