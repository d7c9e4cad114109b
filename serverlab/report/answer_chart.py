"""The answer's ranking chart (matplotlib, inline SVG): places, the evidence each rests on, the bottleneck class.

One horizontal bar per ranked variant, best place at the top; variants sharing a place
sit on one shaded band. The bar is Locust's measured RPS (median, 95% CI whiskers),
coloured by the row's bottleneck class and hatched where Locust was the limit (a floor);
markers with their own whiskers show the other evidence valid for the variant: wrk's
ceiling (◆, hello) and the CPU-cost capacity (○). Open mode draws the sustained target
rate as the bar. Each bar is labelled, right of the axes, with its figure and its bottleneck class.
Imported only when HTML is rendered (it loads matplotlib through :mod:`serverlab.report.charts`).
"""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure as MplFigure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from serverlab.report.answer_data import Answer, Placed
from serverlab.report.charts import CHART_WIDTH_IN, figure_svg
from serverlab.report.model import Chart
from serverlab.stats import Estimate
from serverlab.terms import BottleneckClass, Mode

#: Bar colour per bottleneck class (``None``: unclassified).
CLASS_COLORS = {BottleneckClass.SERVER_BOUND: "#4c78a8", BottleneckClass.BELOW_SATURATION: "#59a14f",
                BottleneckClass.GENERATOR_BOUND: "#f28e2b", BottleneckClass.INTERFERENCE: "#bab0ac", None: "#9d9d9d"}
#: Marker and vertical offset (in bar heights) of each marker evidence kind.
_MARKERS = {"wrk": ("D", 0.17, "#222222", "wrk's ceiling"),
            "CPU cost": ("o", -0.17, "white", "CPU-cost capacity")}


def _whisker(est: Estimate) -> tuple[float, float]:
    if not est.has_ci:
        return 0.0, 0.0
    return max(0.0, est.median - est.low), max(0.0, est.high - est.median)  # type: ignore[operator]


def _bar(answer: Answer, placed: Placed) -> Estimate | None:
    if answer.mode == Mode.OPEN:
        return placed.figures[0].estimate if placed.figures else None
    return placed.row.rps


def answer_chart(answer: Answer) -> Chart | None:
    """The ranking chart of one answer: ranked variants only (the table lists those not ranked).

    :param answer: from :func:`serverlab.report.answers.answers`.
    :return: a :class:`~serverlab.report.model.Chart`, or ``None`` when nothing was ranked.
    """
    ranked = [p for p in answer.placed if p.place is not None and _bar(answer, p) is not None]
    if not ranked:
        return None
    n = len(ranked)
    height = 1.35 + 0.34 * n
    fig = MplFigure(figsize=(CHART_WIDTH_IN, height), dpi=100)
    fig.subplots_adjust(left=0.25, right=0.75, top=1 - 0.78 / height, bottom=0.5 / height)
    ax = fig.add_subplot()
    ys = list(range(n))[::-1]
    right = 1.0
    classes: dict[Any, None] = {}
    markers: dict[str, None] = {}
    any_ci = False
    for y, placed in zip(ys, ranked):
        est = _bar(answer, placed)
        assert est is not None
        kind = placed.row.bottleneck_class
        classes.setdefault(kind, None)
        low, high = _whisker(est)
        any_ci = any_ci or est.has_ci
        ax.barh([y], [est.median], height=0.62, color=CLASS_COLORS.get(kind, CLASS_COLORS[None]),
                hatch="///" if kind == BottleneckClass.GENERATOR_BOUND else None, edgecolor="white", linewidth=0,
                xerr=[[low], [high]] if est.has_ci else None,
                error_kw={"ecolor": "#333", "capsize": 2.5, "elinewidth": 1.0})
        end = est.median + high
        for figure in placed.figures:
            if figure.source not in _MARKERS:
                continue
            marker, offset, face, _ = _MARKERS[figure.source]
            markers.setdefault(figure.source, None)
            m_low, m_high = _whisker(figure.estimate)
            any_ci = any_ci or figure.estimate.has_ci
            ax.errorbar([figure.estimate.median], [y + offset], xerr=[[m_low], [m_high]] if figure.estimate.has_ci
                        else None, fmt=marker, markersize=4.5, markerfacecolor=face, markeredgecolor="#222",
                        ecolor="#222", elinewidth=1.0, capsize=2)
            end = max(end, figure.estimate.median + m_high)
        # figure and class in a column right of the axes, clear of the whiskers and markers
        ax.text(1.015, y, f"{est.median:,.0f} · {kind or 'unclassified'}", transform=ax.get_yaxis_transform(),
                va="center", ha="left", fontsize=7.5, color="#333")
        right = max(right, end)
    # a shaded band per place: variants sharing a place share a band
    for index, place in enumerate(dict.fromkeys(p.place for p in ranked)):
        at = [y for y, p in zip(ys, ranked) if p.place == place]
        if index % 2 == 0:
            ax.axhspan(min(at) - 0.5, max(at) + 0.5, color="#000", alpha=0.045, linewidth=0, zorder=0)
    ax.set_yticks(ys)
    ax.set_yticklabels([f"{p.place}{'=' if p.shared else '.'} {p.variant}" for p in ranked], fontsize=8.5)
    ax.set_ylim(-0.6, n - 0.4)
    ax.set_xlim(0, right * 1.04)
    what = "sustained target rate" if answer.mode == Mode.OPEN else "Locust RPS"
    ax.set_xlabel(f"RPS (bars: {what}, median" + (", whiskers 95% CI" if any_ci else "") + ")", fontsize=8)
    ax.tick_params(axis="x", labelsize=7.5)
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    handles: list[Any] = [Patch(facecolor=CLASS_COLORS.get(k, CLASS_COLORS[None]),
                                hatch="///" if k == BottleneckClass.GENERATOR_BOUND else None, edgecolor="white",
                                label=(k or "unclassified") + (" (a floor)" if k == BottleneckClass.GENERATOR_BOUND else ""))
                          for k in classes]
    handles += [Line2D([], [], linestyle="none", marker=_MARKERS[s][0], markerfacecolor=_MARKERS[s][2],
                       markeredgecolor="#222", label=_MARKERS[s][3]) for s in markers]
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.55, 1 - 0.3 / height), ncol=min(len(handles), 4),
               fontsize=7.5, frameon=False, handlelength=1.4, columnspacing=1.2)
    fig.suptitle(f"{answer.workload} ({answer.where}): places on the evidence", fontsize=10, x=0.55,
                 y=1 - 0.06 / height, va="top")
    title = f"{answer.workload} ({answer.where}): places, with the evidence each rests on"
    return Chart(title, figure_svg(fig, f"{answer.workload}-{answer.mode}-answer"))
