"""Data quality and drift checks over a window of captured predictions.

A window is read straight from the capture Parquet files its batches name (local or on the
object store): only the feature columns the baseline describes and the time column, only the
row groups whose time statistics overlap the window, one row group at a time, each summarised
into mergeable statistics (clew/domain/statistics.py) and merged. Memory is bounded by a row
group of the needed columns per reading thread, whatever the window's size. The files are read
as partitions (clew/service/monitoring_partitions.py): on two local threads, or on the
workers of a Dask cluster when a scheduler is given, with the same statistics either way.

``check_data_quality`` and ``check_drift`` take a ``Window`` and return a ``CheckReport``, the
shape the monitor runner calls every check in.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import numpy as np
from sqlalchemy import select

from clew.domain import baselines as docs
from clew.domain.baselines import Baseline
from clew.domain.monitoring import CheckReport, Violation, Window
from clew.domain.statistics import (
    CategoricalStats,
    FeatureStats,
    NumericStats,
    merge_feature,
)
from clew.errors import InvalidInputError
from clew.service import drift
from clew.service.baselines import BaselineService
from clew.service.monitoring_partitions import (
    CaptureSource,
    Slice,
    WindowStats,
    capture_times,
    scheduler_from_environment,
    summarise_dask,
    summarise_file,
    summarise_local,
)
from clew.store import schema
from clew.store.captures import LocalCaptureFiles, ObjectCaptureFiles

# The key under which a report names its baseline's statistics artifact (the monitor runner
# records it as an input of the run in lineage).
BASELINE_KEY = "baseline_artifact_id"


class MonitoringService(BaselineService):
    """Baselines (``BaselineService``) and the checks the monitor runs over a window against
    the version's latest baseline."""

    def check_data_quality(self, window: Window, scheduler: Any = None) -> CheckReport:
        baseline = self.get_baseline(f"{window.model}/{window.version}")
        seen = self.window_statistics(window, baseline, scheduler)
        metrics, violations = data_quality(baseline, seen)
        return _report("data_quality", window, seen, metrics, violations, baseline)

    def check_drift(self, window: Window, scheduler: Any = None) -> CheckReport:
        baseline = self.get_baseline(f"{window.model}/{window.version}")
        seen = self.window_statistics(window, baseline, scheduler)
        metrics, violations = drift_report(baseline, seen)
        return _report("drift", window, seen, metrics, violations, baseline)

    def check_all(self, window: Window, scheduler: Any = None) -> list[CheckReport]:
        """Data quality and drift from one read of the window (what a monitor run does).

        ``scheduler`` (a Dask scheduler's address or a ``distributed.Client``; by default the
        operator's ``CLEW_MONITOR_DASK_SCHEDULER``, if set) has the window's files read by that
        cluster's workers instead of this process."""
        baseline = self.get_baseline(f"{window.model}/{window.version}")
        seen = self.window_statistics(window, baseline, scheduler)
        quality, quality_violations = data_quality(baseline, seen)
        moved, moved_violations = drift_report(baseline, seen)
        return [
            _report("data_quality", window, seen, quality, quality_violations, baseline),
            _report("drift", window, seen, moved, moved_violations, baseline),
        ]

    # --- reading a window ---------------------------------------------------------------

    def window_statistics(
        self, window: Window, baseline: Baseline, scheduler: Any = None
    ) -> WindowStats:
        """The window's statistics: its files summarised as partitions, merged in file order."""
        parts = self.slices(window)
        reference, prediction = baseline.stats, baseline.prediction_feature
        scheduler = scheduler if scheduler is not None else scheduler_from_environment()
        if scheduler is None:
            files = self.store.capture_files
            read = partial(
                summarise_file, files, window=window, reference=reference, prediction=prediction
            )
            total = summarise_local(parts, read)
        else:
            total = summarise_dask(
                scheduler, self.capture_source(), parts, window, reference, prediction
            )
        if total is None or total.stats.rows == 0:
            raise InvalidInputError(
                f"the window {window.key} holds no captured predictions; widen it, or check "
                "that the version is serving and its captures were flushed."
            )
        return total

    def pin_last_n(self, window: Window) -> Window:
        """A last-N window pinned to the time range its N newest predictions span now (from
        the N-th newest prediction's time to just after the newest's, within the window's own
        bounds), still taking the newest N inside it: the rows of one call share a time.

        A monitor run is keyed on its window, so pinned it is the same run until newer
        predictions arrive, and then a new one. A window with no captures is returned as it
        is (the checks then say it is empty)."""
        if window.last_n is None:
            return window
        times = self._newest_times(window, window.last_n)
        if len(times) == 0:
            return window
        start, end = int(times.min()), int(times.max()) + 1
        return Window(window.model, window.version, start, end, window.last_n)

    def _newest_times(self, window: Window, count: int) -> np.ndarray:
        """The ``count`` newest capture times (ms) in the window's bounds. Batches are read
        newest first, only their time column; a batch recorded before the newest times seen
        so far holds none newer (a row is captured before its batch is), so reading stops."""
        version = self.registry.resolve(f"{window.model}/{window.version}")
        table = schema.capture_batches
        with self.store.db.read() as connection:
            rows = connection.execute(
                select(table.c.path, table.c.created_ms)
                .where(table.c.model_version_id == version.id)
                .order_by(table.c.created_ms.desc(), table.c.id.desc())
            ).all()
        bounds = Window(window.model, window.version, window.start_ms, window.end_ms)
        kept = np.zeros(0, dtype=np.int64)
        for row in rows:
            if len(kept) >= count and row.created_ms < kept.min():
                break
            times = capture_times(self.store.capture_files, Slice(row.path), bounds)
            kept = np.concatenate([kept, times])
            if len(kept) > count:
                kept = np.partition(kept, len(kept) - count)[-count:]
        return kept

    def capture_source(self) -> CaptureSource:
        """Where this store's capture files are, as a Dask worker opens them."""
        files = self.store.capture_files
        if isinstance(files, ObjectCaptureFiles):
            return CaptureSource(files.location, files.storage_options)
        assert isinstance(files, LocalCaptureFiles)
        return CaptureSource(str(files.root.resolve()))

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


def _type(stats: FeatureStats) -> str:
    return docs.inferred_type(stats)


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
