"""serverlab.stats: HDR merging, bootstrap medians, comparisons, instability."""

from __future__ import annotations

import numpy as np
import pytest

from report_factories import encode, histogram_of, latency_samples
from serverlab.histograms import (
    StatsError,
    histogram_mean,
    latency_summary,
    merge_histograms,
    new_histogram,
    percentile_distribution,
)
from serverlab.stats import NO_CI_NOTE, NO_DIFFERENCE, compare_samples, median_ci, spread
from serverlab.terms import PERCENTILES, percentile_key


def within_hdr_precision(a: float, b: float) -> bool:
    """Equal within HDR's 3 significant digits (relative error about 0.1%)."""
    return abs(a - b) <= max(a, b) * 2e-3 + 1


def test_merged_histograms_equal_one_histogram_of_all_samples():
    first = latency_samples(2_000, 5_000, seed=1)
    second = latency_samples(20_000, 3_000, seed=2, sigma=0.8)
    merged = merge_histograms([encode(histogram_of(first)), encode(histogram_of(second))])
    combined = histogram_of(np.concatenate([first, second]))
    assert merged.get_total_count() == 8_000
    for p in (*PERCENTILES, 100.0):
        assert within_hdr_precision(merged.get_value_at_percentile(p), combined.get_value_at_percentile(p))
    # and the HDR p99 agrees with numpy's p99 of the raw samples, within precision
    raw_p99 = float(np.percentile(np.concatenate([first, second]), 99, method="inverted_cdf"))
    assert within_hdr_precision(merged.get_value_at_percentile(99), raw_p99)


def test_merge_skips_missing_and_rejects_garbage():
    assert merge_histograms([None, ""]).get_total_count() == 0
    with pytest.raises(StatsError, match="cannot be decoded"):
        merge_histograms(["not a histogram"])


def test_latency_summary_keys_and_values():
    samples = latency_samples(5_000, 4_000, seed=3)
    summary = latency_summary(histogram_of(samples))
    assert set(summary) == {percentile_key(p) for p in PERCENTILES} | {"max", "mean"}
    assert summary["p50"] <= summary["p90"] <= summary["p99"] <= summary["p99.9"] <= summary["max"]
    assert within_hdr_precision(summary["max"], float(samples.max()))
    assert summary["mean"] == pytest.approx(float(samples.mean()), rel=2e-3)
    assert latency_summary(new_histogram()) == {}


def test_histogram_mean_equals_hdrh_mean():
    for seed, sigma in ((5, 0.3), (6, 1.5)):
        hist = histogram_of(latency_samples(3_000, 3_000, seed=seed, sigma=sigma))
        assert histogram_mean(hist) == pytest.approx(hist.get_mean_value(), rel=1e-12)
    assert histogram_mean(new_histogram()) == 0.0


def test_percentile_distribution_is_monotonic_and_ends_at_max():
    hist = histogram_of(latency_samples(1_000, 10_000, seed=4))
    points = percentile_distribution(hist)
    ps = [p for p, _ in points]
    values = [v for _, v in points]
    assert ps == sorted(ps) and ps[0] == 0.0 and ps[-1] == 100.0
    assert values == sorted(values)
    assert values[-1] == hist.get_max_value()
    assert percentile_distribution(new_histogram()) == []


def test_median_ci_contains_the_true_median():
    rng = np.random.default_rng(7)
    sample = rng.normal(loc=1_000.0, scale=20.0, size=15)
    est = median_ci(sample)
    assert est.has_ci and est.n == 15 and est.note is None
    assert est.low < 1_000.0 < est.high
    assert est.low <= est.median <= est.high
    assert est.high - est.low < 60  # a clear, narrow shape gives a narrow interval


def test_median_ci_is_deterministic_for_a_seed():
    values = [10.0, 12.0, 11.0, 13.0, 9.5]
    assert median_ci(values) == median_ci(values)


def test_median_ci_single_repetition_has_no_interval():
    est = median_ci([42.0])
    assert est.median == 42.0 and est.low is None and est.high is None
    assert not est.has_ci and est.note == NO_CI_NOTE


def test_median_ci_degenerate_data_gives_zero_width_interval():
    est = median_ci([5.0, 5.0, 5.0])
    assert (est.median, est.low, est.high) == (5.0, 5.0, 5.0)


def test_median_ci_rejects_empty_and_nan():
    with pytest.raises(StatsError):
        median_ci([])
    with pytest.raises(StatsError):
        median_ci([1.0, float("nan")])


def test_two_times_faster_is_significant():
    rng = np.random.default_rng(11)
    old = rng.normal(1_000.0, 30.0, size=5)
    new = rng.normal(2_000.0, 60.0, size=5)
    result = compare_samples(old, new)
    assert result.significant
    assert result.low > 1.0
    assert result.text.startswith(f"{result.speedup:.2f}× faster [")
    assert 1.8 < result.speedup < 2.2


def test_slower_is_reported_with_inverted_factor():
    result = compare_samples([2_000.0, 2_050.0, 1_980.0], [1_000.0, 1_020.0, 990.0])
    assert result.significant and result.speedup < 1.0
    assert "× slower [" in result.text
    factor = float(result.text.split("×")[0])
    assert factor == pytest.approx(1.0 / result.speedup, abs=0.01)


def test_latency_lower_is_better():
    result = compare_samples([10.0, 11.0, 10.5], [5.0, 5.5, 5.2], higher_is_better=False)
    assert result.significant and "faster" in result.text


def test_identical_samples_no_significant_difference():
    values = [1_000.0, 1_040.0, 980.0, 1_010.0]
    result = compare_samples(values, list(values))
    assert not result.significant
    assert result.text == NO_DIFFERENCE
    assert result.low <= 1.0 <= result.high


def test_constant_samples_are_handled_without_scipy_warnings():
    same = compare_samples([5.0, 5.0], [5.0, 5.0])
    assert same.text == NO_DIFFERENCE
    double = compare_samples([5.0, 5.0], [10.0, 10.0])
    assert double.significant and double.text == "2.00× faster [2.00–2.00]"


def test_one_repetition_gives_plain_ratio():
    result = compare_samples([100.0], [132.0, 132.0])
    assert not result.significant and result.low is None
    assert result.text == f"1.32× faster ({NO_CI_NOTE})"


def test_comparison_never_claims_significance_on_bad_data():
    for old, new in (([], [1.0]), ([0.0, 0.0], [1.0, 2.0]), ([1.0, float("inf")], [1.0, 2.0])):
        result = compare_samples(old, new)
        assert not result.significant
        assert result.text.startswith("comparison could not be made")


def test_spread():
    assert spread([100.0, 100.0]) == 0.0
    assert spread([1.0]) is None
    assert spread([90.0, 100.0, 110.0]) == pytest.approx(0.2)
