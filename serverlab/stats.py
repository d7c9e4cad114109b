"""Statistics for results: medians with bootstrap confidence intervals, comparisons of
two variants, and an instability check; merged latency histograms are in
:mod:`serverlab.histograms`.

Nothing here hand-rolls percentile or resampling math:

* latency percentiles come from HdrHistogram (the ``hdrh`` package), which merges
  histograms recorded in several load-generator processes exactly (within its
  3-significant-digit precision), unlike averaging per-process percentiles;
* confidence intervals come from :func:`scipy.stats.bootstrap` (the percentile
  bootstrap of Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993, ch. 13;
  https://docs.scipy.org/doc/scipy/reference/generated/scipy.stats.bootstrap.html).

Why the median and the percentile method: a lab run has few repetitions (often
3 to 5), one of which may be disturbed by another program; the median ignores
one outlier where the mean does not. The BCa method needs a jackknife estimate of
acceleration that is unstable (and warns) for the median of so few values, so the
percentile method is used. With n < 10 the percentile interval of a median is
close to [min, max] of the repetitions and tends to be too narrow rather than too
wide: read it as "the repetitions ranged about this much", not as a guarantee.

Units: whatever the caller passes (RPS, seconds, ...) except where a name ends in
``_us`` (microseconds).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
from scipy import stats as scipy_stats

from serverlab import LabError

#: Confidence level of every interval in the reports.
CONFIDENCE_LEVEL = 0.95
#: Bootstrap resamples: 2000 gives stable 95% percentile intervals (Efron & Tibshirani ch. 19).
N_RESAMPLES = 2000
#: Seed of the bootstrap's random generator, so a report is a pure function of its results.
DEFAULT_SEED = 20_240_601
#: Repetition spread ((max - min) / median) above which a cell is reported as unstable.
INSTABILITY_THRESHOLD = 0.10


class StatsError(LabError):
    """A histogram could not be decoded, or a statistic was asked of no data or of samples that
    are not finite numbers (the message says which)."""


NO_CI_NOTE = "1 repetition: no confidence interval"
NO_DIFFERENCE = "no significant difference"


@dataclass(frozen=True)
class Estimate:
    """A median over repetitions with its bootstrap confidence interval.

    :param median: median of the samples (same unit as the samples).
    :param low: lower bound of the interval; ``None`` when no interval can be given.
    :param high: upper bound of the interval; ``None`` when no interval can be given.
    :param n: number of samples (repetitions).
    :param samples: the samples themselves, in the order given.
    :param note: why there is no interval (e.g. :data:`NO_CI_NOTE`), or ``None``.
    """

    median: float
    low: float | None
    high: float | None
    n: int
    samples: tuple[float, ...]
    note: str | None = None

    @property
    def has_ci(self) -> bool:
        """Whether a confidence interval is available."""
        return self.low is not None and self.high is not None


def _clean(values: Iterable[Any]) -> np.ndarray:
    data = np.asarray([float(v) for v in values], dtype=float)
    if data.size and not np.all(np.isfinite(data)):
        raise StatsError("samples must be finite numbers")
    return data


def _run_bootstrap(data: tuple[np.ndarray, ...], statistic: Any, *, paired: bool, seed: int,
                   n_resamples: int, confidence_level: float) -> tuple[float, float]:
    """Call :func:`scipy.stats.bootstrap` (percentile method) and return a finite interval.

    Any warning scipy emits (e.g. ``DegenerateDataWarning``) is treated as an
    error: an interval that scipy itself doubts is not reported.

    :raises StatsError: when scipy raises, warns, or returns a non-finite bound.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            result = scipy_stats.bootstrap(
                data, statistic, n_resamples=n_resamples, vectorized=True, paired=paired,
                confidence_level=confidence_level, method="percentile",
                rng=np.random.default_rng(seed),
            )
        except Exception as err:
            raise StatsError(f"bootstrap failed: {err}") from None
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):
        raise StatsError("bootstrap gave a non-finite interval")
    return low, high


def median_ci(values: Iterable[float], *, seed: int = DEFAULT_SEED, n_resamples: int = N_RESAMPLES,
              confidence_level: float = CONFIDENCE_LEVEL) -> Estimate:
    """Median of repetitions with a percentile-bootstrap confidence interval.

    Method: resample the repetitions with replacement ``n_resamples`` times
    (:func:`scipy.stats.bootstrap`, ``method="percentile"``, generator
    ``np.random.default_rng(seed)``) and take the 2.5th and 97.5th percentiles of
    the resampled medians (Efron & Tibshirani 1993, §13.3).

    Special cases: one sample gives no interval (``low``/``high`` ``None``, ``note``
    :data:`NO_CI_NOTE`); equal samples give the zero-width interval [v, v] without
    calling scipy (which would warn of degenerate data); if scipy fails, the
    interval is ``None`` and ``note`` says why.

    :param values: one figure per repetition (any unit; e.g. RPS).
    :param seed: seed of the resampling generator.
    :param n_resamples: bootstrap resamples.
    :param confidence_level: e.g. 0.95.
    :return: an :class:`Estimate`.
    :raises StatsError: if ``values`` is empty or not finite.
    """
    data = _clean(values)
    if data.size == 0:
        raise StatsError("no samples: a median needs at least one repetition")
    median = float(np.median(data))
    samples = tuple(float(v) for v in data)
    if data.size < 2:
        return Estimate(median, None, None, 1, samples, NO_CI_NOTE)
    if np.all(data == data[0]):
        return Estimate(median, median, median, int(data.size), samples, None)
    try:
        low, high = _run_bootstrap((data,), np.median, paired=False, seed=seed,
                                   n_resamples=n_resamples, confidence_level=confidence_level)
    except StatsError as err:
        return Estimate(median, None, None, int(data.size), samples, f"no confidence interval: {err}")
    return Estimate(median, low, high, int(data.size), samples, None)


@dataclass(frozen=True)
class SampleComparison:
    """How a new sample compares with an old one, pyperf-style.

    :param speedup: how many times better the new median is: new/old when higher
        is better (RPS), old/new when lower is better (latency, seconds);
        ``None`` when the comparison could not be made.
    :param low: lower bound of the speed-up's confidence interval, or ``None``.
    :param high: upper bound of the speed-up's confidence interval, or ``None``.
    :param significant: the interval excludes 1.0 (never true without an interval).
    :param text: e.g. ``"1.32× faster [1.21–1.44]"``, ``"1.10× slower [1.02–1.19]"``,
        ``"no significant difference"``, ``"1.05× faster (1 repetition: no confidence
        interval)"`` or ``"comparison could not be made: ..."``.
    """

    speedup: float | None
    low: float | None
    high: float | None
    significant: bool
    text: str


def _factor_text(speedup: float) -> str:
    if speedup > 1.0:
        return f"{speedup:.2f}× faster"
    if speedup < 1.0:
        return f"{1.0 / speedup:.2f}× slower"
    return "same median"


def compare_samples(old: Sequence[float], new: Sequence[float], *, higher_is_better: bool = True,
                    seed: int = DEFAULT_SEED, n_resamples: int = N_RESAMPLES,
                    confidence_level: float = CONFIDENCE_LEVEL) -> SampleComparison:
    """Compare two independent samples of repetitions by the ratio of their medians.

    The speed-up is ``median(new) / median(old)`` (or its inverse when lower is
    better). Its confidence interval is a two-sample percentile bootstrap: each
    sample is resampled independently (``paired=False``) and the ratio of
    resampled medians is computed for each of ``n_resamples`` draws
    (:func:`scipy.stats.bootstrap` with a vectorized 2-sample statistic; Efron &
    Tibshirani 1993, §8.3 "two-sample problem"). The difference is significant
    when the interval excludes 1.0 and the point estimate lies on the same side.

    Wording follows pyperf's ``compare_to``: ``"1.32× faster [1.21–1.44]"``,
    ``"1.10× slower [1.02–1.19]"`` (slower factor = 1 / speed-up, interval
    inverted), ``"no significant difference"``. With fewer than 2 repetitions on
    either side only the plain ratio is given, marked
    ``"(1 repetition: no confidence interval)"``. Any error gives
    ``"comparison could not be made: <why>"``, never a claim of significance.

    :param old: the baseline's repetitions (e.g. RPS of the runner-up or the old run).
    :param new: the candidate's repetitions, same unit.
    :param higher_is_better: True for rates (RPS), False for times and latencies.
    :param seed: seed of the resampling generator.
    :param n_resamples: bootstrap resamples.
    :param confidence_level: e.g. 0.95.
    :return: a :class:`SampleComparison`; never raises for bad data.
    """
    try:
        a, b = _clean(old), _clean(new)
        if a.size == 0 or b.size == 0:
            raise StatsError("a side has no repetitions")
        med_a, med_b = float(np.median(a)), float(np.median(b))
        if med_a <= 0 or med_b <= 0:
            raise StatsError("a median is zero or negative")
    except StatsError as err:
        return SampleComparison(None, None, None, False, f"comparison could not be made: {err}")

    def speedup_of(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        mx, my = np.median(x, axis=axis), np.median(y, axis=axis)
        return my / mx if higher_is_better else mx / my

    speedup = float(speedup_of(a, b))
    if a.size < 2 or b.size < 2:
        return SampleComparison(speedup, None, None, False, f"{_factor_text(speedup)} ({NO_CI_NOTE})")
    if np.all(a == a[0]) and np.all(b == b[0]):
        low = high = speedup  # both constant: every resample gives the same ratio
    else:
        try:
            low, high = _run_bootstrap((a, b), speedup_of, paired=False, seed=seed,
                                       n_resamples=n_resamples, confidence_level=confidence_level)
        except StatsError as err:
            return SampleComparison(speedup, None, None, False, f"comparison could not be made: {err}")
    significant = (low > 1.0 and speedup > 1.0) or (high < 1.0 and speedup < 1.0)
    if not significant:
        return SampleComparison(speedup, low, high, False, NO_DIFFERENCE)
    if speedup > 1.0:
        text = f"{speedup:.2f}× faster [{low:.2f}–{high:.2f}]"
    else:
        text = f"{1.0 / speedup:.2f}× slower [{1.0 / high:.2f}–{1.0 / low:.2f}]"
    return SampleComparison(speedup, low, high, True, text)


def spread(values: Sequence[float]) -> float | None:
    """Relative spread of repetitions: ``(max - min) / median``.

    :param values: one figure per repetition.
    :return: the spread as a fraction (0.12 = 12%), or ``None`` with fewer than 2
        values or a median of 0.
    """
    data = _clean(values)
    if data.size < 2:
        return None
    median = float(np.median(data))
    if median == 0:
        return None
    return float((data.max() - data.min()) / abs(median))
