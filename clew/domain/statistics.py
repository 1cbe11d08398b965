"""Mergeable per-feature statistics: what a baseline and a window of captures are summarised as.

A window of a million captured predictions is read batch by batch, each batch summarised, and
the summaries merged, so memory stays bounded whatever the window's size, and partitions read
on different machines (Dask) merge into the statistics of their union. Merging is exact:
counts, minimum and maximum add up exactly, mean and variance combine with Chan's parallel
formulas (equal to a one-pass computation up to float rounding), and histograms over the same
bin edges add bin by bin.

Numeric features keep a fine histogram over *the baseline's* bin edges (quantiles of the
baseline, ``FINE_BINS`` of them), which is what the drift measures (PSI, Kolmogorov–Smirnov,
Wasserstein) are computed from; categorical features keep value counts, capped at
``CATEGORY_CAP`` values with the rest folded into an "other" count. Nothing here does I/O.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from clew.errors import InvalidInputError

FINE_BINS = 500
COARSE_BINS = 10
CATEGORY_CAP = 1000
GRID_CELLS_PER_EDGE = 16
MAX_STEPS = 4

Edges = np.ndarray[Any, np.dtype[np.float64]]
Counts = np.ndarray[Any, np.dtype[np.int64]]


@dataclass(frozen=True)
class NumericStats:
    """A numeric feature: counts, extremes, mean and M2 (Chan), and a histogram on fixed edges.

    ``edges`` are the interior bin edges (sorted, distinct); ``counts`` has one more entry than
    ``edges``: bin ``i`` holds values in ``[edges[i-1], edges[i])``, the first bin everything
    below ``edges[0]`` and the last everything from ``edges[-1]`` up; ``sums`` holds each bin's
    sum of values, which makes the Wasserstein distance exact wherever the two CDFs do not cross
    inside a bin. NaN and infinities count as missing, so the moments stay finite.
    """

    edges: Edges
    counts: Counts
    sums: np.ndarray[Any, np.dtype[np.float64]]
    present: int = 0
    missing: int = 0
    minimum: float = float("inf")
    maximum: float = float("-inf")
    mean: float = 0.0
    m2: float = 0.0
    total: float = 0.0
    integral: bool = True

    @property
    def variance(self) -> float:
        """The population variance (``numpy.var``'s default)."""
        return self.m2 / self.present if self.present else 0.0

    @property
    def std_dev(self) -> float:
        return float(np.sqrt(self.variance))

    def merge(self, other: NumericStats) -> NumericStats:
        """The statistics of both partitions' rows together (Chan et al.'s pairwise update)."""
        if not np.array_equal(self.edges, other.edges):
            raise InvalidInputError(
                "numeric statistics over different bin edges cannot be merged; "
                "summarise every partition against the same baseline."
            )
        n = self.present + other.present
        if n == 0:
            return replace(self, missing=self.missing + other.missing)
        delta = other.mean - self.mean
        mean = self.mean + delta * other.present / n
        m2 = self.m2 + other.m2 + delta * delta * self.present * other.present / n
        return NumericStats(
            edges=self.edges,
            counts=self.counts + other.counts,
            sums=self.sums + other.sums,
            present=n,
            missing=self.missing + other.missing,
            minimum=min(self.minimum, other.minimum),
            maximum=max(self.maximum, other.maximum),
            mean=mean,
            m2=m2,
            total=self.total + other.total,
            integral=self.integral and other.integral,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "numeric",
            "edges": self.edges.tolist(),
            "counts": self.counts.tolist(),
            "sums": self.sums.tolist(),
            "present": self.present,
            "missing": self.missing,
            "min": _finite_or_none(self.minimum),
            "max": _finite_or_none(self.maximum),
            "mean": self.mean,
            "m2": self.m2,
            "sum": self.total,
            "integral": self.integral,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NumericStats:
        return cls(
            edges=np.asarray(data["edges"], dtype=np.float64),
            counts=np.asarray(data["counts"], dtype=np.int64),
            sums=np.asarray(data["sums"], dtype=np.float64),
            present=int(data["present"]),
            missing=int(data["missing"]),
            minimum=float("inf") if data["min"] is None else float(data["min"]),
            maximum=float("-inf") if data["max"] is None else float(data["max"]),
            mean=float(data["mean"]),
            m2=float(data["m2"]),
            total=float(data["sum"]),
            integral=bool(data["integral"]),
        )


@dataclass(frozen=True)
class CategoricalStats:
    """A categorical feature: value counts, at most ``cap`` values, the rest counted as other."""

    counts: Mapping[str, int] = field(default_factory=dict)
    other: int = 0
    missing: int = 0
    cap: int = CATEGORY_CAP

    @property
    def present(self) -> int:
        return sum(self.counts.values()) + self.other

    def merge(self, other: CategoricalStats) -> CategoricalStats:
        """Both partitions' counts added; past the cap the rarest values fold into ``other``."""
        counts = dict(self.counts)
        for value, count in other.counts.items():
            counts[value] = counts.get(value, 0) + count
        kept, folded = _cap(counts, self.cap)
        return CategoricalStats(
            counts=kept,
            other=self.other + other.other + folded,
            missing=self.missing + other.missing,
            cap=self.cap,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "categorical",
            "counts": dict(self.counts),
            "other": self.other,
            "missing": self.missing,
            "cap": self.cap,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CategoricalStats:
        return cls(
            counts={str(k): int(v) for k, v in data["counts"].items()},
            other=int(data["other"]),
            missing=int(data["missing"]),
            cap=int(data.get("cap", CATEGORY_CAP)),
        )


FeatureStats = NumericStats | CategoricalStats


@dataclass(frozen=True)
class DatasetStats:
    """Every feature's statistics over the same rows, and how many rows there were."""

    rows: int
    features: Mapping[str, FeatureStats]

    def merge(self, other: DatasetStats) -> DatasetStats:
        """The union of two partitions; a feature only one side saw is kept as it is."""
        merged: dict[str, FeatureStats] = dict(self.features)
        for name, stats in other.features.items():
            mine = merged.get(name)
            merged[name] = stats if mine is None else merge_feature(mine, stats)
        return DatasetStats(rows=self.rows + other.rows, features=merged)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "features": {name: stats.to_dict() for name, stats in self.features.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetStats:
        features: dict[str, FeatureStats] = {}
        for name, stats in data["features"].items():
            features[name] = (
                NumericStats.from_dict(stats)
                if stats["kind"] == "numeric"
                else CategoricalStats.from_dict(stats)
            )
        return cls(rows=int(data["rows"]), features=features)


def merge_feature(left: FeatureStats, right: FeatureStats) -> FeatureStats:
    if isinstance(left, NumericStats) and isinstance(right, NumericStats):
        return left.merge(right)
    if isinstance(left, CategoricalStats) and isinstance(right, CategoricalStats):
        return left.merge(right)
    raise InvalidInputError("a numeric and a categorical summary of one feature cannot be merged.")


def merge_all(parts: Iterable[DatasetStats]) -> DatasetStats:
    """The statistics of every partition's rows together."""
    result = DatasetStats(rows=0, features={})
    for part in parts:
        result = result.merge(part)
    return result


# --- summarising arrays ------------------------------------------------------------------


def is_numeric(array: pa.Array | pa.ChunkedArray) -> bool:
    kind = array.type
    return bool(
        pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
    )


def numeric_values(array: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, int]:
    """The finite values of a numeric column as float64, and how many rows were missing."""
    values = float_values(array)
    keep = np.isfinite(values)
    if keep.all():
        return values, 0
    finite = values[keep]
    return finite, len(values) - len(finite)


def float_values(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A numeric column as float64, nulls as NaN, viewed straight from the Arrow buffer:
    pyarrow's ``to_numpy`` imports pandas (over a second of CPU) the first time it runs."""
    if isinstance(array, pa.ChunkedArray):
        array = array.chunk(0) if array.num_chunks == 1 else pa.concat_arrays(array.chunks)
    if pa.types.is_boolean(array.type):
        array = pc.cast(array, pa.int8())
    floats = pc.cast(array, pa.float64())
    if floats.null_count:
        floats = pc.fill_null(floats, float("nan"))
    data = floats.buffers()[1]
    if data is None:
        return np.zeros(0, dtype=np.float64)
    return np.frombuffer(data, dtype=np.float64, count=len(floats), offset=floats.offset * 8)


def quantile_edges(values: np.ndarray, bins: int = FINE_BINS) -> Edges:
    """Interior bin edges at the baseline's quantiles: each bin holds about 1/bins of it."""
    if len(values) == 0:
        return np.zeros(0, dtype=np.float64)
    probabilities = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    edges: Edges = np.unique(np.quantile(values, probabilities, method="lower"))
    if len(edges) == 0 or edges[0] > values.min():
        edges = np.unique(np.concatenate([[values.min()], edges]))
    return edges


def bin_index(values: np.ndarray, edges: Edges) -> np.ndarray:
    """``numpy.searchsorted(edges, values, side="right")``, about twice as fast on big batches.

    A uniform grid over the edges (``GRID_CELLS_PER_EDGE`` cells per edge) maps each value to
    the number of edges below the cell before its own (so float rounding of the cell can only
    start it low), and a few vectorised comparisons count the edges left between there and the
    value. Where the edges crowd into a few cells (heavy tails) more than ``MAX_STEPS``
    comparisons would be needed, and plain ``searchsorted`` answers instead.
    """
    count = len(edges)
    if count < 2 or len(values) < 4096 or not edges[-1] > edges[0]:
        return np.searchsorted(edges, values, side="right")
    grid = _grid(edges.tobytes())
    if grid is None:
        return np.searchsorted(edges, values, side="right")
    low, scale, table, steps = grid
    cells = len(table) - 2
    position = np.clip(np.floor((values - low) * scale), -1, cells).astype(np.intp) + 1
    bins = table[position]
    last = count - 1
    for _ in range(steps):
        bins += (bins <= last) & (values >= edges[np.minimum(bins, last)])
    return bins


@functools.lru_cache(maxsize=256)
def _grid(packed: bytes) -> tuple[float, float, np.ndarray, int] | None:
    """``bin_index``'s lookup table for one set of edges (a baseline feature's, the same for
    every batch of every window, so built once): the grid's origin and scale, the edge count
    before each cell, and the comparisons left; None when the edges crowd too much."""
    edges = np.frombuffer(packed, dtype=np.float64)
    count = len(edges)
    low, cells = float(edges[0]), GRID_CELLS_PER_EDGE * count
    scale = cells / (float(edges[-1]) - low)
    starts = low + (np.arange(cells + 2) - 2) / scale  # cell c (shifted by 1) begins a cell early
    table = np.searchsorted(edges, starts, side="right")
    table[0] = 0
    reach = np.searchsorted(edges, low + (np.arange(cells + 2) + 1) / scale, side="right")
    steps = int((reach - table)[1:].max())
    if steps > MAX_STEPS:
        return None
    table.flags.writeable = False
    return low, scale, table, steps


def summarise_numeric(
    values: np.ndarray,
    missing: int,
    edges: Edges,
    integral: bool | None = None,
    pivot: float | None = None,
) -> NumericStats:
    """One batch of finite float64 values (and its missing count) over ``edges``.

    ``integral`` is passed when the caller knows it (an integer column is integral; against a
    fractional baseline nobody asks), else it is computed. The moments are taken about
    ``pivot`` (the baseline's mean, near the batch's) so one pass of sums stays accurate.
    """
    bins = bin_index(values, edges)
    counts = np.bincount(bins, minlength=len(edges) + 1).astype(np.int64)
    sums = np.bincount(bins, weights=values, minlength=len(edges) + 1).astype(np.float64)
    if len(values) == 0:
        return NumericStats(edges=edges, counts=counts, sums=sums, missing=missing)
    n = len(values)
    if pivot is None:
        pivot = float(values[0])
    shifted = values - pivot
    first = float(shifted.sum())
    # Not ``np.dot``: a multi-threaded BLAS spins its threads for a dot of this size, costing
    # a hundred times its arithmetic in CPU on a busy machine.
    second = float(np.square(shifted, out=shifted).sum())
    return NumericStats(
        edges=edges,
        counts=counts,
        sums=sums,
        present=n,
        missing=missing,
        minimum=float(values.min()),
        maximum=float(values.max()),
        mean=pivot + first / n,
        m2=max(second - first * first / n, 0.0),
        total=float(sums.sum()),
        integral=bool(np.all(np.mod(values, 1.0) == 0.0)) if integral is None else integral,
    )


def summarise_categorical(
    array: pa.Array | pa.ChunkedArray, cap: int = CATEGORY_CAP
) -> CategoricalStats:
    """Value counts of one batch of a categorical column (values as strings)."""
    if not pa.types.is_string(array.type) and not pa.types.is_large_string(array.type):
        array = pc.cast(array, pa.string())
    missing = array.null_count
    counted = pc.value_counts(pc.drop_null(array))
    values = counted.field("values").to_pylist()
    numbers = counted.field("counts").to_pylist()
    kept, folded = _cap(dict(zip(values, numbers, strict=True)), cap)
    return CategoricalStats(counts=kept, other=folded, missing=missing, cap=cap)


def coarse_groups(baseline_counts: Counts, groups: int = COARSE_BINS) -> np.ndarray:
    """Boundaries (in fine-bin positions) of about ``groups`` bins of equal baseline mass.

    PSI and SageMaker's ten distribution buckets are computed over these groups of fine bins,
    so they come from the same histogram without a second pass over the data.
    """
    cumulative = np.cumsum(baseline_counts)
    total = cumulative[-1] if len(cumulative) else 0
    if total == 0:
        return np.array([0, len(baseline_counts)])
    targets = total * np.arange(1, groups) / groups
    cuts = np.searchsorted(cumulative, targets, side="left") + 1
    return np.unique(np.concatenate([[0], cuts, [len(baseline_counts)]]))


def regroup(counts: Counts, boundaries: np.ndarray) -> Counts:
    """Fine-bin counts summed into the groups ``coarse_groups`` found."""
    return np.add.reduceat(counts, boundaries[:-1]).astype(np.int64)


def _cap(counts: Mapping[str, int], cap: int) -> tuple[dict[str, int], int]:
    if len(counts) <= cap:
        return dict(counts), 0
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return dict(ordered[:cap]), sum(count for _, count in ordered[cap:])


def _finite_or_none(value: float) -> float | None:
    return value if np.isfinite(value) else None


def summarise_column(
    array: pa.Array | pa.ChunkedArray, reference: FeatureStats | None
) -> FeatureStats:
    """One column summarised the way ``reference`` (a baseline's feature) was, or, with no
    reference, as a new baseline whose bin edges are this column's own quantiles. A numeric
    column where the baseline was categorical is counted as strings, so it can be compared."""
    if isinstance(reference, CategoricalStats) or (reference is None and not is_numeric(array)):
        return summarise_categorical(array)
    if not is_numeric(array):
        raise InvalidInputError("a text column cannot be summarised over numeric bin edges.")
    values, missing = numeric_values(array)
    if reference is None:
        return summarise_numeric(values, missing, quantile_edges(values))
    integral = (
        True
        if pa.types.is_integer(array.type) or pa.types.is_boolean(array.type)
        else (None if reference.integral else False)
    )
    return summarise_numeric(values, missing, reference.edges, integral, reference.mean)


def profile_table(table: pa.Table) -> DatasetStats:
    """A baseline's statistics: every column of ``table`` over its own quantile edges."""
    return DatasetStats(
        rows=table.num_rows,
        features={name: summarise_column(table.column(name), None) for name in table.column_names},
    )
