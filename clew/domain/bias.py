"""Bias metrics per sensitive attribute, as numbers a validator can check by hand.

Pre-training metrics describe the labels (SageMaker Clarify's definitions, each group ``d``
against the rest of the rows ``a``): class imbalance ``CI = (n_a - n_d) / (n_a + n_d)`` and the
difference in proportions of labels ``DPL = q_a - q_d``. Post-training metrics describe the
predictions per group: selection rate, accuracy, true/false positive and false negative rates,
each with a Wilson score interval (closed form, honest for small groups and rates near 0 or 1,
where a bootstrap of a few rows is not), and across groups the demographic parity difference
and ratio (the ratio is the disparate impact of the four-fifths rule), the equalized odds
difference and the equal opportunity difference, defined as fairlearn defines them.

A group with fewer than ``min_group_rows`` rows is listed with its counts and intervals but
left out of the differences and ratios, and the report says so; a rate whose denominator is
empty (no actual positives in a group, say) is ``None`` with a note: nothing divides by zero.
Everything is counted with ``numpy.bincount`` over integer group codes, once per attribute.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from clew.errors import InvalidInputError

if TYPE_CHECKING:
    import numpy as np

MIN_GROUP_ROWS = 30
CONFIDENCE = 0.95
# The two-sided normal quantile for CONFIDENCE (no scipy in the domain layer).
_Z = 1.959963984540054

# The per-group rates: name -> (numerator count, denominator count) in ``_Counts``.
RATES = ("selection_rate", "accuracy", "tpr", "fpr", "fnr")
_RATE_WORDS = {
    "selection_rate": "rows",
    "accuracy": "rows",
    "tpr": "actual positives",
    "fnr": "actual positives",
    "fpr": "actual negatives",
}


@dataclass(frozen=True)
class Rate:
    """A proportion with its Wilson score interval; ``value`` is None when nothing was counted."""

    value: float | None
    low: float | None
    high: float | None
    successes: int
    trials: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "low": self.low,
            "high": self.high,
            "successes": self.successes,
            "trials": self.trials,
        }


@dataclass(frozen=True)
class GroupBias:
    """One group of one attribute: its size, label balance and (with predictions) its rates."""

    group: str
    rows: int
    too_few_rows: bool
    class_imbalance: float | None
    label_positive_rate: Rate
    dpl: float | None
    rates: Mapping[str, Rate] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "rows": self.rows,
            "too_few_rows": self.too_few_rows,
            "class_imbalance": self.class_imbalance,
            "label_positive_rate": self.label_positive_rate.to_dict(),
            "dpl": self.dpl,
            **{name: rate.to_dict() for name, rate in self.rates.items()},
        }


@dataclass(frozen=True)
class AttributeBias:
    """Every group of one sensitive attribute and the disparities between them."""

    attribute: str
    groups: tuple[GroupBias, ...]
    summary: Mapping[str, float | None]
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "attribute": self.attribute,
            **self.summary,
            "groups": [group.to_dict() for group in self.groups],
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class BiasMetrics:
    """Bias metrics of one data set for each sensitive attribute."""

    rows: int
    positive_label: Any
    min_group_rows: int
    post_training: bool
    attributes: tuple[AttributeBias, ...]

    def attribute(self, name: str) -> AttributeBias:
        for attribute in self.attributes:
            if attribute.attribute == name:
                return attribute
        raise InvalidInputError(f"the bias metrics cover no attribute {name!r}.")

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "positive_label": _plain(self.positive_label),
            "min_group_rows": self.min_group_rows,
            "confidence": CONFIDENCE,
            "post_training": self.post_training,
            "attributes": {a.attribute: a.to_dict() for a in self.attributes},
        }


def wilson(successes: int, trials: int) -> Rate:
    """The proportion ``successes / trials`` with its Wilson score interval at CONFIDENCE."""
    if trials <= 0:
        return Rate(None, None, None, successes, 0)
    p = successes / trials
    z2 = _Z * _Z
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = _Z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / (1 + z2 / trials)
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return Rate(p, low, high, successes, trials)


def compute(
    labels: Any,
    attributes: Mapping[str, Any],
    predictions: Any | None = None,
    *,
    positive_label: Any = 1,
    min_group_rows: int = MIN_GROUP_ROWS,
) -> BiasMetrics:
    """Pre-training metrics of ``labels`` and, with ``predictions``, post-training metrics,
    for each sensitive attribute in ``attributes`` (name -> one value per row)."""
    truth = _binary(labels, positive_label, "labels")
    predicted = None if predictions is None else _binary(predictions, positive_label, "predictions")
    if predicted is not None and len(predicted) != len(truth):
        raise InvalidInputError(
            f"there are {len(predicted)} predictions for {len(truth)} labels; pass one "
            "prediction per labelled row."
        )
    if not attributes:
        raise InvalidInputError("name at least one sensitive attribute to measure bias over.")
    if (
        isinstance(min_group_rows, bool)
        or not isinstance(min_group_rows, int)
        or min_group_rows < 1
    ):
        raise InvalidInputError(
            f"min_group_rows must be a whole number of at least 1 (got {min_group_rows!r})."
        )
    measured = tuple(
        _attribute(name, values, truth, predicted, min_group_rows)
        for name, values in attributes.items()
    )
    return BiasMetrics(len(truth), positive_label, min_group_rows, predicted is not None, measured)


def _binary(values: Any, positive_label: Any, what: str) -> np.ndarray:
    import numpy as np

    array = np.asarray(values)
    if array.ndim != 1:
        raise InvalidInputError(f"{what} must be one value per row (got shape {array.shape}).")
    if array.dtype == bool:
        return array
    try:
        return np.asarray(array == positive_label, dtype=bool)
    except (TypeError, ValueError) as error:
        raise InvalidInputError(
            f"{what} cannot be compared with the positive label {positive_label!r}."
        ) from error


def codes_of(values: Any) -> tuple[np.ndarray, list[str]]:
    """Integer group codes and group names; a pandas categorical keeps its own codes."""
    import numpy as np

    categorical = getattr(values, "cat", None)
    if categorical is not None:
        codes = np.asarray(categorical.codes)
        names = [str(name) for name in categorical.categories]
        if (codes < 0).any():  # a missing value is a group of its own, named so
            codes = np.where(codes < 0, len(names), codes)
            names.append("(missing)")
        return codes, names
    array = np.asarray(values)
    if array.ndim != 1:
        raise InvalidInputError(
            f"a sensitive attribute must be one value per row (got shape {array.shape})."
        )
    if array.dtype.kind == "O":
        array = array.astype(str)
    unique, codes = np.unique(array, return_inverse=True)
    return codes.reshape(-1), [str(name) for name in unique]


@dataclass
class _Counts:
    """Per-group counts of one attribute (arrays indexed by group code)."""

    rows: np.ndarray
    label_positive: np.ndarray
    predicted_positive: np.ndarray | None = None
    true_positive: np.ndarray | None = None
    false_positive: np.ndarray | None = None

    def rate_parts(self, group: int) -> dict[str, tuple[int, int]]:
        assert self.predicted_positive is not None
        assert self.true_positive is not None and self.false_positive is not None
        rows, positives = int(self.rows[group]), int(self.label_positive[group])
        negatives = rows - positives
        tp, fp = int(self.true_positive[group]), int(self.false_positive[group])
        true_negative = negatives - fp
        return {
            "selection_rate": (int(self.predicted_positive[group]), rows),
            "accuracy": (tp + true_negative, rows),
            "tpr": (tp, positives),
            "fpr": (fp, negatives),
            "fnr": (positives - tp, positives),
        }


def _count(
    codes: np.ndarray, groups: int, truth: np.ndarray, predicted: np.ndarray | None
) -> _Counts:
    import numpy as np

    def count(weights: np.ndarray | None = None) -> np.ndarray:
        return np.bincount(codes, weights=weights, minlength=groups).astype(np.int64)

    counts = _Counts(count(), count(truth))
    if predicted is not None:
        counts.predicted_positive = count(predicted)
        counts.true_positive = count(truth & predicted)
        counts.false_positive = count(~truth & predicted)
    return counts


def _attribute(
    name: str, values: Any, truth: np.ndarray, predicted: np.ndarray | None, min_rows: int
) -> AttributeBias:
    codes, names = codes_of(values)
    if len(codes) != len(truth):
        raise InvalidInputError(
            f"sensitive attribute {name!r} has {len(codes)} values for {len(truth)} rows; pass "
            "one value per row."
        )
    counts = _count(codes, len(names), truth, predicted)
    total, positives = len(truth), int(truth.sum())
    groups = tuple(
        _group(names[code], code, counts, total, positives, min_rows, predicted is not None)
        for code in range(len(names))
        if counts.rows[code] > 0
    )
    notes = [
        f"group {g.group!r} has {g.rows} row(s), fewer than {min_rows}: its rates are shown with "
        "their intervals but left out of the differences and ratios"
        for g in groups
        if g.too_few_rows
    ]
    summary, summary_notes = _summary(
        [g for g in groups if not g.too_few_rows], predicted is not None
    )
    notes += summary_notes
    notes += [
        f"group {g.group!r} has no {_RATE_WORDS[rate]}, so its {rate} is undefined"
        for g in groups
        for rate, value in g.rates.items()
        if value.value is None
    ]
    return AttributeBias(name, groups, summary, tuple(notes))


def _group(
    name: str,
    code: int,
    counts: _Counts,
    total: int,
    positives: int,
    min_rows: int,
    post_training: bool,
) -> GroupBias:
    rows, group_positives = int(counts.rows[code]), int(counts.label_positive[code])
    rest, rest_positives = total - rows, positives - group_positives
    rates = (
        {rate: wilson(*parts) for rate, parts in counts.rate_parts(code).items()}
        if post_training
        else {}
    )
    return GroupBias(
        group=name,
        rows=rows,
        too_few_rows=rows < min_rows,
        class_imbalance=(rest - rows) / total if total else None,
        label_positive_rate=wilson(group_positives, rows),
        dpl=(rest_positives / rest - group_positives / rows) if rest else None,
        rates=rates,
    )


def _summary(
    groups: Sequence[GroupBias], post_training: bool
) -> tuple[dict[str, float | None], list[str]]:
    """The disparities across ``groups`` (those with enough rows), and why any is undefined."""
    keys = (
        "demographic_parity_difference",
        "demographic_parity_ratio",
        "disparate_impact",
        "equalized_odds_difference",
        "equal_opportunity_difference",
    )
    summary: dict[str, float | None] = dict.fromkeys(keys)
    if not post_training:
        return {}, []
    if len(groups) < 2:
        return summary, [
            f"{len(groups)} group(s) have enough rows to compare; the differences and ratios "
            "need two"
        ]
    notes = []
    selection = _spread(groups, "selection_rate")
    if selection is not None:
        low, high = selection
        summary["demographic_parity_difference"] = high - low
        if high > 0:
            summary["demographic_parity_ratio"] = summary["disparate_impact"] = low / high
        else:
            notes.append("no group has any positive prediction, so the ratio is undefined")
    tpr, fpr = _spread(groups, "tpr"), _spread(groups, "fpr")
    if tpr is not None:
        summary["equal_opportunity_difference"] = tpr[1] - tpr[0]
    if tpr is not None and fpr is not None:
        summary["equalized_odds_difference"] = max(tpr[1] - tpr[0], fpr[1] - fpr[0])
    return summary, notes


def _spread(groups: Sequence[GroupBias], rate: str) -> tuple[float, float] | None:
    """The lowest and highest ``rate`` over the groups that define it (None: fewer than two)."""
    values = [v for g in groups if (v := g.rates[rate].value) is not None]
    return (min(values), max(values)) if len(values) >= 2 else None


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value JSON can hold."""
    import numpy as np

    return value.item() if isinstance(value, np.generic) else value
