"""Quality figures agree with scikit-learn's metrics on generated data (tolerance 1e-9).

clew computes them without scikit-learn (monitoring must not need the sklearn extra), so each
figure is checked against the function a team would have used at training.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from clew.domain import quality_metrics
from clew.domain.monitoring import Window
from clew.domain.quality import LabelledWindow, QualitySpec, evaluate
from clew.errors import InvalidInputError

TOLERANCE = 1e-9


def _proba(rng: np.random.Generator, rows: int, classes: int) -> np.ndarray:
    raw = rng.random((rows, classes)) ** 3
    return raw / raw.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("classes", [2, 3, 5])
def test_classification_figures_agree_with_scikit_learn(classes: int) -> None:
    rng = np.random.default_rng(classes)
    truth = rng.integers(0, classes, 2_000)
    proba = _proba(rng, 2_000, classes)
    # Ties on purpose: ROC AUC must count them as scikit-learn's trapezoids do.
    proba = np.round(proba, 2)
    proba /= proba.sum(axis=1, keepdims=True)
    predicted = proba.argmax(axis=1)
    figures = quality_metrics.classification(
        truth.tolist(), predicted.tolist(), list(range(classes)), proba, truth.tolist()
    )
    average = "binary" if classes == 2 else "macro"
    assert figures["accuracy"] == pytest.approx(skm.accuracy_score(truth, predicted), abs=TOLERANCE)
    for name, function in (
        ("precision", skm.precision_score),
        ("recall", skm.recall_score),
        ("f1", skm.f1_score),
    ):
        expected = function(truth, predicted, average=average, zero_division=0)
        assert figures[name] == pytest.approx(expected, abs=TOLERANCE), name
    expected_auc = (
        skm.roc_auc_score(truth, proba[:, 1])
        if classes == 2
        else skm.roc_auc_score(truth, proba, multi_class="ovr", average="macro")
    )
    assert figures["roc_auc"] == pytest.approx(expected_auc, abs=TOLERANCE)
    assert figures["log_loss"] == pytest.approx(
        skm.log_loss(truth, proba, labels=list(range(classes))), abs=TOLERANCE
    )
    assert figures["confusion_matrix"]["matrix"] == skm.confusion_matrix(truth, predicted).tolist()


def test_calibration_error_is_the_weighted_gap_per_confidence_bin() -> None:
    truth = np.array([0, 1, 1, 0])
    proba = np.array([[0.95, 0.05], [0.35, 0.65], [0.4, 0.6], [0.2, 0.8]])
    # Bin 9 holds the first row (right, confidence 0.95); bin 6 holds rows two and three (both
    # right, confidences 0.65 and 0.6); bin 8 holds the last (wrong, confidence 0.8).
    expected = (abs(1 - 0.95) + abs(2 - 1.25) + abs(0 - 0.8)) / 4
    assert quality_metrics.calibration_error(truth, proba) == pytest.approx(expected)
    perfect = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert quality_metrics.calibration_error(np.array([0, 1]), perfect) == 0.0


def test_regression_figures_agree_with_scikit_learn() -> None:
    rng = np.random.default_rng(7)
    truth = rng.normal(50, 10, 3_000)
    predicted = truth + rng.normal(0, 3, 3_000)
    figures = quality_metrics.regression(truth.tolist(), predicted.tolist())
    assert figures["mae"] == pytest.approx(skm.mean_absolute_error(truth, predicted), abs=TOLERANCE)
    assert figures["rmse"] == pytest.approx(
        np.sqrt(skm.mean_squared_error(truth, predicted)), abs=TOLERANCE
    )
    assert figures["r2"] == pytest.approx(skm.r2_score(truth, predicted), abs=TOLERANCE)
    assert figures["mape"] == pytest.approx(
        skm.mean_absolute_percentage_error(truth, predicted), abs=TOLERANCE
    )


def test_r2_of_a_constant_truth_matches_scikit_learn() -> None:
    assert quality_metrics.regression([3.0, 3.0], [3.0, 3.0])["r2"] == skm.r2_score(
        [3.0, 3.0], [3.0, 3.0]
    )
    assert quality_metrics.regression([3.0, 3.0], [2.0, 4.0])["r2"] == skm.r2_score(
        [3.0, 3.0], [2.0, 4.0]
    )


def _window(
    truth: list, predicted: list, rows: int | None = None, **segments: list
) -> LabelledWindow:
    return LabelledWindow(
        window=Window("churn", 1, last_n=100),
        rows=rows if rows is not None else len(truth),
        truth=truth,
        predicted=predicted,
        proba=None,
        has_proba=np.zeros(len(truth), dtype=bool),
        segments=segments,
    )


def test_a_drop_beyond_the_margin_is_a_model_quality_violation() -> None:
    data = _window([1, 0, 1, 0], [1, 0, 0, 1])  # accuracy 0.5
    report = evaluate(data, QualitySpec(margin=0.1), {"accuracy": 0.9, "test_f1": 0.55})
    assert [v.feature_name for v in report.violations] == ["accuracy"]
    [violation] = report.violations
    assert violation.constraint_check_type == "model_quality_check"
    assert violation.threshold == pytest.approx(0.8)
    assert "below 0.8" in violation.description
    assert report.metrics["recorded"] == {"accuracy": 0.9, "f1": 0.55}
    assert evaluate(data, QualitySpec(margins={"accuracy": 0.5}), {"accuracy": 0.9}).passed


def test_an_error_metric_violates_when_it_rises_beyond_the_margin() -> None:
    data = _window([1.0, 2.0, 3.5], [1.5, 2.5, 2.5])
    report = evaluate(data, QualitySpec(margin=0.1), {"mae": 0.3, "r2": 0.1})
    assert [v.feature_name for v in report.violations] == ["mae"]
    assert report.metrics["task"] == "regression"


def test_label_coverage_and_too_few_labels() -> None:
    data = _window([1, 0], [1, 0], rows=8)
    report = evaluate(data, QualitySpec(min_labels=3), {"accuracy": 0.99})
    assert report.passed and report.metrics["label_coverage"] == 0.25
    assert "fewer than 3" in report.metrics["note"]
    assert "accuracy" not in report.metrics


def test_group_metrics_per_segment() -> None:
    data = _window([1, 1, 0, 0], [1, 1, 1, 0], region=["eu", "eu", "us", "us"])
    report = evaluate(data, QualitySpec(), {})
    segments = report.metrics["segments"]["region"]
    assert segments["eu"]["accuracy"] == 1.0 and segments["eu"]["labelled"] == 2
    assert segments["us"]["accuracy"] == 0.5


def test_bad_specs_and_unknown_classes_are_one_sentence() -> None:
    with pytest.raises(InvalidInputError, match="task 'ranking' is unknown"):
        QualitySpec(task="ranking")
    with pytest.raises(InvalidInputError, match="at least 0"):
        QualitySpec(margin=-1)
    with pytest.raises(InvalidInputError, match="not among the classes"):
        evaluate(_window(["cat"], ["dog"]), QualitySpec(classes=("cat", "cow")), {})
    with pytest.raises(InvalidInputError, match="numeric labels"):
        evaluate(_window(["a"], [1.5]), QualitySpec(task="regression"), {})
