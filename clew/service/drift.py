"""Drift measures between a baseline's statistics and a window's, from mergeable summaries.

Every measure is computed from the summaries in ``clew/domain/statistics.py`` (fine histograms
over the baseline's quantile edges, or value counts), never from raw rows, so a window of any
size costs the same to compare. Categorical measures are exact. Numeric measures are binned:

- **PSI** is defined over bins; ours are ``COARSE_BINS`` groups of equal baseline mass.
- **Kolmogorov–Smirnov**: the largest gap between the two empirical CDFs at the bin edges. The
  true statistic ``D`` satisfies ``D_binned <= D <= D_binned + max_i max(p_i, q_i)`` where
  ``p_i, q_i`` are the two samples' shares of fine bin ``i`` (inside a bin each CDF moves by
  at most its share). With 500 quantile bins each holds 0.2% of the baseline, so the bound is
  that small unless the window piles up in one bin (its tails past the baseline's); the p-value
  is Smirnov's asymptotic one, as ``scipy.stats.ks_2samp(method="asymp")`` computes it.
- **Wasserstein-1**: the area between the CDFs, bin by bin, from each bin's count and sum of
  values (the union's minimum and maximum are the outer edges). It is exact wherever the CDFs
  do not cross inside a bin; the true distance is always within ``sum_i width_i * (p_i + q_i)``
  over the bins where they may cross (``wasserstein_bound`` gives the looser sum over all).

scipy (the ``monitor`` extra) supplies only the two p-value distributions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from clew.domain.statistics import (
    CategoricalStats,
    NumericStats,
    coarse_groups,
    regroup,
)
from clew.errors import InvalidInputError
from clew.extras import require_extra

PSI_EPSILON = 1e-4
NUMERIC_METRICS = ("psi", "ks", "wasserstein")
CATEGORICAL_METRICS = ("psi", "chi_squared", "jensen_shannon", "linf")


@dataclass(frozen=True)
class Drift:
    """One feature's drift figures; ``values`` maps a measure's name to its figure."""

    kind: str
    values: Mapping[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **dict(self.values)}


def psi_from_counts(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index: sum over bins of (a - e) * ln(a / e), shares floored at 1e-4."""
    e = _shares(expected)
    a = _shares(actual)
    e = np.clip(e, PSI_EPSILON, None)
    a = np.clip(a, PSI_EPSILON, None)
    return float(np.sum((a - e) * np.log(a / e)))


def numeric_psi(baseline: NumericStats, current: NumericStats) -> float:
    boundaries = coarse_groups(baseline.counts)
    return psi_from_counts(
        regroup(baseline.counts, boundaries), regroup(current.counts, boundaries)
    )


def ks(baseline: NumericStats, current: NumericStats) -> tuple[float, float]:
    """The two-sample Kolmogorov–Smirnov statistic at the bin edges and its asymptotic p-value."""
    require_extra("monitor", "a drift check")
    from scipy.stats import distributions

    n, m = baseline.present, current.present
    _require_rows(n, m)
    gap = np.abs(np.cumsum(baseline.counts) / n - np.cumsum(current.counts) / m)
    statistic = float(gap.max())
    larger, smaller = max(n, m), min(n, m)
    en = larger * smaller / (larger + smaller)
    pvalue = float(np.clip(distributions.kstwo.sf(statistic, np.round(en)), 0.0, 1.0))
    return statistic, pvalue


def ks_bound(baseline: NumericStats, current: NumericStats) -> float:
    """How far below the exact KS statistic the binned one can be (see the module text)."""
    return float(np.max(np.maximum(_shares(baseline.counts), _shares(current.counts)), initial=0.0))


def wasserstein(baseline: NumericStats, current: NumericStats) -> float:
    """The first Wasserstein distance between the two binned distributions."""
    _require_rows(baseline.present, current.present)
    points, _, _ = _cdfs(baseline, current)
    gaps = _bin_integral(baseline, points) - _bin_integral(current, points)
    return float(np.sum(np.abs(gaps)))


def _bin_integral(stats: NumericStats, points: np.ndarray) -> np.ndarray:
    """The integral of one sample's CDF over each bin, exact from the bin's count and sum:
    over ``[a, b]`` holding share ``p`` with mean ``mu`` it is ``(b - a) F(a) + p (b - mu)``."""
    n = max(stats.present, 1)
    below = np.concatenate([[0.0], np.cumsum(stats.counts)[:-1] / n])
    integral: np.ndarray = np.diff(points) * below + stats.counts / n * points[1:] - stats.sums / n
    return integral


def wasserstein_bound(baseline: NumericStats, current: NumericStats) -> float:
    """How far the binned Wasserstein distance can be from the exact one."""
    points, _, _ = _cdfs(baseline, current)
    mass = _shares(baseline.counts) + _shares(current.counts)
    return float(np.sum(np.diff(points) * mass))


def numeric_drift(baseline: NumericStats, current: NumericStats) -> Drift:
    statistic, pvalue = ks(baseline, current)
    return Drift(
        "numeric",
        {
            "psi": numeric_psi(baseline, current),
            "ks": statistic,
            "ks_pvalue": pvalue,
            "wasserstein": wasserstein(baseline, current),
        },
    )


def categorical_tables(
    baseline: CategoricalStats, current: CategoricalStats
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Both samples' counts over the union of their values ("other" folded in as one value)."""
    values = sorted(set(baseline.counts) | set(current.counts))
    base = [baseline.counts.get(v, 0) for v in values]
    cur = [current.counts.get(v, 0) for v in values]
    if baseline.other or current.other:
        values.append("\x00other")
        base.append(baseline.other)
        cur.append(current.other)
    return values, np.asarray(base, dtype=np.float64), np.asarray(cur, dtype=np.float64)


def chi_squared(baseline: CategoricalStats, current: CategoricalStats) -> tuple[float, float]:
    """Pearson's chi-squared test of homogeneity on the 2 x k table (no continuity correction),
    as ``scipy.stats.chi2_contingency(table, correction=False)`` computes it."""
    require_extra("monitor", "a drift check")
    from scipy.stats import distributions

    _, base, cur = categorical_tables(baseline, current)
    _require_rows(int(base.sum()), int(cur.sum()))
    table = np.vstack([base, cur])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 0.0, 1.0
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    statistic = float(np.sum((table - expected) ** 2 / expected))
    return statistic, float(distributions.chi2.sf(statistic, table.shape[1] - 1))


def jensen_shannon(baseline: CategoricalStats, current: CategoricalStats) -> float:
    """The Jensen–Shannon distance (base 2, so between 0 and 1)."""
    _, base, cur = categorical_tables(baseline, current)
    p, q = _shares(base), _shares(cur)
    middle = (p + q) / 2.0
    divergence = (_kl(p, middle) + _kl(q, middle)) / 2.0
    return float(np.sqrt(max(divergence, 0.0)))


def categorical_drift(baseline: CategoricalStats, current: CategoricalStats) -> Drift:
    _, base, cur = categorical_tables(baseline, current)
    statistic, pvalue = chi_squared(baseline, current)
    return Drift(
        "categorical",
        {
            "psi": psi_from_counts(base, cur),
            "chi_squared": statistic,
            "chi_squared_pvalue": pvalue,
            "jensen_shannon": jensen_shannon(baseline, current),
            "linf": float(np.max(np.abs(_shares(base) - _shares(cur)), initial=0.0)),
        },
    )


def _cdfs(
    baseline: NumericStats, current: NumericStats
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both CDFs at the outer extremes and every edge: the points the integrals run over."""
    low = min(baseline.minimum, current.minimum)
    high = max(baseline.maximum, current.maximum)
    points = np.concatenate([[low], np.clip(baseline.edges, low, high), [high]])
    base = np.concatenate([[0.0], np.cumsum(baseline.counts) / max(baseline.present, 1)])
    cur = np.concatenate([[0.0], np.cumsum(current.counts) / max(current.present, 1)])
    return points, base, cur


def _shares(counts: np.ndarray) -> np.ndarray:
    total = float(np.sum(counts))
    return np.asarray(counts, dtype=np.float64) / total if total else np.zeros(len(counts))


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    mask = p > 0
    return float(np.sum(p[mask] * np.log2(p[mask] / q[mask])))


def _require_rows(baseline: int, current: int) -> None:
    if baseline == 0 or current == 0:
        raise InvalidInputError(
            "drift needs values on both sides; the baseline or the window has none for this "
            "feature."
        )
