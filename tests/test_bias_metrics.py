"""Bias metrics agree with fairlearn (tolerance 1e-12) and with Clarify's definitions by hand.

clew counts them with numpy alone, so each figure is checked against the library a team would
otherwise call; small groups, empty denominators and bad input get one sentence.
"""

from __future__ import annotations

import numpy as np
import pytest
from fairlearn import metrics as fm
from sklearn.metrics import accuracy_score

from clew.domain import bias
from clew.errors import InvalidInputError

pytestmark = pytest.mark.backend_independent

TOLERANCE = 1e-12


def _data(seed: int, rows: int = 5_000) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    sex = rng.choice(["f", "m"], rows, p=[0.4, 0.6])
    age = rng.choice(["18-30", "31-50", "51+"], rows)
    truth = (rng.random(rows) < np.where(sex == "f", 0.3, 0.45)).astype(int)
    flip = rng.random(rows) < np.where(age == "51+", 0.35, 0.15)
    predicted = np.where(flip, 1 - truth, truth)
    return truth, predicted, {"sex": sex, "age_band": age}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_disparities_agree_with_fairlearn(seed: int) -> None:
    truth, predicted, attributes = _data(seed)
    metrics = bias.compute(truth, attributes, predicted)
    for name, values in attributes.items():
        measured = metrics.attribute(name)
        for key, function in (
            ("demographic_parity_difference", fm.demographic_parity_difference),
            ("demographic_parity_ratio", fm.demographic_parity_ratio),
            ("equalized_odds_difference", fm.equalized_odds_difference),
            ("equal_opportunity_difference", fm.equal_opportunity_difference),
        ):
            expected = function(truth, predicted, sensitive_features=values)
            assert measured.summary[key] == pytest.approx(expected, abs=TOLERANCE), (name, key)
        assert measured.summary["disparate_impact"] == measured.summary["demographic_parity_ratio"]


def test_group_rates_agree_with_metric_frame() -> None:
    truth, predicted, attributes = _data(3)
    frame = fm.MetricFrame(
        metrics={
            "selection_rate": fm.selection_rate,
            "accuracy": accuracy_score,
            "tpr": fm.true_positive_rate,
            "fpr": fm.false_positive_rate,
            "fnr": fm.false_negative_rate,
            "count": fm.count,
        },
        y_true=truth,
        y_pred=predicted,
        sensitive_features=attributes["age_band"],
    )
    groups = {
        g.group: g for g in bias.compute(truth, attributes, predicted).attribute("age_band").groups
    }
    for group, row in frame.by_group.iterrows():
        assert groups[group].rows == row["count"]
        for rate in bias.RATES:
            assert groups[group].rates[rate].value == pytest.approx(row[rate], abs=TOLERANCE)


def test_pre_training_metrics_follow_clarify() -> None:
    # 6 rows of "a" (3 positive), 4 rows of "b" (1 positive): Clarify's CI and DPL for facet b.
    labels = [1, 1, 1, 0, 0, 0, 1, 0, 0, 0]
    facet = ["a"] * 6 + ["b"] * 4
    metrics = bias.compute(labels, {"facet": facet}, min_group_rows=1)
    groups = {g.group: g for g in metrics.attribute("facet").groups}
    assert groups["b"].class_imbalance == pytest.approx((6 - 4) / 10)
    assert groups["b"].dpl == pytest.approx(3 / 6 - 1 / 4)
    assert groups["a"].class_imbalance == pytest.approx((4 - 6) / 10)
    assert groups["b"].label_positive_rate.value == pytest.approx(0.25)
    assert metrics.attribute("facet").summary == {}  # no predictions, no post-training figures
    assert metrics.to_dict()["post_training"] is False


def test_wilson_interval_matches_the_textbook_values() -> None:
    # Wilson (1927) / Newcombe (1998) example: 81 of 263 -> 0.2553 to 0.3662.
    rate = bias.wilson(81, 263)
    assert (round(rate.low or 0, 4), round(rate.high or 0, 4)) == (0.2553, 0.3662)
    assert bias.wilson(0, 10).low == 0.0 and bias.wilson(10, 10).high == 1.0
    assert bias.wilson(0, 0).value is None


def test_a_small_group_is_said_and_left_out_of_the_ratios() -> None:
    truth, predicted, attributes = _data(4, rows=2_000)
    attributes["sex"][:5] = "x"  # a third group of five rows
    measured = bias.compute(truth, attributes, predicted).attribute("sex")
    small = next(g for g in measured.groups if g.group == "x")
    assert small.too_few_rows and small.rows == 5
    assert small.rates["selection_rate"].low is not None  # its interval is still shown
    assert any("'x' has 5 row(s), fewer than 30" in note for note in measured.notes)
    kept = [g for g in measured.groups if g.group != "x"]
    rates = [g.rates["selection_rate"].value for g in kept]
    assert measured.summary["disparate_impact"] == pytest.approx(min(rates) / max(rates))


def test_nothing_divides_by_zero() -> None:
    # Group "b" has no actual positives and nobody is ever predicted positive.
    truth = np.array([1, 0] * 20 + [0] * 40)
    predicted = np.zeros(80, dtype=int)
    groups = np.array(["a"] * 40 + ["b"] * 40)
    measured = bias.compute(truth, {"g": groups}, predicted).attribute("g")
    b = next(g for g in measured.groups if g.group == "b")
    assert b.rates["tpr"].value is None and b.rates["fnr"].value is None
    assert measured.summary["demographic_parity_difference"] == 0
    assert measured.summary["disparate_impact"] is None
    assert "no group has any positive prediction, so the ratio is undefined" in measured.notes
    assert "group 'b' has no actual positives, so its tpr is undefined" in measured.notes
    assert measured.summary["equalized_odds_difference"] is None  # only one group defines tpr


def test_one_group_with_enough_rows_compares_nothing() -> None:
    measured = bias.compute(
        [1, 0, 1], {"g": ["a", "a", "b"]}, [1, 1, 0], min_group_rows=2
    ).attribute("g")
    assert measured.summary["disparate_impact"] is None
    assert "1 group(s) have enough rows to compare; the differences and ratios need two" in (
        measured.notes
    )


def test_report_is_plain_json() -> None:
    import json

    truth, predicted, attributes = _data(5, rows=500)
    document = bias.compute(np.int64(1) == truth, attributes, predicted == 1).to_dict()
    assert json.loads(json.dumps(document)) == document
    assert set(document["attributes"]) == {"sex", "age_band"}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: bias.compute([1, 0], {"g": ["a"]}, [1, 0]), "has 1 values for 2 rows"),
        (lambda: bias.compute([1, 0], {"g": ["a", "b"]}, [1]), "1 predictions for 2 labels"),
        (lambda: bias.compute([1, 0], {}, [1, 0]), "at least one sensitive attribute"),
        (lambda: bias.compute([[1, 0]], {"g": ["a"]}), "one value per row"),
        (lambda: bias.compute([1], {"g": ["a"]}, min_group_rows=0), "at least 1"),
    ],
)
def test_bad_input_is_one_sentence(call: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        call()  # type: ignore[operator]


def test_pandas_categorical_codes_are_used_as_they_are() -> None:
    import pandas as pd

    values = pd.Series(["b", "a", None, "b"], dtype="category")
    codes, names = bias.codes_of(values)
    assert names == ["a", "b", "(missing)"]
    assert codes.tolist() == [1, 0, 2, 1]
