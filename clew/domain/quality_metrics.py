"""Model quality from ground truth as pure arithmetic: classification and regression figures.

The monitor joins labels to captured predictions (clew/service/model_quality.py) and hands the
arrays here. Every figure is defined as scikit-learn defines it (``accuracy_score``,
``precision_recall_fscore_support`` with ``zero_division=0``, ``roc_auc_score`` one-vs-rest
macro, ``log_loss``, ``confusion_matrix``, ``mean_absolute_error``, ``r2_score``,
``mean_absolute_percentage_error``) so figures agree with what a team computed at training,
but nothing here imports scikit-learn: monitoring must not need the ``sklearn`` extra.
Binary problems score the greater of the two classes as positive (``1`` for 0/1 labels), as
scikit-learn's ``pos_label=1`` does; multiclass precision, recall and F1 are macro averages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# Figures where a larger value is better; the rest (losses and errors) are better smaller.
HIGHER_IS_BETTER = frozenset({"accuracy", "precision", "recall", "f1", "roc_auc", "r2"})
CALIBRATION_BINS = 10


def classification(
    y_true: Sequence[Any],
    y_pred: Sequence[Any],
    classes: Sequence[Any],
    proba: np.ndarray | None = None,
    proba_true: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """Accuracy, precision, recall, F1 and the confusion matrix over ``classes``; with
    ``proba`` (one column per class, rows matching ``proba_true``) also ROC AUC, log loss and
    expected calibration error."""
    index = {value: position for position, value in enumerate(classes)}
    truth = np.array([index[value] for value in y_true], dtype=np.int64)
    predicted = np.array([index[value] for value in y_pred], dtype=np.int64)
    size = len(classes)
    matrix = np.bincount(truth * size + predicted, minlength=size * size).reshape(size, size)
    figures: dict[str, Any] = {"accuracy": float(np.mean(truth == predicted))}
    figures.update(_precision_recall_f1(matrix))
    figures["confusion_matrix"] = {
        "labels": list(classes),
        "matrix": matrix.tolist(),
    }
    if proba is not None and proba_true is not None and len(proba_true):
        proba_index = np.array([index[value] for value in proba_true], dtype=np.int64)
        figures.update(probability_figures(proba_index, np.asarray(proba, dtype=np.float64)))
    return figures


def _precision_recall_f1(matrix: np.ndarray) -> dict[str, float]:
    """Per-class figures from the confusion matrix: the positive class's when binary, the
    unweighted mean over classes otherwise (0 where a class was never predicted or seen)."""
    hits = np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(axis=0).astype(np.float64)
    actual = matrix.sum(axis=1).astype(np.float64)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    recall = np.divide(hits, actual, out=np.zeros_like(hits), where=actual > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(hits), where=total > 0)
    if len(hits) == 2:
        return {"precision": float(precision[1]), "recall": float(recall[1]), "f1": float(f1[1])}
    return {
        "precision": float(precision.mean()),
        "recall": float(recall.mean()),
        "f1": float(f1.mean()),
    }


def probability_figures(truth: np.ndarray, proba: np.ndarray) -> dict[str, float | None]:
    """ROC AUC (one-vs-rest macro; None when only one class is present), log loss and
    expected calibration error of the predicted probabilities."""
    if proba.ndim != 2 or proba.shape[0] != len(truth):
        raise ValueError("probabilities must be one row per labelled prediction")
    size = proba.shape[1]
    present = [k for k in range(size) if 0 < np.sum(truth == k) < len(truth)]
    if size == 2:
        auc = roc_auc(truth == 1, proba[:, 1]) if len(present) == 2 else None
    else:
        aucs = [roc_auc(truth == k, proba[:, k]) for k in present]
        auc = float(np.mean(aucs)) if len(present) == size else None
    return {
        "roc_auc": auc,
        "log_loss": log_loss(truth, proba),
        "calibration_error": calibration_error(truth, proba),
    }


def roc_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """The area under the ROC curve as the Mann-Whitney statistic (ties count one half),
    which equals the trapezoidal area scikit-learn computes."""
    ranks = _average_ranks(score)
    positives = int(np.sum(positive))
    negatives = len(positive) - positives
    rank_sum = float(np.sum(ranks[positive]))
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.r_[True, ordered[1:] != ordered[:-1]]
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], len(values)] - 1
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = (first[group] + last[group]) / 2 + 1
    return ranks


def log_loss(truth: np.ndarray, proba: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class, probabilities clipped to [eps, 1-eps]."""
    eps = np.finfo(proba.dtype).eps
    clipped = np.clip(proba[np.arange(len(truth)), truth], eps, 1 - eps)
    return float(-np.mean(np.log(clipped)))


def calibration_error(truth: np.ndarray, proba: np.ndarray, bins: int = CALIBRATION_BINS) -> float:
    """Expected calibration error of the top-label confidence over ``bins`` equal-width bins:
    the row-weighted mean gap between each bin's accuracy and its mean confidence."""
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == truth
    which = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    hit_sums = np.bincount(which, weights=correct.astype(np.float64), minlength=bins)
    confidence_sums = np.bincount(which, weights=confidence, minlength=bins)
    return float(np.sum(np.abs(hit_sums - confidence_sums)) / len(truth))


def regression(y_true: Sequence[float], y_pred: Sequence[float]) -> dict[str, float]:
    """MAE, RMSE, R² and MAPE (a fraction, as scikit-learn returns it, not a percentage)."""
    truth = np.asarray(y_true, dtype=np.float64)
    predicted = np.asarray(y_pred, dtype=np.float64)
    error = truth - predicted
    residual = float(np.sum(error**2))
    spread = float(np.sum((truth - truth.mean()) ** 2))
    # scikit-learn's force_finite: a constant truth scores 1 when matched exactly, else 0.
    r2 = 1 - residual / spread if spread > 0 else (1.0 if residual == 0 else 0.0)
    scale = np.maximum(np.abs(truth), np.finfo(np.float64).eps)
    return {
        "mae": float(np.mean(np.abs(error))),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "r2": r2,
        "mape": float(np.mean(np.abs(error) / scale)),
    }


def drop(metric: str, observed: float, recorded: float) -> float:
    """How much worse ``observed`` is than ``recorded`` (positive is worse, either direction)."""
    return recorded - observed if metric in HIGHER_IS_BETTER else observed - recorded
