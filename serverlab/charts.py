"""Report charts that rank servers and show a cell over time (matplotlib, inline SVG).

* :func:`ranking_charts` — per load level of one (workload, mode): horizontal bars of
  median RPS, best at the top, with 95% CI whiskers where there are repetitions;
* :func:`timeline_charts` — per load level: throughput (responses/s) and p99 latency
  for every second of each cell, one line per server, the warm-up shaded (its
  figures are discarded from every table).

Both take :class:`serverlab.report.Row` objects of one workload and mode and return
:class:`serverlab.report.Chart` objects; units: RPS, milliseconds on the axes
(rows keep µs), seconds from the start of the warm-up.
"""

from __future__ import annotations

from typing import Any, Sequence

from matplotlib.figure import Figure

from serverlab.report import _PALETTE, Chart, Row, _level_text, _log_y, _svg

#: Width of every chart (inches at 100 dpi); the HTML scales it to its column.
CHART_WIDTH_IN = 7.2


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

    :param rows: rows of one workload and mode (from :func:`serverlab.report.aggregate`).
    :return: one :class:`~serverlab.report.Chart` per level, ascending; ``[]`` if nothing was measured.
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
            kind = (row.bottleneck or {}).get("class")
            note = {"generator-bound": " (generator-bound: a floor)", "interference": " (interference)"}.get(
                kind or "", " (saturated)" if row.loadgen_saturated else "")
            ax.text(value + up + top * 0.01, y, f"{value:,.0f}{note}", va="center", fontsize=8)
        ax.set_yticks(ys)
        ax.set_yticklabels([r.variant for r in ranked], fontsize=9)
        ax.set_xlim(0, top * 1.18)
        ax.set_xlabel("RPS (median" + (", 95% CI whiskers)" if any_ci else ", 1 repetition: no CI)"), fontsize=8)
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(True, axis="x", alpha=0.3)
        ax.set_axisbelow(True)
        ax.set_title(f"{workload} ({mode}), {_level_text(mode, level)}: ranking by RPS", fontsize=10)
        charts.append(Chart(f"{workload} ({mode}) at {_level_text(mode, level)}: servers ranked by RPS",
                            _svg(fig, f"{workload}-{mode}-{level}-ranking")))
    return charts


def _series(timeline: dict[str, Any], key: str, scale: float = 1.0) -> tuple[list[float], list[float | None]]:
    """(seconds, values) of a timeline entry; the last, partial second is dropped."""
    values = list(timeline.get(key) or [])[:-1]
    step = float(timeline.get("interval_s", 1.0))
    xs = [(i + 0.5) * step for i in range(len(values))]
    return xs, [None if v is None else float(v) * scale for v in values]


def timeline_charts(rows: Sequence[Row]) -> list[Chart]:
    """Throughput and p99 over time, one chart (two panels) per load level.

    Each line is one cell (server × repetition) over its seconds from the start of
    its warm-up; the warm-up is shaded grey. Rows without a recorded timeline (runs
    made before timelines were recorded) are left out.

    :param rows: rows of one workload and mode.
    :return: one :class:`~serverlab.report.Chart` per level that has timelines.
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
        warmup = max(float(t.get("warmup_s") or 0.0) for r in level_rows for t in r.timelines)
        p99_values: list[float] = []
        for row in level_rows:
            for index, timeline in enumerate(row.timelines):
                label = row.variant if index == 0 else "_nolegend_"
                xs, rps = _series(timeline, "rps", 1.0 / float(timeline.get("interval_s", 1.0)))
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
        ax_rps.set_title(f"{workload} ({mode}), {_level_text(mode, level)}: throughput and p99 over time",
                         fontsize=10)
        ax_rps.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False, borderaxespad=0.0)
        charts.append(Chart(f"{workload} ({mode}) at {_level_text(mode, level)}: throughput and p99 per second "
                            f"(warm-up shaded)", _svg(fig, f"{workload}-{mode}-{level}-timeline")))
    return charts
