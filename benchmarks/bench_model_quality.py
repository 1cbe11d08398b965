"""Model quality figures over a window: clew's own arithmetic against scikit-learn's metrics.

Over ``--rows`` labelled binary predictions with probabilities, computes accuracy, precision,
recall, F1, ROC AUC, log loss and the confusion matrix with ``clew.domain.quality_metrics`` and
with ``sklearn.metrics`` (the peer a team would use) in the same process, by CPU time (steadier
on a shared machine than the wall clock), median of ``--rounds``, and prints the ratio. The
figures themselves are checked equal to 1e-9 first.

    uv run --frozen python benchmarks/bench_model_quality.py [--rows N] [--rounds N]
"""

from __future__ import annotations

import numpy as np
from cpu_time import cpu_seconds, sized_parser
from sklearn import metrics as skm

from clew.domain import quality_metrics


def main() -> None:
    options = sized_parser(1_000_000).parse_args()
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, options.rows)
    proba = np.column_stack([1 - (p := rng.random(options.rows)), p])
    predicted = proba.argmax(axis=1)
    truth_list, predicted_list = truth.tolist(), predicted.tolist()

    def ours() -> dict[str, object]:
        return quality_metrics.classification(truth_list, predicted_list, [0, 1], proba, truth_list)

    def peer() -> dict[str, object]:
        return {
            "accuracy": skm.accuracy_score(truth, predicted),
            "precision": skm.precision_score(truth, predicted),
            "recall": skm.recall_score(truth, predicted),
            "f1": skm.f1_score(truth, predicted),
            "roc_auc": skm.roc_auc_score(truth, proba[:, 1]),
            "log_loss": skm.log_loss(truth, proba),
            "confusion_matrix": skm.confusion_matrix(truth, predicted),
        }

    mine, theirs = ours(), peer()
    for name in ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"):
        assert abs(float(mine[name]) - float(theirs[name])) < 1e-9, name  # type: ignore[arg-type]
    clew_s, sklearn_s = cpu_seconds(ours, options.rounds), cpu_seconds(peer, options.rounds)
    print(f"rows: {options.rows:,}")
    print(f"clew quality_metrics: {clew_s:.3f} CPU s ({options.rows / clew_s:,.0f} rows/s)")
    print(f"scikit-learn metrics: {sklearn_s:.3f} CPU s ({options.rows / sklearn_s:,.0f} rows/s)")
    print(f"ratio (scikit-learn / clew): {sklearn_s / clew_s:.2f}x")


if __name__ == "__main__":
    main()
