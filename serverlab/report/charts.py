"""The report's charts (matplotlib, inline SVG): imported only when HTML is rendered.

* :func:`render_charts` — per (workload, mode): RPS, p50/p99 latency and CPU ms per
  request against the load level, and the latency percentile distribution at the
  highest level, one line per variant with 95% CI error bars;
* :func:`ranking_charts` — per load level: horizontal bars of median RPS, best at the
  top, with 95% CI whiskers where there are repetitions;
* :func:`timeline_charts` — per load level: throughput (responses/s) and p99 latency
  for every second of each cell, one line per server, the warm-up shaded (its
  figures are discarded from every table).

All take :class:`~serverlab.report.rows.Row` objects of one workload and mode and return
:class:`~serverlab.report.model.Chart` objects. Units: RPS, milliseconds on the axes
(rows keep µs), seconds from the start of the warm-up. Text is SVG text and element ids
are deterministic, so a report renders byte-identically from the same results.
"""

from __future__ import annotations

import io
import re
from typing import Any, Callable, Sequence

import matplotlib

matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator  # noqa: E402

from serverlab.report.model import Chart  # noqa: E402
from serverlab.report.formatting import level_text  # noqa: E402
from serverlab.report.rows import Row  # noqa: E402
from serverlab.stats import Estimate  # noqa: E402
from serverlab.records import Timeline  # noqa: E402
from serverlab.terms import LEVEL_NAMES, BottleneckClass, Mode  # noqa: E402

#: Width of every chart (inches at 100 dpi); the HTML scales it to its column.
CHART_WIDTH_IN = 7.2

_PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
            "#7f7f7f", "#bcbd22"]


def figure_svg(fig: Figure, salt: str) -> str:
    """Render a figure to an inline ``<svg>`` element (text as SVG text in a local sans-serif font, deterministic ids)."""
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": salt, "svg.fonttype": "none"}):
        fig.savefig(buffer, format="svg",
                    metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    text = buffer.getvalue()
    text = text[text.index("<svg"):].strip()
    # matplotlib names every group ("figure_1", "axes_1", ...): keep only the ids something
    # refers to (clip paths, markers; unique per chart through the salt), so that several
    # SVGs in one page do not repeat ids
    referenced = set(re.findall(r"url\(#([^)]+)\)", text)) | set(re.findall(r'href="#([^"]+)"', text))
    return re.sub(r'\sid="([^"]+)"', lambda m: m.group(0) if m.group(1) in referenced else "", text)


def _level_axis(ax: Any, levels: list[int], mode: str) -> None:
    name = LEVEL_NAMES[Mode(mode)].axis
    ax.set_xlabel(name + (" (log₂ scale)" if len(levels) > 1 else ""))
    if len(levels) > 1 and min(levels) > 0:
        ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(levels))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([str(v) for v in levels])
    ax.grid(True, alpha=0.3)


def _errorbar(ax: Any, points: list[tuple[int, Estimate]], scale: float, **style: Any) -> None:
    xs = [x for x, _ in points]
    ys = [e.median * scale for _, e in points]
    lower = [max(0.0, (e.median - e.low) * scale) if e.low is not None else 0.0 for _, e in points]
    upper = [max(0.0, (e.high - e.median) * scale) if e.high is not None else 0.0 for _, e in points]
    ax.errorbar(xs, ys, yerr=[lower, upper], capsize=3, marker="o", markersize=4, linewidth=1.5, **style)


def _new_figure() -> tuple[Figure, Any]:
    # fixed margins (no tight bbox: that draws twice); the legend sits right of the axes
    fig = Figure(figsize=(CHART_WIDTH_IN, 3.6), dpi=100)
    fig.subplots_adjust(left=0.1, right=0.7, bottom=0.15, top=0.9)
    ax = fig.add_subplot()
    return fig, ax


def _log_y(ax: Any) -> None:
    """A log y axis labelled with plain numbers (1, 10, 100) rather than powers of ten."""
    ax.set_yscale("log")
    plain = FuncFormatter(lambda value, _pos: f"{value:,.4g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(NullFormatter())


def _legend(ax: Any) -> None:
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False, borderaxespad=0.0)


def render_charts(rows: Sequence[Row]) -> list[Chart]:
    """Charts for the rows of one (workload, mode): RPS, p50/p99 latency and CPU ms per
    request against the load level (when there are several levels), and the latency
    percentile distribution at the highest level. One line per variant; error bars are 95% CIs where available.

    :param rows: rows of a single workload and mode.
    :return: :class:`Chart` objects holding inline SVG.
    """
    rows = [r for r in rows if not r.failed]
    if not rows:
        return []
    workload, mode = rows[0].workload, rows[0].mode
    variants = list(dict.fromkeys(r.variant for r in rows))
    colors = {v: _PALETTE[i % len(_PALETTE)] for i, v in enumerate(variants)}
    levels = sorted({r.level for r in rows})
    salt = f"{workload}-{mode}"
    charts: list[Chart] = []

    def series(variant: str, get: Callable[[Row], Estimate | None]) -> list[tuple[int, Estimate]]:
        return [(r.level, e) for r in rows if r.variant == variant and (e := get(r)) is not None]

    def per_variant_chart(get: Callable[[Row], Estimate | None], ylabel: str, title: str, caption: str,
                          suffix: str) -> None:
        """One line per variant of ``get(row)`` against the load level, y from 0."""
        fig, ax = _new_figure()
        for variant in variants:
            points = series(variant, get)
            if points:
                _errorbar(ax, points, 1.0, color=colors[variant], label=variant)
        _level_axis(ax, levels, mode)
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.set_title(f"{workload} ({mode}): {title}")
        _legend(ax)
        charts.append(Chart(f"{workload} ({mode}): {caption}", figure_svg(fig, f"{salt}-{suffix}")))

    # one load level: lines against the level would be a column of dots; the ranking chart shows it
    if len(levels) > 1:
        per_variant_chart(lambda r: r.rps, "RPS (median, 95% CI)", "throughput", "RPS vs load", "rps")

        fig, ax = _new_figure()
        latencies: list[float] = []
        for variant in variants:
            for key, style in (("p99_us", "-"), ("p50_us", "--")):
                points = series(variant, lambda r, key=key: getattr(r, key))
                if points:
                    _errorbar(ax, points, 1e-3, color=colors[variant], linestyle=style,
                              label=variant if key == "p99_us" else "_nolegend_")
                    latencies.extend(e.median * 1e-3 for _, e in points)
        ax.plot([], [], color="#555", linestyle="-", label="p99 (solid)")
        ax.plot([], [], color="#555", linestyle="--", label="p50 (dashed)")
        _level_axis(ax, levels, mode)
        positive = [v for v in latencies if v > 0]
        if positive and max(positive) / min(positive) > 20:
            _log_y(ax)
        ax.set_ylabel("latency ms (median of repetitions)")
        ax.set_title(f"{workload} ({mode}): p99 solid, p50 dashed")
        _legend(ax)
        charts.append(Chart(f"{workload} ({mode}): p50 and p99 latency vs load", figure_svg(fig, salt + "-latency")))

        if any(r.cpu_ms_per_request for r in rows):
            per_variant_chart(lambda r: r.cpu_ms_per_request, "server CPU ms per request", "CPU cost per request",
                              "CPU ms per request vs load", "cpu")

    top = max(r.level for r in rows)
    top_rows = [r for r in rows if r.level == top and r.latency_distribution]
    if top_rows:
        fig, ax = _new_figure()
        largest = 10.0
        for row in top_rows:
            xs, ys = [], []
            for p, us in row.latency_distribution:
                x = 1.0 / (1.0 - p / 100.0) if p < 100.0 else max(float(row.hdr_count), 2.0)
                xs.append(x)
                ys.append(us / 1000.0)
            largest = max(largest, xs[-1])
            ax.plot(xs, ys, color=colors[row.variant], label=row.variant, linewidth=1.5)
        ax.set_xscale("log")
        ticks = [t for t in (2, 10, 100, 1000, 10_000, 100_000, 1_000_000) if t <= largest * 1.01]
        labels = {2: "50%", 10: "90%", 100: "99%", 1000: "99.9%", 10_000: "99.99%",
                  100_000: "99.999%", 1_000_000: "99.9999%"}
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([labels[t] for t in ticks])
        ax.set_xlabel("percentile (1/(1−p) scale); last point: max")
        ax.set_ylabel("latency ms")
        _log_y(ax)
        ax.grid(True, alpha=0.3, which="both")
        ax.set_title(f"{workload} ({mode}): latency distribution at {level_text(mode, top)}")
        _legend(ax)
        charts.append(Chart(f"{workload} ({mode}): latency percentile distribution at {level_text(mode, top)}",
                            figure_svg(fig, salt + "-distribution")))
    return charts


def _colors(rows: Sequence[Row]) -> dict[str, str]:
    variants = list(dict.fromkeys(r.variant for r in rows))
    return {v: _PALETTE[i % len(_PALETTE)] for i, v in enumerate(variants)}


def ranking_charts(rows: Sequence[Row]) -> list[Chart]:
    """One ranking chart per load level: median RPS per server as horizontal bars.

    Bars are sorted best first (top); whiskers show the 95% bootstrap CI when the
    row has one (2+ repetitions); each bar is labelled with its value, and
    "(generator-bound: a floor)" when the load generator was the limit, "(interference)"
    when other programs disturbed it (see :mod:`serverlab.bottleneck`). Rows without a
    measurement are left out (the tables list them as failed).

    :param rows: rows of one workload and mode (from :func:`serverlab.report.rows.aggregate`).
    :return: one :class:`~serverlab.report.model.Chart` per level, ascending; ``[]`` if nothing was measured.
    """
    measured = [r for r in rows if not r.failed and r.rps is not None]
    if not measured:
        return []
    colors = _colors(rows)
    workload, mode = measured[0].workload, measured[0].mode
    charts = []
    for level in sorted({r.level for r in measured}):
        ranked = sorted((r for r in measured if r.level == level), key=lambda r: r.rps.median, reverse=True)
        height = 1.0 + 0.34 * len(ranked)
        fig = Figure(figsize=(CHART_WIDTH_IN, height), dpi=100)
        fig.subplots_adjust(left=0.25, right=0.88, top=1 - 0.45 / height, bottom=0.55 / height)
        ax = fig.add_subplot()
        ys = list(range(len(ranked)))[::-1]
        values = [r.rps.median for r in ranked]
        low = [max(0.0, r.rps.median - r.rps.low) if r.rps.has_ci else 0.0 for r in ranked]
        high = [max(0.0, r.rps.high - r.rps.median) if r.rps.has_ci else 0.0 for r in ranked]
        any_ci = any(r.rps.has_ci for r in ranked)
        ax.barh(ys, values, height=0.62, color=[colors[r.variant] for r in ranked],
                xerr=[low, high] if any_ci else None,
                error_kw={"ecolor": "#222", "capsize": 3, "elinewidth": 1.2})
        top = max(v + h for v, h in zip(values, high)) or 1.0
        for y, row, value, up in zip(ys, ranked, values, high):
            kind = row.bottleneck_class
            note = {BottleneckClass.GENERATOR_BOUND: " (generator-bound: a floor)", BottleneckClass.INTERFERENCE: " (interference)"}.get(
                kind or "", " (saturated)" if row.loadgen_saturated else "")
            ax.text(value + up + top * 0.01, y, f"{value:,.0f}{note}", va="center", fontsize=8)
        ax.set_yticks(ys)
        ax.set_yticklabels([r.variant for r in ranked], fontsize=9)
        ax.set_xlim(0, top * 1.18)
        ax.set_xlabel("RPS (median" + (", 95% CI whiskers)" if any_ci else ", 1 repetition: no CI)"), fontsize=8)
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(True, axis="x", alpha=0.3)
        ax.set_axisbelow(True)
        ax.set_title(f"{workload} ({mode}), {level_text(mode, level)}: ranking by RPS", fontsize=10)
        charts.append(Chart(f"{workload} ({mode}) at {level_text(mode, level)}: servers ranked by RPS",
                            figure_svg(fig, f"{workload}-{mode}-{level}-ranking")))
    return charts


def _series(timeline: Timeline, key: str, scale: float = 1.0) -> tuple[list[float], list[float | None]]:
    """(seconds, values) of a timeline's ``rps`` or ``p99_us``; the last, partial second is dropped."""
    values = list(timeline.rps if key == "rps" else timeline.p99_us)[:-1]
    step = timeline.interval_s
    xs = [(i + 0.5) * step for i in range(len(values))]
    return xs, [None if v is None else float(v) * scale for v in values]


def timeline_charts(rows: Sequence[Row]) -> list[Chart]:
    """Throughput and p99 over time, one chart (two panels) per load level.

    Each line is one cell (server × repetition) over its seconds from the start of
    its warm-up; the warm-up is shaded grey. Rows without a recorded timeline (runs
    made before timelines were recorded) are left out.

    :param rows: rows of one workload and mode.
    :return: one :class:`~serverlab.report.model.Chart` per level that has timelines.
    """
    with_timeline = [r for r in rows if r.timelines]
    if not with_timeline:
        return []
    colors = _colors(rows)
    workload, mode = with_timeline[0].workload, with_timeline[0].mode
    charts = []
    for level in sorted({r.level for r in with_timeline}):
        level_rows = [r for r in with_timeline if r.level == level]
        fig = Figure(figsize=(CHART_WIDTH_IN, 4.6), dpi=100)
        fig.subplots_adjust(left=0.1, right=0.72, top=0.92, bottom=0.11, hspace=0.12)
        ax_rps, ax_p99 = fig.subplots(2, 1, sharex=True)
        warmup = max(t.warmup_s for r in level_rows for t in r.timelines)
        p99_values: list[float] = []
        for row in level_rows:
            for index, timeline in enumerate(row.timelines):
                label = row.variant if index == 0 else "_nolegend_"
                xs, rps = _series(timeline, "rps", 1.0 / timeline.interval_s)
                ax_rps.plot(xs, rps, color=colors[row.variant], linewidth=1.3, alpha=1.0 if index == 0 else 0.5,
                            label=label)
                xs, p99 = _series(timeline, "p99_us", 1e-3)
                points = [(x, y) for x, y in zip(xs, p99) if y is not None and y > 0]
                if points:
                    ax_p99.plot([x for x, _ in points], [y for _, y in points], color=colors[row.variant],
                                linewidth=1.3, alpha=1.0 if index == 0 else 0.5)
                    p99_values.extend(y for _, y in points)
        for ax in (ax_rps, ax_p99):
            if warmup > 0:
                ax.axvspan(0, warmup, color="#999", alpha=0.18, linewidth=0)
            ax.grid(True, alpha=0.3)
            ax.set_xlim(left=0)
        if warmup > 0:
            ax_rps.text(warmup / 2, 0.97, "warm-up\n(discarded)", transform=ax_rps.get_xaxis_transform(),
                        ha="center", va="top", fontsize=7, color="#555")
        ax_rps.set_ylim(bottom=0)
        ax_rps.set_ylabel("responses/s", fontsize=8)
        if p99_values and max(p99_values) / max(min(p99_values), 1e-9) > 20:
            _log_y(ax_p99)
        else:
            ax_p99.set_ylim(bottom=0)
        ax_p99.set_ylabel("p99 ms (per second)", fontsize=8)
        ax_p99.set_xlabel("seconds from the start of the warm-up", fontsize=8)
        for ax in (ax_rps, ax_p99):
            ax.tick_params(labelsize=8)
        ax_rps.set_title(f"{workload} ({mode}), {level_text(mode, level)}: throughput and p99 over time",
                         fontsize=10)
        ax_rps.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False, borderaxespad=0.0)
        charts.append(Chart(f"{workload} ({mode}) at {level_text(mode, level)}: throughput and p99 per second "
                            f"(warm-up shaded)", figure_svg(fig, f"{workload}-{mode}-{level}-timeline")))
    return charts
