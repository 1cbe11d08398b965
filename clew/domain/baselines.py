"""Baselines as SageMaker Model Monitor documents: ``statistics.json`` and ``constraints.json``.

A baseline is the statistics of the data a model version was trained on (or any dataset a user
names) plus the constraints a window of its captured predictions must meet. Both are kept in
SageMaker Model Monitor's file shapes, so a team can bring the files its SageMaker jobs wrote
and take ours to tools that read them. clew adds what those shapes cannot carry under keys
SageMaker readers ignore: the mergeable statistics with their fine histogram (top-level
``"clew"`` of statistics.json), the drift measure and threshold of each feature
(``monitoringConfigOverrides``), optional numeric bounds (``num_constraints``) and which
feature is the model's prediction. Nothing here does I/O.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from clew.domain.statistics import (
    CategoricalStats,
    DatasetStats,
    FeatureStats,
    NumericStats,
    coarse_groups,
    regroup,
)
from clew.errors import InvalidInputError

STATISTICS_KIND = "clew.monitoring.statistics/v1"
DRIFT_METRICS = {
    "numeric": ("psi", "ks", "ks_pvalue", "wasserstein"),
    "categorical": ("psi", "chi_squared", "chi_squared_pvalue", "jensen_shannon", "linf"),
}
# Measures where a *small* figure means drift (p-values); every other one drifts when large.
LOWER_IS_DRIFT = ("ks_pvalue", "chi_squared_pvalue")
SUGGESTED_DRIFT = ("psi", 0.2)
DOMAIN_LIMIT = 50  # categorical values kept as a domain constraint ("for small cardinality")
EDIT_KEYS = (
    "completeness",
    "drift_metric",
    "drift_threshold",
    "allowed_values",
    "lower_bound",
    "upper_bound",
    "is_non_negative",
)


@dataclass(frozen=True)
class Baseline:
    """One model version's baseline: which stored files hold it, and their contents.

    ``constraints_version`` counts edits: 1 is the suggested (or imported) file, each edit
    stores a new constraints artifact and the latest is what checks use.
    """

    model: str
    version: int
    statistics_artifact_id: str
    constraints_artifact_id: str
    constraints_version: int
    statistics: dict[str, Any]
    constraints: dict[str, Any]

    @property
    def stats(self) -> DatasetStats:
        return statistics_of(self.statistics)

    @property
    def prediction_feature(self) -> str | None:
        value = self.constraints.get("clew", {}).get("prediction_feature")
        return str(value) if value else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "statistics_artifact_id": self.statistics_artifact_id,
            "constraints_artifact_id": self.constraints_artifact_id,
            "constraints_version": self.constraints_version,
            "statistics": self.statistics,
            "constraints": self.constraints,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Baseline:
        return cls(
            model=str(data["model"]),
            version=int(data["version"]),
            statistics_artifact_id=str(data["statistics_artifact_id"]),
            constraints_artifact_id=str(data["constraints_artifact_id"]),
            constraints_version=int(data["constraints_version"]),
            statistics=dict(data["statistics"]),
            constraints=dict(data["constraints"]),
        )


# --- statistics.json -----------------------------------------------------------------------


def inferred_type(stats: FeatureStats) -> str:
    if isinstance(stats, CategoricalStats):
        return "String"
    return "Integral" if stats.integral else "Fractional"


def statistics_document(stats: DatasetStats) -> dict[str, Any]:
    """SageMaker's ``statistics.json`` for ``stats``, with clew's mergeable form under "clew"."""
    return {
        "version": 0,
        "dataset": {"item_count": stats.rows},
        "features": [_feature_statistics(name, s) for name, s in stats.features.items()],
        "clew": {"kind": STATISTICS_KIND, **stats.to_dict()},
    }


def _feature_statistics(name: str, stats: FeatureStats) -> dict[str, Any]:
    common = {"num_present": stats.present, "num_missing": stats.missing}
    if isinstance(stats, CategoricalStats):
        buckets = [{"value": value, "count": count} for value, count in stats.counts.items()]
        return {
            "name": name,
            "inferred_type": "String",
            "string_statistics": {
                "common": common,
                "distinct_count": len(stats.counts),
                "distribution": {"categorical": {"buckets": buckets}},
            },
        }
    return {
        "name": name,
        "inferred_type": inferred_type(stats),
        "numerical_statistics": {
            "common": common,
            "mean": stats.mean,
            "sum": stats.total,
            "std_dev": stats.std_dev,
            "min": stats.minimum if stats.present else None,
            "max": stats.maximum if stats.present else None,
            "distribution": {"kll": {"buckets": _buckets(stats)}},
        },
    }


def _buckets(stats: NumericStats) -> list[dict[str, float | int]]:
    """Ten buckets of about equal baseline mass (SageMaker materialises ten), from the fine
    histogram, bounded by the fine edges and the minimum and maximum."""
    if not stats.present:
        return []
    boundaries = coarse_groups(stats.counts)
    counts = regroup(stats.counts, boundaries)
    bounds = [stats.minimum, *stats.edges[boundaries[1:-1] - 1].tolist(), stats.maximum]
    return [
        {"lower_bound": float(bounds[i]), "upper_bound": float(bounds[i + 1]), "count": int(c)}
        for i, c in enumerate(counts)
    ]


def statistics_of(document: Mapping[str, Any]) -> DatasetStats:
    """The mergeable statistics of a ``statistics.json``: clew's own section when present,
    else rebuilt from SageMaker's ten buckets per numeric feature (coarser, still usable)."""
    own = document.get("clew")
    if isinstance(own, Mapping) and own.get("kind") == STATISTICS_KIND:
        return DatasetStats.from_dict(own)
    features: dict[str, FeatureStats] = {}
    for feature in _list(document, "features", "statistics.json"):
        name = _name(feature, "statistics.json")
        if "numerical_statistics" in feature:
            features[name] = _numeric_from_sagemaker(feature["numerical_statistics"], feature)
        elif "string_statistics" in feature:
            features[name] = _categorical_from_sagemaker(feature["string_statistics"])
        else:
            raise InvalidInputError(
                f"statistics.json feature {name!r} has neither numerical_statistics nor "
                "string_statistics; export it again from SageMaker or clew."
            )
    rows = document.get("dataset", {}).get("item_count")
    if not isinstance(rows, int):
        raise InvalidInputError("statistics.json has no dataset.item_count; add the row count.")
    return DatasetStats(rows=rows, features=features)


def _numeric_from_sagemaker(stats: Mapping[str, Any], feature: Mapping[str, Any]) -> NumericStats:
    buckets = stats.get("distribution", {}).get("kll", {}).get("buckets") or []
    edges = np.asarray([b["upper_bound"] for b in buckets[:-1]], dtype=np.float64)
    counts = np.asarray([int(b["count"]) for b in buckets] or [0], dtype=np.int64)
    middles = [(b["lower_bound"] + b["upper_bound"]) / 2.0 for b in buckets] or [0.0]
    present = int(stats["common"]["num_present"])
    std = float(stats.get("std_dev") or 0.0)
    return NumericStats(
        edges=edges,
        counts=counts,
        sums=(counts * np.asarray(middles, dtype=np.float64)).astype(np.float64),
        present=present,
        missing=int(stats["common"].get("num_missing", 0)),
        minimum=float(stats["min"]) if stats.get("min") is not None else math.inf,
        maximum=float(stats["max"]) if stats.get("max") is not None else -math.inf,
        mean=float(stats.get("mean") or 0.0),
        m2=std * std * present,
        total=float(stats.get("sum") or 0.0),
        integral=feature.get("inferred_type") == "Integral",
    )


def _categorical_from_sagemaker(stats: Mapping[str, Any]) -> CategoricalStats:
    buckets = stats.get("distribution", {}).get("categorical", {}).get("buckets") or []
    return CategoricalStats(
        counts={str(b["value"]): int(b["count"]) for b in buckets},
        missing=int(stats["common"].get("num_missing", 0)),
    )


# --- constraints.json ----------------------------------------------------------------------


def suggest_constraints(stats: DatasetStats, prediction_feature: str | None) -> dict[str, Any]:
    """Constraints the baseline itself meets: its completeness, its sign, its small domains,
    and PSI above 0.2 (the usual "significant shift") as drift."""
    features = []
    for name, feature in stats.features.items():
        entry: dict[str, Any] = {
            "name": name,
            "inferred_type": inferred_type(feature),
            "completeness": _completeness(feature),
            "monitoringConfigOverrides": {
                "drift_metric": SUGGESTED_DRIFT[0],
                "drift_threshold": SUGGESTED_DRIFT[1],
            },
        }
        if isinstance(feature, NumericStats):
            entry["num_constraints"] = {"is_non_negative": feature.minimum >= 0}
        elif len(feature.counts) <= DOMAIN_LIMIT and not feature.other:
            entry["string_constraints"] = {"domains": sorted(feature.counts)}
        features.append(entry)
    return {
        "version": 0,
        "features": features,
        "monitoring_config": {
            "evaluate_constraints": "Enabled",
            "emit_metrics": "Enabled",
            "datatype_check_threshold": 0.1,
            "domain_content_threshold": 0.1,
            "distribution_constraints": {
                "perform_comparison": "Enabled",
                "comparison_threshold": 0.1,
                "comparison_method": "Simple",
                "categorical_comparison_threshold": 0.1,
                "categorical_drift_method": "LInfinity",
            },
        },
        "clew": {"prediction_feature": prediction_feature},
    }


def _completeness(stats: FeatureStats) -> float:
    total = stats.present + stats.missing
    return stats.present / total if total else 1.0


def parse_document(text: str | bytes, what: str) -> dict[str, Any]:
    """A JSON object from a file a user hands us, or one sentence saying what is wrong."""
    try:
        document = json.loads(text)
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidInputError(
            f"{what} is not valid JSON ({error}); fix the file and import it again."
        ) from None
    if not isinstance(document, dict):
        raise InvalidInputError(f"{what} must be a JSON object with a 'features' list.")
    return document


def check_constraints(document: Mapping[str, Any], stats: DatasetStats) -> dict[str, Any]:
    """``constraints.json`` checked against the baseline's features: every feature it names
    must be one the statistics describe, and every figure must be in range."""
    features = _list(document, "features", "constraints.json")
    for feature in features:
        name = _name(feature, "constraints.json")
        if name not in stats.features:
            known = ", ".join(sorted(stats.features)) or "none"
            raise InvalidInputError(
                f"constraints.json names feature {name!r}, which the baseline does not have "
                f"(it has: {known}); remove it or rebuild the baseline with that column."
            )
        _check_feature(feature, stats.features[name])
    result = dict(copy.deepcopy(document))
    result.setdefault("monitoring_config", suggest_constraints(stats, None)["monitoring_config"])
    result.setdefault("clew", {"prediction_feature": None})
    prediction = result["clew"].get("prediction_feature")
    if prediction is not None and prediction not in stats.features:
        raise InvalidInputError(
            f"the prediction feature {prediction!r} is not a feature of the baseline."
        )
    return result


def _check_feature(feature: Mapping[str, Any], stats: FeatureStats) -> None:
    name = feature["name"]
    completeness = feature.get("completeness")
    if completeness is not None and not _fraction(completeness):
        raise InvalidInputError(
            f"completeness of {name!r} must be a number from 0 to 1, not {completeness!r}."
        )
    overrides = feature.get("monitoringConfigOverrides") or {}
    metric = overrides.get("drift_metric")
    kind = "categorical" if isinstance(stats, CategoricalStats) else "numeric"
    if metric is not None and metric not in DRIFT_METRICS[kind]:
        raise InvalidInputError(
            f"drift metric {metric!r} does not apply to {kind} feature {name!r}; use one of "
            f"{', '.join(DRIFT_METRICS[kind])}."
        )
    threshold = overrides.get("drift_threshold")
    if threshold is not None and not _number(threshold):
        raise InvalidInputError(f"drift_threshold of {name!r} must be a number.")
    bounds = feature.get("num_constraints") or {}
    for key in ("lower_bound", "upper_bound"):
        if bounds.get(key) is not None and not _number(bounds[key]):
            raise InvalidInputError(f"{key} of {name!r} must be a number.")
    domains = (feature.get("string_constraints") or {}).get("domains")
    if domains is not None and not (
        isinstance(domains, list) and all(isinstance(v, str) for v in domains)
    ):
        raise InvalidInputError(f"allowed values of {name!r} must be a list of strings.")


def apply_edits(
    document: Mapping[str, Any], edits: Mapping[str, Mapping[str, Any]], stats: DatasetStats
) -> dict[str, Any]:
    """A copy of ``constraints.json`` with per-feature ``edits`` applied, checked as a whole.

    ``edits`` maps a feature to the fields to change: completeness, drift_metric,
    drift_threshold, allowed_values, lower_bound, upper_bound, is_non_negative.
    """
    if not edits:
        raise InvalidInputError("no constraint edits were given; name a feature and a field.")
    result = copy.deepcopy(dict(document))
    by_name = {f["name"]: f for f in result.get("features", [])}
    for name, fields in edits.items():
        if name not in stats.features:
            known = ", ".join(sorted(stats.features))
            raise InvalidInputError(f"the baseline has no feature {name!r}; edit one of: {known}.")
        unknown = sorted(set(fields) - set(EDIT_KEYS))
        if unknown:
            raise InvalidInputError(
                f"cannot edit {unknown[0]!r} of {name!r}; editable: {', '.join(EDIT_KEYS)}."
            )
        feature = by_name.get(name)
        if feature is None:
            feature = {"name": name, "inferred_type": inferred_type(stats.features[name])}
            result.setdefault("features", []).append(feature)
            by_name[name] = feature
        _edit(feature, fields)
    return check_constraints(result, stats)


def _edit(feature: dict[str, Any], fields: Mapping[str, Any]) -> None:
    for key, value in fields.items():
        if key == "completeness":
            feature["completeness"] = value
        elif key in ("drift_metric", "drift_threshold"):
            feature.setdefault("monitoringConfigOverrides", {})[key] = value
        elif key == "allowed_values":
            feature["string_constraints"] = {"domains": value}
        else:
            feature.setdefault("num_constraints", {})[key] = value


def feature_constraints(document: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in document.get("features", [])}


def drift_rule(document: Mapping[str, Any], name: str, kind: str) -> tuple[str, float] | None:
    """The measure and threshold drift of ``name`` is judged by, or None when comparison is off.

    A feature's own ``drift_metric``/``drift_threshold`` win; without them SageMaker's rule
    applies: the KS distance ("Simple") for numeric features and the L-infinity distance for
    categorical ones, against the global comparison thresholds.
    """
    config = document.get("monitoring_config", {}).get("distribution_constraints", {})
    if config.get("perform_comparison", "Enabled") != "Enabled":
        return None
    overrides = feature_constraints(document).get(name, {}).get("monitoringConfigOverrides", {})
    if "drift_metric" in overrides:
        return str(overrides["drift_metric"]), float(overrides.get("drift_threshold", 0.2))
    if kind == "numeric":
        return "ks", float(
            overrides.get("comparison_threshold", config.get("comparison_threshold", 0.1))
        )
    return "linf", float(
        overrides.get("comparison_threshold", config.get("categorical_comparison_threshold", 0.1))
    )


def _list(document: Mapping[str, Any], key: str, what: str) -> list[dict[str, Any]]:
    value = document.get(key)
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise InvalidInputError(f"{what} must hold a {key!r} list of objects.")
    return value


def _name(feature: Mapping[str, Any], what: str) -> str:
    name = feature.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"every feature in {what} needs a 'name'.")
    return name


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _fraction(value: Any) -> bool:
    return _number(value) and 0.0 <= float(value) <= 1.0
