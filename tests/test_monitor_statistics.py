"""Mergeable statistics and drift measures, checked against numpy and scipy.stats.

Tolerances: counts, extremes and categorical measures are exact (to 1e-9 for floats); mean and
variance after merging agree with a one-pass computation to 1e-9 relative; the binned KS
statistic lies within ``ks_bound`` below the exact one and the binned Wasserstein distance
within ``wasserstein_bound`` of it (both documented in clew/service/drift.py); on integer data,
whose every value is its own bin, the KS statistic and p-value equal scipy's exactly.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from clew.domain import statistics as st
from clew.errors import InvalidInputError
from clew.service import drift


def numeric(values: np.ndarray, edges: np.ndarray) -> st.NumericStats:
    finite, missing = st.numeric_values(pa.array(values))
    return st.summarise_numeric(finite, missing, edges)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(17)


def test_two_partitions_merge_into_the_statistics_of_their_union(
    rng: np.random.Generator,
) -> None:
    data = rng.normal(3.0, 2.0, 20_000)
    data[rng.integers(0, len(data), 300)] = np.nan
    edges = st.quantile_edges(data[np.isfinite(data)])
    whole = numeric(data, edges)
    merged = numeric(data[:7_001], edges).merge(numeric(data[7_001:], edges))
    assert np.array_equal(merged.counts, whole.counts)
    assert (merged.present, merged.missing) == (whole.present, whole.missing)
    assert (merged.minimum, merged.maximum) == (whole.minimum, whole.maximum)
    finite = data[np.isfinite(data)]
    assert merged.mean == pytest.approx(finite.mean(), rel=1e-9)
    assert merged.variance == pytest.approx(finite.var(), rel=1e-9)
    assert merged.total == pytest.approx(finite.sum(), rel=1e-9)
    assert merged.missing == int(np.isnan(data).sum())


def test_merging_an_empty_partition_changes_nothing(rng: np.random.Generator) -> None:
    data = rng.normal(size=1000)
    edges = st.quantile_edges(data)
    whole = numeric(data, edges)
    merged = whole.merge(numeric(np.array([np.nan, np.inf]), edges))
    assert merged.present == whole.present and merged.missing == 2
    assert merged.mean == whole.mean and merged.m2 == whole.m2


def test_statistics_over_different_edges_refuse_to_merge(rng: np.random.Generator) -> None:
    data = rng.normal(size=1000)
    with pytest.raises(InvalidInputError, match="same baseline"):
        numeric(data, st.quantile_edges(data)).merge(numeric(data, st.quantile_edges(data * 2)))


def test_categorical_counts_merge_and_fold_past_the_cap() -> None:
    left = st.summarise_categorical(pa.array(["a", "b", None, "a"]))
    right = st.summarise_categorical(pa.array(["b", "c", "a"]))
    merged = left.merge(right)
    assert dict(merged.counts) == {"a": 3, "b": 2, "c": 1}
    assert merged.missing == 1 and merged.other == 0
    capped = st.summarise_categorical(pa.array(["a", "a", "b", "c"]), cap=1)
    assert dict(capped.counts) == {"a": 2} and capped.other == 2
    assert capped.merge(st.summarise_categorical(pa.array(["b"]), cap=1)).present == 5


def test_dataset_statistics_survive_a_round_trip_and_merge(rng: np.random.Generator) -> None:
    data = rng.normal(size=500)
    edges = st.quantile_edges(data)
    part = st.DatasetStats(
        rows=500,
        features={"x": numeric(data, edges), "c": st.summarise_categorical(pa.array(["u"] * 500))},
    )
    again = st.DatasetStats.from_dict(part.to_dict())
    assert again.to_dict() == part.to_dict()
    both = st.merge_all([part, again])
    assert both.rows == 1000 and both.features["c"].present == 1000


def test_psi_matches_the_formula_over_baseline_deciles(rng: np.random.Generator) -> None:
    base = rng.normal(size=50_000)
    cur = rng.normal(0.3, 1.2, 30_000)
    edges = st.quantile_edges(base)
    b, c = numeric(base, edges), numeric(cur, edges)
    boundaries = st.coarse_groups(b.counts)
    # the same bins made directly from the data: numpy.histogram over the groups' edges
    outer = np.concatenate([[-np.inf], edges[boundaries[1:-1] - 1], [np.inf]])
    e = np.histogram(base, outer)[0] / len(base)
    a = np.histogram(cur, outer)[0] / len(cur)
    assert len(e) == 10 and np.all(np.abs(e - 0.1) < 0.005)
    expected = np.sum((a - e) * np.log(a / e))
    assert drift.numeric_psi(b, c) == pytest.approx(expected, abs=1e-9)
    assert drift.numeric_psi(b, b) == pytest.approx(0.0, abs=1e-12)


def test_ks_on_continuous_data_is_within_its_stated_bound(rng: np.random.Generator) -> None:
    base = rng.normal(size=40_000)
    cur = rng.normal(0.1, 1.1, 25_000)
    edges = st.quantile_edges(base)
    b, c = numeric(base, edges), numeric(cur, edges)
    statistic, _ = drift.ks(b, c)
    exact = stats.ks_2samp(base, cur, method="asymp")
    bound = drift.ks_bound(b, c)
    assert bound < 0.01  # 0.2% per bin of the baseline; the window's wider tails hold more
    assert statistic <= exact.statistic + 1e-12
    assert exact.statistic - statistic <= bound


def test_ks_on_integer_data_equals_scipy(rng: np.random.Generator) -> None:
    base = rng.integers(0, 120, 30_000).astype(float)
    cur = rng.integers(5, 125, 20_000).astype(float)
    edges = st.quantile_edges(base, bins=1000)  # every distinct value gets its own edge
    statistic, pvalue = drift.ks(numeric(base, edges), numeric(cur, edges))
    exact = stats.ks_2samp(base, cur, method="asymp")
    assert statistic == pytest.approx(exact.statistic, abs=1e-12)
    assert pvalue == pytest.approx(exact.pvalue, rel=1e-9, abs=1e-300)


def test_wasserstein_is_within_its_stated_bound(rng: np.random.Generator) -> None:
    base = rng.lognormal(size=40_000)
    cur = rng.lognormal(0.2, 1.0, 20_000)
    edges = st.quantile_edges(base)
    b, c = numeric(base, edges), numeric(cur, edges)
    exact = stats.wasserstein_distance(base, cur)
    assert abs(drift.wasserstein(b, c) - exact) <= drift.wasserstein_bound(b, c)
    assert abs(drift.wasserstein(b, c) - exact) / exact < 0.005  # 0.23% on this heavy tail


def test_categorical_measures_equal_scipy(rng: np.random.Generator) -> None:
    letters = np.array(list("abcdef"))
    base = letters[rng.choice(6, 5_000, p=[0.3, 0.2, 0.2, 0.1, 0.1, 0.1])]
    cur = letters[rng.choice(6, 3_000, p=[0.2, 0.2, 0.2, 0.2, 0.1, 0.1])]
    b = st.summarise_categorical(pa.array(base))
    c = st.summarise_categorical(pa.array(cur))
    table = np.array([[np.sum(base == x) for x in letters], [np.sum(cur == x) for x in letters]])
    expected = stats.chi2_contingency(table, correction=False)
    statistic, pvalue = drift.chi_squared(b, c)
    assert statistic == pytest.approx(expected.statistic, rel=1e-9)
    assert pvalue == pytest.approx(expected.pvalue, rel=1e-9)
    js = jensenshannon(table[0] / table[0].sum(), table[1] / table[1].sum(), base=2)
    assert drift.jensen_shannon(b, c) == pytest.approx(js, abs=1e-9)
    report = drift.categorical_drift(b, c).values
    p, q = table[0] / table[0].sum(), table[1] / table[1].sum()
    assert report["psi"] == pytest.approx(np.sum((q - p) * np.log(q / p)), abs=1e-9)
    assert report["linf"] == pytest.approx(np.max(np.abs(p - q)), abs=1e-12)


def test_a_new_category_in_the_window_counts_as_drift() -> None:
    b = st.summarise_categorical(pa.array(["a"] * 50 + ["b"] * 50))
    c = st.summarise_categorical(pa.array(["a"] * 50 + ["z"] * 50))
    values = drift.categorical_drift(b, c).values
    assert values["chi_squared_pvalue"] < 1e-6 and values["psi"] > 1.0


def test_drift_without_values_is_one_sentence(rng: np.random.Generator) -> None:
    data = rng.normal(size=100)
    edges = st.quantile_edges(data)
    with pytest.raises(InvalidInputError, match="has none for this feature"):
        drift.ks(numeric(data, edges), numeric(np.array([np.nan]), edges))


BLOCKED_SCIPY = """
import sys
sys.modules["scipy"] = None  # a plain `pip install clew`, without the monitor extra
import numpy as np
from clew.domain import statistics as st
from clew.errors import MissingExtraError
from clew.service import drift
values = np.arange(100.0)
edges = st.quantile_edges(values)
summary = st.summarise_numeric(values, 0, edges)
try:
    drift.ks(summary, summary)
except MissingExtraError as error:
    print(error)
"""


def test_drift_p_values_without_scipy_name_the_monitor_extra() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", BLOCKED_SCIPY], capture_output=True, text=True, timeout=120
    )
    assert done.stdout.strip() == (
        "a drift check needs the monitor extra: pip install 'clew[monitor]'"
    ), done.stderr


@pytest.mark.parametrize("shape", ["normal", "lognormal", "integers", "two clusters"])
def test_fast_binning_equals_searchsorted_even_on_the_edges(
    rng: np.random.Generator, shape: str
) -> None:
    data = {
        "normal": rng.normal(size=200_000),
        "lognormal": rng.lognormal(size=200_000),
        "integers": rng.integers(0, 50, 200_000).astype(float),
        "two clusters": np.concatenate([rng.normal(size=10_000), rng.normal(1e6, 1, 10_000)]),
    }[shape]
    edges = st.quantile_edges(data[:50_000])
    probes = np.concatenate(
        [data, edges, np.nextafter(edges, -np.inf), np.nextafter(edges, np.inf), [-1e300, 1e300]]
    )
    expected = np.searchsorted(edges, probes, side="right")
    assert np.array_equal(st.bin_index(probes, edges), expected)
