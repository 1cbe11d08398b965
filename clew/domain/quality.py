"""A model-quality check as a value: what to compute, the joined window it reads, its report.

``QualitySpec`` says how to judge a window (task, classes, allowed drop per metric, segment
columns); ``LabelledWindow`` is a window's captured predictions joined to the labels that have
arrived so far; ``evaluate`` turns the two, and the metrics recorded at training, into a
``CheckReport`` whose violations are ``model_quality_check``s. Labels arrive late, so the
report states its label coverage, and evaluating the same window again after more labels
arrive gives the new figures. Nothing here does I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from clew.domain.monitoring import CheckReport, Violation, Window
from clew.errors import InvalidInputError

if TYPE_CHECKING:  # numpy is imported when a window is scored, not when clew connects
    import numpy as np

CHECK = "model_quality"
TASKS = ("auto", "classification", "regression")
# Prefixes a training run commonly gives its evaluation metrics (``test_accuracy``...).
_RECORDED_PREFIXES = ("", "test_", "eval_", "val_", "validation_", "test.", "eval.", "val.")
_RECORDED_ALIASES: Mapping[str, tuple[str, ...]] = {
    "roc_auc": ("roc_auc", "auc"),
    "f1": ("f1", "f1_score"),
    "calibration_error": ("calibration_error", "ece"),
}


@dataclass(frozen=True)
class QualitySpec:
    """How to judge a window: ``margin`` is the drop from the metric recorded at training that
    is still allowed (absolute, in the metric's units), ``margins`` overrides it per metric."""

    task: str = "auto"
    classes: tuple[Any, ...] | None = None
    margin: float = 0.05
    margins: Mapping[str, float] = field(default_factory=dict)
    segments: tuple[str, ...] = ()
    min_labels: int = 1

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise InvalidInputError(
                f"task {self.task!r} is unknown; use one of {', '.join(TASKS)}."
            )
        for name, value in {"margin": self.margin, **self.margins}.items():
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise InvalidInputError(
                    f"the allowed drop for {name} must be a number of at least 0, not {value!r}."
                )
        if self.min_labels < 1:
            raise InvalidInputError(f"min_labels must be at least 1, not {self.min_labels}.")

    def margin_for(self, metric: str) -> float:
        return float(self.margins.get(metric, self.margin))

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "classes": list(self.classes) if self.classes is not None else None,
            "margin": self.margin,
            "margins": dict(self.margins),
            "segments": list(self.segments),
            "min_labels": self.min_labels,
        }


def spec_from_dict(data: Mapping[str, Any]) -> QualitySpec:
    """A ``QualitySpec`` back from ``QualitySpec.to_dict`` (a request body)."""
    classes = data.get("classes")
    return QualitySpec(
        task=data.get("task", "auto"),
        classes=tuple(classes) if classes is not None else None,
        margin=data.get("margin", 0.05),
        margins=dict(data.get("margins") or {}),
        segments=tuple(data.get("segments") or ()),
        min_labels=data.get("min_labels", 1),
    )


@dataclass(frozen=True)
class LabelledWindow:
    """A window's captured predictions and the labels that have arrived for them.

    ``predicted`` holds one prediction per labelled row (None for rows captured by
    ``predict_proba``, whose class is their most probable column); ``proba`` holds those rows'
    probabilities, marked by ``has_proba``.
    """

    window: Window
    rows: int
    truth: list[Any]
    predicted: list[Any]
    proba: np.ndarray | None
    has_proba: np.ndarray
    segments: Mapping[str, list[Any]] = field(default_factory=dict)

    @property
    def labelled(self) -> int:
        return len(self.truth)


def evaluate(data: LabelledWindow, spec: QualitySpec, recorded: Mapping[str, Any]) -> CheckReport:
    """The window's quality figures, compared with ``recorded`` (the training metrics)."""
    metrics: dict[str, Any] = {
        "predictions": data.rows,
        "labelled": data.labelled,
        "label_coverage": data.labelled / data.rows if data.rows else 0.0,
        "spec": spec.to_dict(),
    }
    if data.labelled < spec.min_labels:
        metrics["note"] = (
            f"{data.labelled} of {data.rows} predictions are labelled, fewer than "
            f"{spec.min_labels}; quality is judged once more labels arrive."
        )
        return CheckReport(CHECK, data.window, data.rows, metrics)
    task = task_of(data, spec)
    figures = _figures(data, spec, task, range(data.labelled))
    metrics.update(task=task, **figures)
    metrics["segments"] = _segment_figures(data, spec, task)
    compared = compare(figures, recorded, spec)
    metrics["recorded"] = {name: value for name, (value, _) in compared.items()}
    violations = tuple(violation for _, violation in compared.values() if violation is not None)
    return CheckReport(CHECK, data.window, data.rows, metrics, violations)


def task_of(data: LabelledWindow, spec: QualitySpec) -> str:
    """Classification when probabilities were captured or every value is a class-like value
    (text, booleans or whole numbers); otherwise regression."""
    if spec.task != "auto":
        return spec.task
    if data.proba is not None:
        return "classification"
    values = [*data.truth, *(value for value in data.predicted if value is not None)]
    return "classification" if all(_class_like(value) for value in values) else "regression"


def _class_like(value: Any) -> bool:
    if isinstance(value, bool | str | int):
        return True
    return isinstance(value, float) and value.is_integer()


def _figures(
    data: LabelledWindow, spec: QualitySpec, task: str, rows: Sequence[int]
) -> dict[str, Any]:
    from clew.domain import quality_metrics  # numpy: only when a window is scored

    truth = [data.truth[k] for k in rows]
    if task == "regression":
        predicted = [data.predicted[k] for k in rows]
        _require_numbers(truth, predicted)
        return quality_metrics.regression(truth, predicted)
    import numpy as np

    truth = [class_value(value) for value in truth]
    plain = [class_value(data.predicted[k]) for k in rows if not data.has_proba[k]]
    classes = classes_of(data, spec, truth, plain)
    predicted = [
        classes[int(np.argmax(data.proba[k]))]
        if data.proba is not None and data.has_proba[k]
        else class_value(data.predicted[k])
        for k in rows
    ]
    with_proba = [k for k in rows if data.has_proba[k]]
    proba = data.proba[with_proba] if data.proba is not None and with_proba else None
    proba_truth = [class_value(data.truth[k]) for k in with_proba]
    return quality_metrics.classification(truth, predicted, classes, proba, proba_truth)


def _require_numbers(truth: Sequence[Any], predicted: Sequence[Any]) -> None:
    for value in (*truth, *predicted):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidInputError(
                f"regression quality needs numeric labels and predictions, but got {value!r}; "
                "log numeric labels or check the model with task='classification'."
            )


def class_value(value: Any) -> Any:
    """A class label as compared: 1.0 and 1 are the same class."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def classes_of(
    data: LabelledWindow, spec: QualitySpec, truth: Sequence[Any], predicted: Sequence[Any]
) -> list[Any]:
    """The class order: the spec's, else 0..k-1 for k probability columns, else the sorted
    values seen (as scikit-learn orders ``classes_``)."""
    seen = {*truth, *predicted}
    if spec.classes is not None:
        classes = [class_value(value) for value in spec.classes]
        if data.proba is not None and data.proba.shape[1] != len(classes):
            raise InvalidInputError(
                f"the captured probabilities have {data.proba.shape[1]} columns but "
                f"{len(classes)} classes were given; pass one class per column."
            )
    elif data.proba is not None:
        classes = list(range(data.proba.shape[1]))
    else:
        classes = sorted(seen, key=lambda value: (type(value).__name__, value))
    unknown = sorted(str(value) for value in seen - set(classes))
    if unknown:
        raise InvalidInputError(
            f"labels or predictions {', '.join(unknown[:5])} are not among the classes "
            f"{classes}; pass classes=[...] in the order of the model's probability columns."
        )
    return classes


def _segment_figures(
    data: LabelledWindow, spec: QualitySpec, task: str
) -> dict[str, dict[str, Any]]:
    """The same figures per value of each segment column, for comparing groups."""
    result: dict[str, dict[str, Any]] = {}
    for column, values in data.segments.items():
        groups: dict[str, list[int]] = {}
        for row, value in enumerate(values):
            groups.setdefault("null" if value is None else str(value), []).append(row)
        result[column] = {
            value: {"labelled": len(rows), **_figures(data, spec, task, rows)}
            for value, rows in sorted(groups.items())
        }
    return result


def compare(
    figures: Mapping[str, Any], recorded: Mapping[str, Any], spec: QualitySpec
) -> dict[str, tuple[float, Violation | None]]:
    """Each figure with a metric recorded at training: that metric, and a violation when the
    window is worse by more than the allowed margin."""
    from clew.domain import quality_metrics

    result: dict[str, tuple[float, Violation | None]] = {}
    for metric, observed in figures.items():
        baseline = recorded_value(recorded, metric)
        if baseline is None or not isinstance(observed, float) or math.isnan(observed):
            continue
        margin = spec.margin_for(metric)
        worse = quality_metrics.drop(metric, observed, baseline)
        violation = None
        if worse > margin:
            higher = metric in quality_metrics.HIGHER_IS_BETTER
            limit = baseline - margin if higher else baseline + margin
            violation = Violation(
                feature_name=metric,
                constraint_check_type="model_quality_check",
                description=(
                    f"{metric} is {observed:.4g} over this window, "
                    f"{'below' if higher else 'above'} {limit:.4g} (recorded at training "
                    f"{baseline:.4g}, allowed drop {margin:g})"
                ),
                observed=observed,
                threshold=limit,
            )
        result[metric] = (baseline, violation)
    return result


def recorded_value(recorded: Mapping[str, Any], metric: str) -> float | None:
    """The training run's figure for ``metric``, under its own name or a common variant."""
    for name in _RECORDED_ALIASES.get(metric, (metric,)):
        for prefix in _RECORDED_PREFIXES:
            value = recorded.get(prefix + name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if not math.isnan(value):
                return float(value)
    return None
