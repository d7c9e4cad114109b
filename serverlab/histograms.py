"""Latency histograms: the lab's HDR histograms (:data:`serverlab.terms.HDR`), merged
exactly across load-generator processes and summarized as percentiles.

Percentiles come from HdrHistogram (the ``hdrh`` package), which merges histograms
recorded in several processes exactly (within its 3-significant-digit precision),
unlike averaging per-process percentiles. Units: microseconds throughout.
"""

from __future__ import annotations

import math

import numpy as np
from hdrh.histogram import HdrHistogram

from serverlab.stats import StatsError
from serverlab.terms import HDR, PERCENTILES, percentile_key


def new_histogram() -> HdrHistogram:
    """Return an empty histogram with the lab's range (1 µs to 120 s, 3 significant digits).

    :return: an :class:`hdrh.histogram.HdrHistogram` recording microseconds.
    """
    return HdrHistogram(HDR.lowest_us, HDR.highest_us, HDR.significant_digits)


def merge_histograms(encoded: Iterable[str | None]) -> HdrHistogram:
    """Decode base64 HdrHistograms (``Cell.hdr``) and add them into one.

    Merging counts is exact: the merged p99 equals the p99 of one histogram that
    recorded every sample, within HDR precision (3 significant digits). ``None``
    and empty strings (cells that measured nothing) are skipped.

    :param encoded: ``HdrHistogram.encode()`` strings of response times in µs.
    :return: a new histogram (total count 0 when nothing was given).
    :raises StatsError: if a string is not a valid encoded histogram.
    """
    merged = new_histogram()
    for number, text in enumerate(encoded, start=1):
        if not text:
            continue
        try:
            merged.add(HdrHistogram.decode(text))
        except Exception as err:  # hdrh raises bare ValueError/zlib.error/IndexError
            raise StatsError(f"histogram #{number} cannot be decoded: {err}") from None
    return merged


def latency_summary(hist: HdrHistogram) -> dict[str, float]:
    """Summarize a latency histogram.

    :param hist: a histogram of response times in microseconds.
    :return: ``{"p50": µs, "p90": µs, "p95": µs, "p99": µs, "p99.9": µs, "max": µs,
        "mean": µs}`` (keys from :func:`serverlab.terms.percentile_key` for
        :data:`serverlab.terms.PERCENTILES`); empty when the histogram is empty.
    """
    if hist.get_total_count() == 0:
        return {}
    values = hist.get_percentile_to_value_dict(list(PERCENTILES))  # one pass over the counts
    summary = {percentile_key(p): float(values[p]) for p in PERCENTILES}
    summary["max"] = float(hist.get_max_value())
    summary["mean"] = histogram_mean(hist)
    return summary


def histogram_mean(hist: HdrHistogram) -> float:
    """Mean of a histogram's values, equal to ``HdrHistogram.get_mean_value()``.

    hdrh's own method walks every bucket (18,432 for the lab's range) in Python,
    tens of milliseconds per call; this weights the counts array with each
    bucket's "median equivalent" value (lowest equivalent value + half the
    bucket's width, as hdrh does), using :func:`numpy.average`. The per-bucket
    values depend only on the histogram's geometry and are computed once per
    geometry with hdrh's public methods. Falls back to ``get_mean_value()`` if the
    counts array is not accessible.

    :param hist: a histogram of response times in microseconds.
    :return: the mean in microseconds (0.0 for an empty histogram).
    """
    if hist.get_total_count() == 0:
        return 0.0
    try:
        counts = np.ctypeslib.as_array(hist.counts)[: hist.counts_len]
        geometry = (hist.lowest_trackable_value, hist.highest_trackable_value,
                    hist.significant_figures, hist.counts_len)
    except (AttributeError, TypeError, ValueError):
        return float(hist.get_mean_value())
    values = _bucket_values(geometry, hist)
    return float(np.average(values, weights=counts.astype(float)))


_BUCKET_VALUES: dict[tuple[int, int, int, int], np.ndarray] = {}


def _bucket_values(geometry: tuple[int, int, int, int], hist: HdrHistogram) -> np.ndarray:
    """Median equivalent value (µs) of every counts index for histograms of one geometry."""
    values = _BUCKET_VALUES.get(geometry)
    if values is None:
        out = np.empty(hist.counts_len, dtype=float)
        for index in range(hist.counts_len):
            value = hist.get_value_from_index(index)
            lowest = hist.get_lowest_equivalent_value(value)
            width = hist.get_highest_equivalent_value(value) + 1 - lowest
            out[index] = lowest + (width >> 1)
        values = _BUCKET_VALUES.setdefault(geometry, out)
    return values


def percentile_distribution(hist: HdrHistogram, points: int = 60) -> list[tuple[float, float]]:
    """Sample a histogram's percentile distribution for a "1/(1-p)" plot.

    Percentiles are spaced evenly on the 1/(1-p) log axis from p0 up to the
    percentile one sample resolves (1 - 1/count), then the maximum is added as 100.

    :param hist: a histogram of response times in microseconds.
    :param points: how many percentiles to sample below the maximum.
    :return: ``[(percentile 0..100, value µs), ...]``, ascending; empty for an empty histogram.
    """
    count = hist.get_total_count()
    if count == 0:
        return []
    top = max(math.log10(count), 1.0)  # 1/(1-p) up to the sample count
    wanted = sorted({round(100.0 * (1.0 - 10.0 ** (-float(e))), 6) for e in np.linspace(0.0, top, points)})
    wanted = [p for p in wanted if p < 100.0]
    values = hist.get_percentile_to_value_dict(wanted)  # one pass over the counts
    out = [(p, float(values[p])) for p in wanted]
    out.append((100.0, float(hist.get_max_value())))
    return out
