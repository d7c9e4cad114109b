"""The answer's data: :class:`Answer` per workload, :class:`Placed` per variant, :class:`Figure` per evidence.

Built by :func:`serverlab.report.answers.answers`; every format shows it first, and
``report.json`` and the web UI hold it as :meth:`Answer.to_dict`. Figures are RPS as
:class:`~serverlab.stats.Estimate` objects (median, 95% CI).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from serverlab.report.formatting import format_estimate
from serverlab.report.ranking import row_class
from serverlab.report.rows import Row
from serverlab.stats import NO_CI_NOTE, Estimate
from serverlab.terms import BottleneckClass, calibrated_workload

#: The evidence kinds of :class:`serverlab.report.ranking.Evidence`, in the order they are named,
#: with the words tables and charts use for each.
SOURCE_LABELS = {"measured RPS": "Locust RPS", "wrk": "wrk", "CPU cost": "CPU-cost capacity",
                 "sustained rate": "sustained target rate"}
#: Classes whose Locust RPS is the server's (``None``: unclassified, a results file before bottlenecks).
MEASURED_CLASSES = (BottleneckClass.SERVER_BOUND, BottleneckClass.BELOW_SATURATION, None)


@dataclass(frozen=True)
class Figure:
    """One figure a place rests on: its evidence kind and its estimate (RPS, median with CI)."""

    source: str
    estimate: Estimate

    @property
    def text(self) -> str:
        """E.g. ``"wrk 12,061 [11,900–12,200]"``."""
        return f"{SOURCE_LABELS.get(self.source, self.source)} {format_estimate(self.estimate)}"


@dataclass(frozen=True)
class Placed:
    """One variant in an answer: its place (``None``: not ranked, see ``left_out``) and why.

    :param variant: the server variant.
    :param place: 1 for the first place; variants sharing a place have the same number.
    :param shared: another variant has the same place.
    :param row: the report row the place is about.
    :param evidence: the evidence kinds that separate it from some other variant (``()``: none does).
    :param figures: the figures of the evidence valid for it (what the chart's markers show).
    :param left_out: why it is not ranked, or ``None``.
    :param reasons: the reasoning about this variant, one short clause each.
    """

    variant: str
    place: int | None
    shared: bool
    row: Row
    evidence: tuple[str, ...] = ()
    figures: tuple[Figure, ...] = ()
    left_out: str | None = None
    reasons: tuple[str, ...] = ()

    @property
    def place_text(self) -> str:
        """``"1"``, ``"8 (shared)"`` or ``"—"`` (not ranked)."""
        if self.place is None:
            return "—"
        return f"{self.place} (shared)" if self.shared else str(self.place)


@dataclass(frozen=True)
class Answer:
    """The answer for one workload: a sentence, the places, the evidence.

    :param workload: the workload; :param mode: the mode the verdict is about.
    :param level: the load level ranked (``None`` when nothing could be ranked).
    :param where: e.g. ``"closed mode, 32 users"``.
    :param sentence: the answer in one sentence (at most ~400 characters).
    :param winner: the variant ahead of every other, or ``None`` ("cannot tell").
    :param runner_up: the first variant of the second place when there is a winner.
    :param lead: the winner's lead on the evidence, ``{"source", "ratio", "low", "high"}``, or ``None``.
    :param placed: ranked variants by place, then those not ranked.
    :param principle: what bounds this workload, in words.
    :param what_would_tell: what would separate the variants that share the first place.
    """

    workload: str
    mode: str
    level: int | None
    where: str
    sentence: str
    winner: str | None = None
    runner_up: str | None = None
    lead: dict[str, Any] | None = None
    placed: tuple[Placed, ...] = ()
    principle: str = ""
    what_would_tell: tuple[str, ...] = field(default=())

    @property
    def places(self) -> list[list[str]]:
        """The ranked variants, one list per place, best first."""
        out: dict[int, list[str]] = {}
        for p in self.placed:
            if p.place is not None:
                out.setdefault(p.place, []).append(p.variant)
        return [out[k] for k in sorted(out)]

    def to_dict(self) -> dict[str, Any]:
        """The answer as data (``report.json``, the web UI): places, evidence and figures per variant."""
        def figure(f: Figure) -> dict[str, Any]:
            e = f.estimate
            return {"source": f.source, "median": e.median, "low": e.low, "high": e.high, "n": e.n}

        def variant(p: Placed) -> dict[str, Any]:
            r = p.row
            return {"variant": p.variant, "place": p.place, "shared": p.shared, "left_out": p.left_out,
                    "model": r.declared.model, "bottleneck": row_class(r),
                    "rps": None if r.rps is None else {"median": r.rps.median, "low": r.rps.low, "high": r.rps.high},
                    "p99_us": r.hdr_us.get("p99"),
                    "cpu_ms_per_request": r.cpu_ms_per_request.median if r.cpu_ms_per_request else None,
                    "evidence": list(p.evidence), "figures": [figure(f) for f in p.figures], "reasons": list(p.reasons)}

        return {"workload": self.workload, "mode": self.mode, "level": self.level, "sentence": self.sentence,
                "winner": self.winner, "runner_up": self.runner_up, "lead": self.lead, "places": self.places,
                "variants": [variant(p) for p in self.placed], "principle": self.principle,
                "what_would_tell": list(self.what_would_tell)}


def evidence_estimate(row: Row, source: str, workload: str) -> Estimate | None:
    """The figure of one evidence kind for a row: Locust RPS, wrk's ceiling (hello) or CPU-cost capacity.

    wrk's ceiling is a row's ``wrk_rps`` estimate when it has one, else the calibration's
    median (one run: no interval).
    """
    if source == "measured RPS":
        return row.rps
    if source == "CPU cost":
        return row.cost_capacity_rps
    if source == "wrk" and workload == calibrated_workload(row.calibration):
        estimate = getattr(row, "wrk_rps", None)
        if isinstance(estimate, Estimate):
            return estimate
        wrk = (row.calibration or {}).get("wrk_rps")
        return Estimate(float(wrk), None, None, 1, (float(wrk),), NO_CI_NOTE) if wrk else None
    return None


def valid_sources(row: Row, workload: str) -> tuple[str, ...]:
    """The evidence kinds that can place this row (Locust RPS only where Locust was not the limit)."""
    kind = row_class(row)
    out = []
    if row.rps is not None and kind in MEASURED_CLASSES:
        out.append("measured RPS")
    if evidence_estimate(row, "wrk", workload) is not None:
        out.append("wrk")
    if row.cost_capacity_rps is not None and kind in (BottleneckClass.GENERATOR_BOUND, BottleneckClass.SERVER_BOUND):
        out.append("CPU cost")
    return tuple(out)
