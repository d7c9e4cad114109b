"""Ranking on intervals: who is fastest, on evidence that can tell, or "cannot tell".

A Locust RPS figure is the server's capacity only when the server was the
bottleneck (:mod:`serverlab.bottleneck`). So variants are compared pairwise on
three kinds of evidence, each used only where it is valid, and each an interval
(a median over repetitions with its 95% bootstrap CI, :func:`serverlab.stats.median_ci`):

* **measured RPS** — between rows where Locust was not the limit (server-bound or
  below saturation). A generator-bound row's RPS is only a floor: it counts only when
  that floor's interval lies above the other row's interval;
* **wrk's ceiling** — the reference generator at the same budget, measured in every
  repetition (hello only; :attr:`serverlab.report.rows.Row.wrk_rps`);
* **CPU-cost capacity** — ``server_cpus ÷ CPU seconds per request`` per repetition;
  used when a generator-bound row is involved or both are server-bound (for a server
  that waits on I/O or on each connection it is not a capacity).

Evidence **decides** a pair only when the two intervals do not overlap
(:func:`separated`); a figure without an interval (one repetition, or a results file
from before wrk ran in every repetition) never decides. A variant is ahead of another
when some evidence decides for it and none decides against it. There is no fixed tie margin.

:func:`rank` turns the pair decisions into **places** (:class:`Place`): variants whose
pair cannot be told apart share a place, and so (transitively) does anything that
would otherwise be ordered without its own evidence, so that every pair in different
places is ordered by non-overlapping intervals on the evidence cited
(:attr:`Place.ahead_of_next`). A winner is named only when place 1 holds one variant.
:func:`rank_level` picks the level a verdict is about and the candidates, and ranks them
(:class:`LevelRanking`: what the verdict and the report's answer are built on).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from typing import Sequence

from serverlab.report.formatting import format_estimate
from serverlab.report.rows import Row
from serverlab.stats import Estimate
from serverlab.terms import CALIBRATION_WORKLOAD, BottleneckClass, calibrated_workload

#: A "cannot tell" verdict explains at most this many unresolved pairs (the leader against
#: the next ones) and counts the rest: 13 tied variants make 78 pairs, a page of text.
MAX_EXPLAINED_PAIRS = 3
#: wrk's ceiling and the CPU-cost capacity of one variant "disagree" beyond this
#: relative difference: on the README's quiet machine they were 17% apart for granian and
#: 30% for uwsgi-threads (the two its verdict names), within a few per cent for most others.
CAPACITY_AGREEMENT = 0.15
#: Classes whose measured RPS is not limited by the generator.
RPS_CLASSES = (BottleneckClass.SERVER_BOUND, BottleneckClass.BELOW_SATURATION)
#: The evidence kinds, as :attr:`Evidence.source` names them.
SOURCES = ("measured RPS", "wrk", "CPU cost")


def row_class(row: Row) -> BottleneckClass | None:
    """The bottleneck class of a report row (``None`` when unknown)."""
    return row.bottleneck_class


def separated(a: Estimate | None, b: Estimate | None) -> int:
    """Whether two intervals tell their variants apart.

    :return: +1 when ``a``'s interval lies wholly above ``b``'s, -1 when wholly below,
        0 when they overlap (touching counts as overlapping) or either has no interval.
    """
    if a is None or b is None or not a.has_ci or not b.has_ci:
        return 0
    return int(a.low > b.high) - int(a.high < b.low)  # type: ignore[operator]


def wrk_estimate(row: Row, workload: str) -> Estimate | None:
    """The row's wrk ceiling as an interval when it counts as evidence (wrk ran on ``workload``), else ``None``."""
    return getattr(row, "wrk_rps", None) if workload == calibrated_workload(getattr(row, "calibration", None)) else None


def interval_text(est: Estimate) -> str:
    """``"6,299 [6,236–6,362]"``, or ``"6,299 (1 run: no interval)"`` without one."""
    return format_estimate(est) if est.has_ci else f"{format_estimate(est)} ({est.n} run{'s' if est.n != 1 else ''}: no interval)"


@dataclass(frozen=True)
class Evidence:
    """One kind of evidence about a pair (a, b).

    :param source: one of :data:`SOURCES`.
    :param sign: +1 a ahead, -1 b ahead (the intervals do not overlap), 0 cannot tell.
    :param lean: the medians' direction even when not decisive (+1, -1, 0).
    :param text: the figures, e.g. ``"wrk 12,061 [11,900–12,200] vs 6,400 [6,300–6,500] RPS"``.
    :param a: a's interval; :param b: b's interval (RPS).
    """

    source: str
    sign: int
    lean: int
    text: str
    a: Estimate | None = None
    b: Estimate | None = None


@dataclass(frozen=True)
class PairDecision:
    """How two rows compare: ``sign`` +1 (a ahead), -1 (b ahead), 0 (cannot tell), the evidence, and whether it conflicts."""

    sign: int
    evidence: tuple[Evidence, ...]
    conflict: bool

    @property
    def decisive(self) -> tuple[Evidence, ...]:
        """The evidence whose intervals do not overlap, in the direction of :attr:`sign` (empty when 0)."""
        return tuple(e for e in self.evidence if self.sign and e.sign == self.sign)


def is_generator_bound(row: Row) -> bool:
    """Whether a row's class (:func:`row_class`) is generator-bound: its RPS is the generator's floor, not the server's."""
    return row_class(row) == BottleneckClass.GENERATOR_BOUND


def _evidence(source: str, a: Estimate, b: Estimate, label: str, decides: bool = True, note: str = "") -> Evidence:
    lean = (a.median > b.median) - (a.median < b.median)
    sign = separated(a, b) if decides else 0
    return Evidence(source, sign, lean, f"{label} {interval_text(a)} vs {interval_text(b)} RPS{note}", a, b)


def compare_pair(a: Row, b: Row, workload: str) -> PairDecision:
    """Compare two report rows on every valid kind of evidence (see the module docstring).

    :param a: a :class:`serverlab.report.rows.Row`; :param b: another row at the same level.
    :param workload: the workload (wrk's ceiling counts only for the one it calibrated, :func:`calibrated_workload`).
    :return: a :class:`PairDecision`; ``sign`` is non-zero only when some evidence's
        intervals do not overlap and no evidence's intervals point the other way.
    """
    evidence: list[Evidence] = []
    ga, gb = is_generator_bound(a), is_generator_bound(b)
    if a.rps is not None and b.rps is not None:
        if not ga and not gb:
            evidence.append(_evidence("measured RPS", a.rps, b.rps, "Locust"))
        elif ga != gb:  # a floor counts only when its interval is above the other's
            floor, other = (a, b) if ga else (b, a)
            if separated(floor.rps, other.rps) > 0:
                evidence.append(_evidence("measured RPS", a.rps, b.rps, "Locust",
                                          note=f" ({floor.variant}'s floor is above)"))
    wrk_a, wrk_b = wrk_estimate(a, workload), wrk_estimate(b, workload)
    if wrk_a is not None and wrk_b is not None:
        evidence.append(_evidence("wrk", wrk_a, wrk_b, "wrk"))
    both_server = row_class(a) == row_class(b) == BottleneckClass.SERVER_BOUND
    cap_a, cap_b = getattr(a, "cost_capacity_rps", None), getattr(b, "cost_capacity_rps", None)
    if (ga or gb or both_server) and cap_a is not None and cap_b is not None:
        evidence.append(_evidence("CPU cost", cap_a, cap_b, "CPU-cost capacity"))
    strong = {e.sign for e in evidence if e.sign}
    conflict = len(strong) > 1
    sign = 0 if conflict or not strong else strong.pop()
    return PairDecision(sign, tuple(evidence), conflict)


def intervals_of(row: Row, workload: str) -> dict[str, Estimate]:
    """The intervals a row offers as evidence, by source (:data:`SOURCES`); measured RPS
    of a generator-bound row is included (as a floor) — :attr:`Place.floors` names those."""
    out: dict[str, Estimate] = {}
    if row.rps is not None:
        out["measured RPS"] = row.rps
    wrk = wrk_estimate(row, workload)
    if wrk is not None:
        out["wrk"] = wrk
    if getattr(row, "cost_capacity_rps", None) is not None:
        out["CPU cost"] = row.cost_capacity_rps
    return out


def best_figure(row: Row, workload: str) -> float:
    """The figure that orders variants inside a place: wrk (hello), else CPU-cost capacity for a
    generator-bound row, else the measured RPS median."""
    wrk = wrk_estimate(row, workload)
    if wrk is not None:
        return wrk.median
    if is_generator_bound(row) and getattr(row, "cost_capacity_rps", None) is not None:
        return row.cost_capacity_rps.median
    return row.rps.median if row.rps is not None else 0.0


@dataclass(frozen=True)
class Place:
    """Variants sharing one place in a ranking.

    :param number: the place, 1-based.
    :param rows: the report rows in this place, the best figure (:func:`best_figure`) first.
    :param intervals: ``{variant: {source: Estimate}}``: every interval each variant offers (RPS).
    :param floors: variants whose measured RPS is only a floor (generator-bound).
    :param ahead_of_next: for each (variant here, variant in the next place) pair, the
        decisive evidence (non-overlapping intervals) that puts this place ahead; empty for the last place.
    """

    number: int
    rows: tuple[Row, ...]
    intervals: dict[str, dict[str, Estimate]]
    floors: tuple[str, ...] = ()
    ahead_of_next: tuple[tuple[str, str, tuple[Evidence, ...]], ...] = ()

    @property
    def variants(self) -> tuple[str, ...]:
        """The variant names in this place, in order."""
        return tuple(r.variant for r in self.rows)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: ``{"place", "variants", "intervals": {variant: {source: {median, low, high, n}}},
        "floors", "ahead_of_next": [{"variant", "over", "evidence": [{source, text, ...}]}]}``."""
        def est(e: Estimate) -> dict[str, object]:
            return {"median": e.median, "low": e.low, "high": e.high, "n": e.n}
        return {
            "place": self.number, "variants": list(self.variants), "floors": list(self.floors),
            "intervals": {v: {s: est(e) for s, e in by.items()} for v, by in self.intervals.items()},
            "ahead_of_next": [{"variant": a, "over": b, "evidence": [
                {"source": e.source, "text": e.text, "low": e.a.low if e.a else None,
                 "over_high": e.b.high if e.b else None} for e in ev]} for a, b, ev in self.ahead_of_next],
        }


@dataclass(frozen=True)
class Ranking:
    """Variants in places at one load level of one workload, with every pair's decision.

    :param workload: the workload; :param mode: the load mode; :param level: the load level ranked.
    :param places: best first (:class:`Place`).
    :param decisions: keyed by (a.variant, b.variant), both directions.
    :param left_out: variants not ranked at this level and why (``{variant: reason}``).
    """

    workload: str
    mode: str
    level: int
    places: tuple[Place, ...]
    decisions: dict[tuple[str, str], PairDecision]
    left_out: dict[str, str] = field(default_factory=dict)

    @property
    def winner(self) -> Row | None:
        """The row of the one variant in place 1 when there are other places (or it is the only
        variant ranked); ``None`` when place 1 is shared."""
        if self.places and len(self.places[0].rows) == 1:
            return self.places[0].rows[0]
        return None

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: ``{"workload", "mode", "level", "winner", "places": [Place.to_dict()], "left_out"}``."""
        winner = self.winner
        return {"workload": self.workload, "mode": self.mode, "level": self.level,
                "winner": winner.variant if winner is not None else None,
                "places": [p.to_dict() for p in self.places], "left_out": dict(self.left_out)}


def _groups(rows: list[Row], decisions: dict[tuple[str, str], PairDecision]) -> list[list[Row]]:
    """Partition rows so that every pair in different groups is decided one consistent way,
    with the groups totally ordered (best first).

    Undecided pairs join their groups; groups whose cross pairs disagree join; a cycle
    among groups (A ahead of B ahead of C ahead of A) joins. The smallest such partition is returned.
    """
    groups: list[list[Row]] = [[r] for r in rows]

    def direction(x: list[Row], y: list[Row]) -> int | None:
        signs = {decisions[(a.variant, b.variant)].sign for a in x for b in y}
        return signs.pop() if len(signs) == 1 and 0 not in signs else None

    while True:
        pair = next(((i, j) for i, j in combinations(range(len(groups)), 2)
                     if direction(groups[i], groups[j]) is None), None)
        if pair is None:
            n = len(groups)
            reach = [[i != j and direction(groups[i], groups[j]) == 1 for j in range(n)] for i in range(n)]
            for k in range(n):
                for i in range(n):
                    for j in range(n):
                        reach[i][j] = reach[i][j] or (reach[i][k] and reach[k][j])
            pair = next(((i, j) for i, j in combinations(range(n), 2) if reach[i][j] and reach[j][i]), None)
            if pair is None:
                wins = [sum(row) for row in reach]
                return [groups[i] for i in sorted(range(n), key=lambda i: -wins[i])]
        i, j = pair
        groups[i] = groups[i] + groups[j]
        del groups[j]


def rank(rows: Sequence[Row], workload: str, mode: str = "closed", level: int = 0,
         left_out: dict[str, str] | None = None) -> Ranking:
    """Place rows so that every pair in different places is told apart by non-overlapping intervals.

    :param rows: :class:`serverlab.report.rows.Row` objects of one workload, mode and level
        (the candidates: interference and failed rows already left out).
    :param workload: the workload (wrk counts only for hello).
    :param mode: the load mode; :param level: the level (both recorded in the ranking).
    :param left_out: variants not ranked and why, recorded as given.
    :return: a :class:`Ranking`.
    """
    rows = list(rows)
    decisions: dict[tuple[str, str], PairDecision] = {}
    for i, a in enumerate(rows):
        for b in rows[i + 1:]:
            decisions[(a.variant, b.variant)] = compare_pair(a, b, workload)
            decisions[(b.variant, a.variant)] = compare_pair(b, a, workload)  # its texts name b first
    groups = [sorted(g, key=lambda r: best_figure(r, workload), reverse=True) for g in _groups(rows, decisions)]
    places = []
    for number, group in enumerate(groups, start=1):
        following = groups[number] if number < len(groups) else []
        ahead = tuple((a.variant, b.variant, decisions[(a.variant, b.variant)].decisive) for a in group for b in following)
        places.append(Place(number, tuple(group), {r.variant: intervals_of(r, workload) for r in group},
                            tuple(r.variant for r in group if is_generator_bound(r)), ahead))
    return Ranking(workload, str(mode), level, tuple(places), decisions, dict(left_out or {}))


@dataclass(frozen=True)
class LevelRanking:
    """The ranking of one workload and mode at the level its verdict is about.

    :param workload: the workload; :param mode: the load mode.
    :param level: the highest level where some variant had no failures.
    :param levels: every level measured, highest first.
    :param at_level: every row at ``level``.
    :param excluded: rows at ``level`` with failed requests or repetitions (not ranked).
    :param interfered: clean rows flagged for interference (left out).
    :param candidates: the rows ranked.
    :param ranking: their :class:`Ranking` (``None`` when every clean row was disturbed).
    """

    workload: str
    mode: str
    level: int
    levels: tuple[int, ...]
    at_level: tuple[Row, ...]
    excluded: tuple[Row, ...]
    interfered: tuple[Row, ...]
    candidates: tuple[Row, ...]
    ranking: Ranking | None

    @property
    def places(self) -> tuple[Place, ...]:
        """The places, best first (empty without candidates)."""
        return self.ranking.places if self.ranking else ()

    @property
    def tiers(self) -> tuple[tuple[Row, ...], ...]:
        """The rows of each place, best first; rows sharing a tier cannot be told apart."""
        return tuple(p.rows for p in self.places)

    @property
    def decisions(self) -> dict[tuple[str, str], PairDecision]:
        """:class:`PairDecision` keyed by (a.variant, b.variant), both directions."""
        return self.ranking.decisions if self.ranking else {}

    @property
    def winner(self) -> Row | None:
        """The row alone in first place (ahead of every other candidate on non-overlapping CIs), or ``None``."""
        return self.ranking.winner if self.ranking else None

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: :meth:`Ranking.to_dict` (``workload``, ``mode``, ``level``, ``winner``, ``places``,
        ``left_out``) plus ``levels``."""
        left_out = {r.variant: "failed requests or repetitions" for r in self.excluded}
        left_out.update({r.variant: "interference (other programs used the lab's CPUs)" for r in self.interfered})
        base = (self.ranking.to_dict() if self.ranking else
                {"workload": self.workload, "mode": self.mode, "level": self.level, "winner": None, "places": []})
        return {**base, "left_out": left_out, "levels": list(self.levels)}


def rank_level(rows: Sequence[Row], workload: str, mode: str | None = None) -> LevelRanking | None:
    """Rank one workload's rows (one mode) at the highest level where some variant had no failures.

    Rows flagged for interference and rows with failures are set aside; the rest are placed by :func:`rank`.

    :param rows: :class:`serverlab.report.rows.Row` objects of one workload and mode.
    :param workload: the workload (wrk's ceiling counts only for the one it calibrated, :func:`calibrated_workload`).
    :param mode: the mode (default: the rows' own).
    :return: the :class:`LevelRanking`, or ``None`` when no level has a clean measured row.
    """
    levels = sorted({r.level for r in rows}, reverse=True)
    for level in levels:
        at_level = [r for r in rows if r.level == level]
        usable = [r for r in at_level if r.clean and r.rps is not None]
        if usable:
            break
    else:
        return None
    mode = str(mode or at_level[0].mode)
    interfered = [r for r in usable if row_class(r) == BottleneckClass.INTERFERENCE]
    candidates = [r for r in usable if row_class(r) != BottleneckClass.INTERFERENCE]
    return LevelRanking(workload, mode, level, tuple(levels), tuple(at_level), tuple(r for r in at_level if not r.clean),
                        tuple(interfered), tuple(candidates), rank(candidates, workload, mode, level) if candidates else None)

