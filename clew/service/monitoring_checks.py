"""Data quality and drift checks over a window of captured predictions.

A window is read straight from the capture Parquet files its batches name (local or on the
object store): only the feature columns the baseline describes and the time column, only the
row groups whose time statistics overlap the window, one row group at a time, each summarised
into mergeable statistics (clew/domain/statistics.py) and merged. Memory is bounded by one
row group of the needed columns, whatever the window's size; the same summaries merge across
machines (``window_statistics`` of each partition, then ``DatasetStats.merge``).

``check_data_quality`` and ``check_drift`` take a ``Window`` and return a ``CheckReport``, the
shape the monitor runner calls every check in.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import select

from clew.domain import baselines as docs
from clew.domain.baselines import Baseline
from clew.domain.monitoring import CheckReport, Violation, Window
from clew.domain.statistics import (
    CategoricalStats,
    DatasetStats,
    FeatureStats,
    NumericStats,
    is_numeric,
    merge_feature,
    summarise_column,
)
from clew.errors import InvalidInputError
from clew.service import drift
from clew.service.baselines import BaselineService
from clew.store import schema

INPUTS = "inputs"
# The key under which a report names its baseline's statistics artifact (the monitor runner
# records it as an input of the run in lineage).
BASELINE_KEY = "baseline_artifact_id"
OUTPUT = "output"


@dataclass
class WindowStats:
    """What a window held: its statistics per baseline feature, and its columns' kinds.

    ``columns`` maps every feature column the window's files carry to "numeric" or "text";
    ``type_mismatch`` lists baseline numeric features the window carried as text.
    """

    stats: DatasetStats
    columns: dict[str, str] = field(default_factory=dict)
    type_mismatch: set[str] = field(default_factory=set)

    def merge(self, other: WindowStats) -> WindowStats:
        return WindowStats(
            stats=self.stats.merge(other.stats),
            columns={**self.columns, **other.columns},
            type_mismatch=self.type_mismatch | other.type_mismatch,
        )


@dataclass(frozen=True)
class Slice:
    """One capture file of a window, and which of its rows the window takes."""

    path: str
    tail: int | None = None  # only the last ``tail`` rows (a last-N window's oldest file)


class MonitoringService(BaselineService):
    """Baselines (``BaselineService``) and the checks the monitor runs over a window against
    the version's latest baseline."""

    def check_data_quality(self, window: Window) -> CheckReport:
        baseline = self.get_baseline(f"{window.model}/{window.version}")
        seen = self.window_statistics(window, baseline)
        metrics, violations = data_quality(baseline, seen)
        return _report("data_quality", window, seen, metrics, violations, baseline)

    def check_drift(self, window: Window) -> CheckReport:
        baseline = self.get_baseline(f"{window.model}/{window.version}")
        seen = self.window_statistics(window, baseline)
        metrics, violations = drift_report(baseline, seen)
        return _report("drift", window, seen, metrics, violations, baseline)

    def check_all(self, window: Window) -> list[CheckReport]:
        """Data quality and drift from one read of the window (what a monitor run does)."""
        baseline = self.get_baseline(f"{window.model}/{window.version}")
        seen = self.window_statistics(window, baseline)
        quality, quality_violations = data_quality(baseline, seen)
        moved, moved_violations = drift_report(baseline, seen)
        return [
            _report("data_quality", window, seen, quality, quality_violations, baseline),
            _report("drift", window, seen, moved, moved_violations, baseline),
        ]

    # --- reading a window ---------------------------------------------------------------

    def window_statistics(self, window: Window, baseline: Baseline) -> WindowStats:
        """The window's statistics, summarised row group by row group and merged."""
        reference = baseline.stats
        total: WindowStats | None = None
        for part in self.slices(window):
            for seen in self._summaries(part, window, reference, baseline.prediction_feature):
                total = seen if total is None else total.merge(seen)
        if total is None or total.stats.rows == 0:
            raise InvalidInputError(
                f"the window {window.key} holds no captured predictions; widen it, or check "
                "that the version is serving and its captures were flushed."
            )
        return total

    def slices(self, window: Window) -> list[Slice]:
        """The capture files of the window's version, oldest first; a last-N window keeps only
        the newest files that hold N rows."""
        version = self.registry.resolve(f"{window.model}/{window.version}")
        table = schema.capture_batches
        with self.store.db.read() as connection:
            rows = connection.execute(
                select(table.c.path, table.c.count)
                .where(table.c.model_version_id == version.id)
                .order_by(table.c.created_ms, table.c.id)
            ).all()
        if window.last_n is None:
            return [Slice(row.path) for row in rows]
        taken: list[Slice] = []
        remaining = window.last_n
        for row in reversed(rows):
            if remaining <= 0:
                break
            taken.append(Slice(row.path, remaining if row.count > remaining else None))
            remaining -= row.count
        return taken[::-1]

    def _summaries(
        self,
        part: Slice,
        window: Window,
        reference: DatasetStats,
        prediction: str | None,
    ) -> Iterator[WindowStats]:
        parquet = self.store.capture_files.open_parquet(part.path)
        schema_ = parquet.schema_arrow
        columns = _feature_columns(schema_, prediction)
        wanted = [name for name in columns if name in reference.features]
        paths = [_column_path(name, prediction) for name in wanted]
        groups = _row_groups(parquet, window, part.tail)
        kinds = {name: _kind(kind) for name, kind in columns.items()}
        for index, skip in groups:
            table = parquet.read_row_group(index, columns=[*paths, "time"])
            table = _in_window(table.slice(skip) if skip else table, window)
            yield self._summarise(table, wanted, prediction, reference, kinds)

    @staticmethod
    def _summarise(
        table: pa.Table,
        wanted: list[str],
        prediction: str | None,
        reference: DatasetStats,
        kinds: dict[str, str],
    ) -> WindowStats:
        features: dict[str, FeatureStats] = {}
        mismatch: set[str] = set()
        inputs = table.column(INPUTS) if INPUTS in table.column_names else None
        for name in wanted:
            if name == prediction:
                column = table.column(OUTPUT)
            else:
                assert inputs is not None
                column = pc.struct_field(inputs, name)
            base = reference.features[name]
            if isinstance(base, NumericStats) and not is_numeric(column):
                mismatch.add(name)
                continue
            features[name] = summarise_column(column, base)
        return WindowStats(DatasetStats(table.num_rows, features), dict(kinds), mismatch)


# --- evaluating -------------------------------------------------------------------------


def data_quality(baseline: Baseline, seen: WindowStats) -> tuple[dict[str, Any], list[Violation]]:
    """SageMaker's data quality checks of a window against the baseline's constraints."""
    constraints = docs.feature_constraints(baseline.constraints)
    config = baseline.constraints.get("monitoring_config", {})
    domain_threshold = float(config.get("domain_content_threshold", 0.1))
    reference = baseline.stats
    violations = [
        Violation(name, "missing_column_check", f"column {name} is in the baseline, not the window")
        for name in reference.features
        if name not in seen.columns
    ]
    violations += [
        Violation(name, "extra_column_check", f"column {name} is in the window, not the baseline")
        for name in seen.columns
        if name not in reference.features
    ]
    features: dict[str, Any] = {}
    for name in sorted(seen.type_mismatch):
        violations.append(
            Violation(name, "data_type_check", f"{name} should be numeric but the window has text")
        )
    for name, stats in seen.stats.features.items():
        rule = constraints.get(name, {})
        figures, found = _feature_quality(name, stats, reference.features[name], rule)
        figures.update(_domain(name, stats, rule, domain_threshold, found))
        features[name] = figures
        violations += found
    return {"features": features}, violations


def _feature_quality(
    name: str, stats: FeatureStats, base: FeatureStats, rule: Mapping[str, Any]
) -> tuple[dict[str, Any], list[Violation]]:
    total = stats.present + stats.missing
    completeness = stats.present / total if total else 1.0
    figures: dict[str, Any] = {"completeness": completeness, "inferred_type": _type(stats)}
    found: list[Violation] = []
    wanted = rule.get("completeness")
    if wanted is not None and completeness < float(wanted):
        found.append(
            Violation(
                name,
                "completeness_check",
                f"{name} is {completeness:.4f} complete, below the baseline's {float(wanted):.4f}",
                completeness,
                float(wanted),
            )
        )
    if isinstance(stats, NumericStats):
        figures.update({"min": stats.minimum, "max": stats.maximum, "mean": stats.mean})
        if rule.get("inferred_type", docs.inferred_type(base)) == "Integral" and not stats.integral:
            found.append(
                Violation(name, "data_type_check", f"{name} should be Integral but has fractions")
            )
        found += _bounds(name, stats, rule.get("num_constraints") or {})
    return figures, found


def _bounds(name: str, stats: NumericStats, bounds: Mapping[str, Any]) -> list[Violation]:
    found: list[Violation] = []
    if not stats.present:
        return found
    low = bounds.get("lower_bound")
    if bounds.get("is_non_negative") and (low is None or low < 0):
        low = 0.0
    if low is not None and stats.minimum < float(low):
        found.append(
            Violation(
                name,
                "numeric_bounds_check",
                f"{name} has values down to {stats.minimum}, below its bound {low}",
                stats.minimum,
                float(low),
            )
        )
    high = bounds.get("upper_bound")
    if high is not None and stats.maximum > float(high):
        found.append(
            Violation(
                name,
                "numeric_bounds_check",
                f"{name} has values up to {stats.maximum}, above its bound {high}",
                stats.maximum,
                float(high),
            )
        )
    return found


def _domain(
    name: str,
    stats: FeatureStats,
    rule: Mapping[str, Any],
    threshold: float,
    found: list[Violation],
) -> dict[str, Any]:
    domain = (rule.get("string_constraints") or {}).get("domains")
    if not isinstance(stats, CategoricalStats) or domain is None:
        return {}
    allowed = set(domain)
    outside = {v: c for v, c in stats.counts.items() if v not in allowed}
    share = (sum(outside.values()) + stats.other) / stats.present if stats.present else 0.0
    if share > threshold:
        examples = ", ".join(sorted(outside)[:5])
        found.append(
            Violation(
                name,
                "categorical_values_check",
                f"{share:.2%} of {name} is outside the baseline's values (e.g. {examples})",
                share,
                threshold,
            )
        )
    return {"outside_domain": share, "new_values": sorted(outside)[:20]}


def drift_report(baseline: Baseline, seen: WindowStats) -> tuple[dict[str, Any], list[Violation]]:
    """Every drift measure per feature (and the prediction), judged by each feature's rule."""
    reference = baseline.stats
    features: dict[str, Any] = {}
    violations: list[Violation] = []
    for name, stats in seen.stats.features.items():
        base = reference.features[name]
        if not stats.present or not base.present:
            continue
        figures = _drift(base, stats)
        rule = docs.drift_rule(baseline.constraints, name, figures.kind)
        entry: dict[str, Any] = figures.to_dict()
        if rule is not None:
            metric, threshold = rule
            value = figures.values[metric]
            drifted = value < threshold if metric in docs.LOWER_IS_DRIFT else value > threshold
            entry.update({"metric": metric, "threshold": threshold, "drifted": drifted})
            if drifted:
                violations.append(
                    Violation(
                        name,
                        "baseline_drift_check",
                        f"{name} drifted: {metric} is {value:.4g}, threshold {threshold:.4g}",
                        value,
                        threshold,
                    )
                )
        entry["is_prediction"] = name == baseline.prediction_feature
        features[name] = entry
    return {"features": features}, violations


def _drift(base: FeatureStats, stats: FeatureStats) -> drift.Drift:
    if isinstance(base, NumericStats) and isinstance(stats, NumericStats):
        return drift.numeric_drift(base, stats)
    if isinstance(base, CategoricalStats) and isinstance(stats, CategoricalStats):
        return drift.categorical_drift(base, stats)
    merge_feature(base, stats)  # raises the one sentence for mixed kinds
    raise AssertionError("unreachable")


# --- the capture file layout ----------------------------------------------------------------


def _feature_columns(schema_: pa.Schema, prediction: str | None) -> dict[str, pa.DataType]:
    """The window's feature columns: the inputs' fields, and the output as the prediction."""
    columns: dict[str, pa.DataType] = {}
    index = schema_.get_field_index(INPUTS)
    if index >= 0 and pa.types.is_struct(schema_.field(index).type):
        struct = schema_.field(index).type
        for position in range(struct.num_fields):
            child = struct.field(position)
            columns[child.name] = child.type
    if prediction is not None and schema_.get_field_index(OUTPUT) >= 0:
        columns[prediction] = schema_.field(OUTPUT).type
    return columns


def _column_path(name: str, prediction: str | None) -> str:
    return OUTPUT if name == prediction else f"{INPUTS}.{name}"


def _kind(kind: pa.DataType) -> str:
    numeric = pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
    return "numeric" if numeric else "text"


def _type(stats: FeatureStats) -> str:
    return docs.inferred_type(stats)


def _row_groups(parquet: pq.ParquetFile, window: Window, tail: int | None) -> list[tuple[int, int]]:
    """(row group, rows to skip at its start) for the groups the window may need: groups whose
    time range misses the window are pruned by their statistics; a tail keeps the last rows."""
    metadata = parquet.metadata
    time_index = parquet.schema_arrow.get_field_index("time")
    chosen: list[tuple[int, int]] = []
    sizes = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    start_row = sum(sizes) - tail if tail is not None else 0
    offset = 0
    for index, size in enumerate(sizes):
        first, offset = offset, offset + size
        if offset <= start_row or not _overlaps(metadata.row_group(index), time_index, window):
            continue
        chosen.append((index, max(0, start_row - first)))
    return chosen


def _overlaps(group: Any, time_index: int, window: Window) -> bool:
    if window.start_ms is None and window.end_ms is None:
        return True
    stats = group.column(time_index).statistics
    if stats is None or not stats.has_min_max:
        return True
    low = _as_ms(stats.min)
    high = _as_ms(stats.max)
    if window.start_ms is not None and high < window.start_ms:
        return False
    return not (window.end_ms is not None and low >= window.end_ms)


def _as_ms(value: Any) -> int:
    if hasattr(value, "timestamp"):
        return int(value.timestamp() * 1000)
    return int(value)


def _in_window(table: pa.Table, window: Window) -> pa.Table:
    if window.start_ms is None and window.end_ms is None:
        return table
    times = np.asarray(pc.cast(table.column("time"), pa.int64()).to_numpy())
    keep = np.ones(len(times), dtype=bool)
    if window.start_ms is not None:
        keep &= times >= window.start_ms
    if window.end_ms is not None:
        keep &= times < window.end_ms
    return table if keep.all() else table.filter(pa.array(keep))


def _report(
    check: str,
    window: Window,
    seen: WindowStats,
    metrics: Mapping[str, Any],
    violations: list[Violation],
    baseline: Baseline,
) -> CheckReport:
    """A report naming the baseline it compared against, so the monitor run's lineage records
    that baseline as an input."""
    named = {**metrics, BASELINE_KEY: baseline.statistics_artifact_id}
    return CheckReport(check, window, seen.stats.rows, named, tuple(violations))
