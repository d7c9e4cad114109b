"""Ranking that follows the physics: who is fastest, on evidence that can tell, or "cannot tell".

A Locust RPS figure is the server's capacity only when the server was the
bottleneck (:mod:`serverlab.bottleneck`). So variants are ordered pairwise on
three kinds of evidence, each used only where it is valid:

* **measured RPS** — between cells where Locust was not the limit (server-bound
  or below saturation), significant when the bootstrap CI of the ratio of medians
  excludes 1 (:func:`serverlab.stats.compare_samples`). A generator-bound cell's
  RPS is only a floor: it counts when that floor is significantly above the other's figure;
* **wrk's ceiling** — the reference generator at the same budget (the calibration,
  hello only): one run per variant, so no CI; closer than :data:`WRK_TIE_MARGIN`
  counts as a tie;
* **CPU-cost capacity** — ``server_cpus ÷ CPU seconds per request`` per repetition,
  with its bootstrap CI; used when a generator-bound cell is involved or both are
  server-bound (for a server that waits on I/O or on each connection it is not a capacity).

A variant ranks ahead of another when some evidence says so and none says the
opposite; when evidence disagrees, or nothing separates two variants, the verdict
says "cannot tell on this machine" and what would tell. A cell flagged for
interference is left out. A winner is named only when it is ahead of every other variant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from serverlab.stats import Estimate, compare_samples, format_estimate, format_rps, median_ci
from serverlab.terms import Bottleneck

#: wrk measures each variant once per run (no CI). On the quiet machine, two variants
#: with the same CPU cost (gunicorn-gevent 6,400, gunicorn-gthread 6,427; measuring-here.md)
#: differ by under 1%, but single wrk runs on a shared VM vary by several per cent: figures
#: closer than 10% are treated as tied.
WRK_TIE_MARGIN = 0.10
#: Below this difference wrk does not even lean one way (used to spot disagreement).
WRK_LEAN_MARGIN = 0.02
#: A "cannot tell" verdict explains at most this many unresolved pairs (the leader against
#: the next ones) and counts the rest: 13 tied variants make 78 pairs, a page of text.
MAX_EXPLAINED_PAIRS = 3
#: wrk's ceiling and the CPU-cost capacity of one variant "disagree" beyond this
#: relative difference. measuring-here.md: they agreed within 2% for three variants,
#: were 16% apart for uwsgi-threads and 33% for werkzeug-single (a serial server waits
#: on each connection, so it cannot use its whole budget).
CAPACITY_AGREEMENT = 0.15
#: The workload wrk calibrates (its ceiling is evidence only for this workload).
CALIBRATION_WORKLOAD = "hello"
#: Classes whose measured RPS is not limited by the generator.
_RPS_CLASSES = (Bottleneck.SERVER_BOUND, Bottleneck.BELOW_SATURATION)


def row_class(row: Any) -> str | None:
    """The bottleneck class of a report row (``None`` when unknown)."""
    return (row.bottleneck or {}).get("class") if getattr(row, "bottleneck", None) else None


def cost_capacity(cpu_ms_per_request: Sequence[float], server_cpus: float) -> Estimate | None:
    """Capacity implied by CPU cost: ``server_cpus × 1000 ÷ CPU ms per request`` per repetition.

    :param cpu_ms_per_request: the repetitions' server CPU milliseconds per request.
    :param server_cpus: the server's CPU budget (cores).
    :return: the median capacity (RPS) with its 95% bootstrap CI, or ``None`` without data.
    """
    values = [server_cpus * 1000.0 / ms for ms in cpu_ms_per_request if ms and ms > 0]
    return median_ci(values) if values else None


@dataclass(frozen=True)
class Evidence:
    """One kind of evidence about a pair (a, b).

    :param source: ``"measured RPS"``, ``"wrk"`` or ``"CPU cost"``.
    :param sign: +1 a ahead, -1 b ahead, 0 cannot tell.
    :param lean: the direction even when not decisive (+1, -1, 0).
    :param text: the figures, e.g. ``"wrk 12,061 vs 6,400 RPS"``.
    """

    source: str
    sign: int
    lean: int
    text: str


@dataclass(frozen=True)
class PairDecision:
    """How two rows compare: ``sign`` +1 (a ahead), -1 (b ahead), 0 (cannot tell), the evidence, and whether it conflicts."""

    sign: int
    evidence: tuple[Evidence, ...]
    conflict: bool


def _generator_bound(row: Any) -> bool:
    return row_class(row) == Bottleneck.GENERATOR_BOUND


def compare_pair(a: Any, b: Any, workload: str) -> PairDecision:
    """Compare two report rows on every valid kind of evidence (see the module docstring).

    :param a: a :class:`serverlab.report.rows.Row`; :param b: another row at the same level.
    :param workload: the workload (wrk's ceiling counts only for :data:`CALIBRATION_WORKLOAD`).
    :return: a :class:`PairDecision`.
    """
    evidence: list[Evidence] = []
    ga, gb = _generator_bound(a), _generator_bound(b)
    if a.rps is not None and b.rps is not None:
        cmp = compare_samples(b.rps.samples, a.rps.samples, higher_is_better=True)
        text = f"Locust {format_rps(a.rps.median)} vs {format_rps(b.rps.median)} RPS"
        direction = 0 if cmp.speedup is None else (1 if cmp.speedup > 1 else -1 if cmp.speedup < 1 else 0)
        if not ga and not gb:
            evidence.append(Evidence("measured RPS", direction if cmp.significant else 0, direction, text))
        elif ga and not gb and cmp.significant and direction > 0:
            evidence.append(Evidence("measured RPS", 1, 1, text + f" ({a.variant}'s floor is above)"))
        elif gb and not ga and cmp.significant and direction < 0:
            evidence.append(Evidence("measured RPS", -1, -1, text + f" ({b.variant}'s floor is above)"))
    wrk_a = (a.calibration or {}).get("wrk_rps")
    wrk_b = (b.calibration or {}).get("wrk_rps")
    if workload == CALIBRATION_WORKLOAD and wrk_a and wrk_b:
        ratio = float(wrk_a) / float(wrk_b)
        sign = 1 if ratio > 1 + WRK_TIE_MARGIN else -1 if ratio < 1 / (1 + WRK_TIE_MARGIN) else 0
        lean = 1 if ratio > 1 + WRK_LEAN_MARGIN else -1 if ratio < 1 / (1 + WRK_LEAN_MARGIN) else 0
        evidence.append(Evidence("wrk", sign, lean, f"wrk {format_rps(float(wrk_a))} vs {format_rps(float(wrk_b))} RPS"))
    both_server = row_class(a) == row_class(b) == Bottleneck.SERVER_BOUND
    cap_a, cap_b = getattr(a, "cost_capacity_rps", None), getattr(b, "cost_capacity_rps", None)
    if (ga or gb or both_server) and cap_a is not None and cap_b is not None:
        cmp = compare_samples(cap_b.samples, cap_a.samples, higher_is_better=True)
        direction = 0 if cmp.speedup is None else (1 if cmp.speedup > 1 else -1 if cmp.speedup < 1 else 0)
        evidence.append(Evidence("CPU cost", direction if cmp.significant else 0, direction,
                                 f"CPU-cost capacity {format_estimate(cap_a)} vs {format_estimate(cap_b)} RPS"))
    strong = {e.sign for e in evidence if e.sign}
    leans = {e.lean for e in evidence if e.source == "wrk" and e.lean}
    conflict = len(strong) > 1 or (len(strong) == 1 and bool(leans) and leans != strong)
    sign = 0 if conflict or not strong else strong.pop()
    return PairDecision(sign, tuple(evidence), conflict)


def rank(rows: Sequence[Any], workload: str) -> tuple[list[list[Any]], dict[tuple[str, str], PairDecision]]:
    """Order rows into tiers: each tier holds the rows no remaining row is ahead of.

    :return: (tiers, best first; decisions keyed by (a.variant, b.variant), both directions).
    """
    decisions: dict[tuple[str, str], PairDecision] = {}
    for i, a in enumerate(rows):
        for b in rows[i + 1:]:
            decisions[(a.variant, b.variant)] = compare_pair(a, b, workload)
            decisions[(b.variant, a.variant)] = compare_pair(b, a, workload)  # its texts name b first

    def ahead(x: Any, y: Any) -> bool:
        return decisions[(x.variant, y.variant)].sign > 0

    def best_figure(row: Any) -> float:
        wrk = (row.calibration or {}).get("wrk_rps") if workload == CALIBRATION_WORKLOAD else None
        if wrk:
            return float(wrk)
        if _generator_bound(row) and getattr(row, "cost_capacity_rps", None) is not None:
            return row.cost_capacity_rps.median
        return row.rps.median if row.rps is not None else 0.0

    remaining = list(rows)
    tiers: list[list[Any]] = []
    while remaining:
        tier = [r for r in remaining if not any(ahead(o, r) for o in remaining if o is not r)] or list(remaining)
        tier.sort(key=best_figure, reverse=True)
        tiers.append(tier)
        remaining = [r for r in remaining if r not in tier]
    return tiers, decisions


def _why_not(decision: PairDecision) -> str:
    """Why a pair cannot be told apart, in words."""
    if decision.conflict:
        says = [f"{e.source} ({e.text}) puts {'the first' if (e.sign or e.lean) > 0 else 'the second'} ahead"
                for e in decision.evidence if e.sign or (e.source == "wrk" and e.lean)]
        return "the evidence disagrees: " + "; ".join(says)
    if not decision.evidence:
        return "no evidence can compare them (both generator-bound, no wrk or CPU-cost figures)"
    return "every difference is inside the confidence intervals or margins: " + "; ".join(e.text for e in decision.evidence)


def _row_evidence(row: Any, workload: str) -> str:
    """The figures a row contributes: its class, Locust RPS, wrk, CPU-cost capacity."""
    summary = row.bottleneck or {}
    kind = summary.get("class", "unclassified")
    figures = []
    if summary.get("server_utilization") is not None:
        figures.append(f"server {summary['server_utilization']:.0%} busy")
    if summary.get("generator_utilization") is not None:
        figures.append(f"Locust {summary['generator_utilization']:.0%}")
    parts = [f"{kind}" + (f" ({', '.join(figures)})" if figures else "")]
    if row.rps is not None:
        parts.append(f"Locust {format_estimate(row.rps)} RPS" + (" (a floor)" if kind == Bottleneck.GENERATOR_BOUND else ""))
    wrk = (row.calibration or {}).get("wrk_rps")
    if wrk and workload == CALIBRATION_WORKLOAD:
        parts.append(f"wrk {format_rps(float(wrk))} RPS")
    if getattr(row, "cost_capacity_rps", None) is not None:
        parts.append(f"CPU-cost capacity {format_estimate(row.cost_capacity_rps)} RPS")
    return f"{row.variant}: " + ", ".join(parts)


def capacity_disagreement(row: Any, workload: str) -> str | None:
    """A sentence when wrk's ceiling and the CPU-cost capacity of one variant differ by more than :data:`CAPACITY_AGREEMENT`."""
    wrk = (row.calibration or {}).get("wrk_rps")
    cap = getattr(row, "cost_capacity_rps", None)
    if workload != CALIBRATION_WORKLOAD or not wrk or cap is None or not cap.median:
        return None
    diff = cap.median / float(wrk) - 1
    if abs(diff) <= CAPACITY_AGREEMENT:
        return None
    why = ("the server cannot use its whole CPU budget (it waits on connections or I/O)" if diff > 0
           else "wrk reached more than its CPU cost implies (CPU per request falls at higher load)")
    return (f"for {row.variant} wrk ({format_rps(float(wrk))} RPS) and CPU cost ({format_rps(cap.median)} RPS) disagree by "
            f"{abs(diff):.0%}: {why}")


@dataclass(frozen=True)
class LevelRanking:
    """The ranking of one workload and mode at the level its verdict is about.

    :param level: the highest level where some variant had no failures.
    :param levels: every level measured, highest first.
    :param at_level: every row at ``level``.
    :param excluded: rows at ``level`` with failed requests or repetitions (not ranked).
    :param interfered: clean rows flagged for interference (left out).
    :param candidates: the rows ranked.
    :param tiers: places, best first (:func:`rank`); rows sharing a tier cannot be told apart.
    :param decisions: :class:`PairDecision` keyed by (a.variant, b.variant), both directions.
    :param winner: the row ahead of every other candidate, or ``None``.
    """

    level: int
    levels: tuple[int, ...]
    at_level: tuple[Any, ...]
    excluded: tuple[Any, ...]
    interfered: tuple[Any, ...]
    candidates: tuple[Any, ...]
    tiers: tuple[tuple[Any, ...], ...]
    decisions: dict[tuple[str, str], PairDecision]
    winner: Any | None


def rank_level(rows: Sequence[Any], workload: str) -> LevelRanking | None:
    """Rank one workload's rows (one mode) at the highest level where some variant had no failures.

    Rows flagged for interference and rows with failures are set aside; the rest are
    ordered by :func:`rank`, and a winner is the one row of the first tier that is ahead
    of every other candidate.

    :param rows: :class:`serverlab.report.rows.Row` objects of one workload and mode.
    :param workload: the workload (wrk's ceiling counts only for :data:`CALIBRATION_WORKLOAD`).
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
    interfered = [r for r in usable if row_class(r) == Bottleneck.INTERFERENCE]
    candidates = [r for r in usable if row_class(r) != Bottleneck.INTERFERENCE]
    tiers, decisions = rank(candidates, workload) if candidates else ([], {})
    winner = None
    if tiers and len(tiers[0]) == 1:
        first = tiers[0][0]
        if all(decisions[(first.variant, o.variant)].sign > 0 for o in candidates if o is not first):
            winner = first
    return LevelRanking(level, tuple(levels), tuple(at_level), tuple(r for r in at_level if not r.clean),
                        tuple(interfered), tuple(candidates), tuple(tuple(t) for t in tiers), decisions, winner)


def rate_verdict(workload: str, mode: str, rows: Sequence[Any], reason: Callable[[str, list[Any], list[str]], str],
                 level_text: Callable[[str, int], str]) -> str:
    """The verdict of a closed- or requests-mode workload, in words.

    The level is the highest one where some variant had no failures. Rows flagged
    for interference or with failures are left out and named. The rest are ordered by
    :func:`rank`; a winner is named only when one variant is ahead of every other
    (:func:`rank_level`).

    :param workload: the workload; :param mode: ``closed`` or ``requests``.
    :param rows: this workload's :class:`serverlab.report.rows.Row` objects in this mode.
    :param reason: ``reason(workload, rows, left_out)``: the principle and checkable ratios
        (only rows whose RPS is not the generator's are passed; ``left_out`` names the others).
    :param level_text: ``level_text(mode, level)``, e.g. ``"32 users"``.
    :return: the verdict text.
    """
    ranking = rank_level(rows, workload)
    if ranking is None:
        return (f"No winner ({mode} mode): no variant completed any load level without failed requests "
                f"or failed repetitions; see the failed cells.")
    level, levels, interfered = ranking.level, ranking.levels, ranking.interfered
    candidates = list(ranking.candidates)
    where = f"{mode} mode, {level_text(mode, level)}"
    tail: list[str] = []
    if level != levels[0]:
        tail.append(f"This is the highest level where some variant had no failures (at {level_text(mode, levels[0])} "
                    f"every variant had failures).")
    excluded = [r.variant for r in ranking.excluded]
    if excluded:
        tail.append(f"Not considered (failed requests or repetitions at this level): {', '.join(excluded)}.")
    if interfered:
        shares = ", ".join(f"{r.variant} ({(r.bottleneck or {}).get('interference_share') or 0:.0%} of a lab CPU side)"
                           for r in interfered)
        tail.append(f"Left out (other programs used the lab's CPUs while they ran: interference): {shares}; "
                    f"rerun them on a quiet machine or with --retry-busy N.")
    if not candidates:
        return (f"Cannot tell on this machine ({where}): every measured variant ran while other programs used the "
                f"lab's CPUs. What would tell: a quiet machine (see the run header's quietness probe), or "
                f"--retry-busy N to re-measure disturbed cells. " + " ".join(tail)).strip()

    tiers = [list(t) for t in ranking.tiers]
    decisions, winner = ranking.decisions, ranking.winner
    top = tiers[0]
    others = [r for r in candidates if r not in top]
    parts: list[str] = []
    what_would_tell: list[str] = []
    unresolved = [(a, b) for i, a in enumerate(top) for b in top[i + 1:]]
    if winner is None and len(top) == 1:
        unresolved = [(top[0], o) for o in others if decisions[(top[0].variant, o.variant)].sign <= 0]
    if winner is not None:
        runner = tiers[1][0] if len(tiers) > 1 else None
        if runner is None:
            parts.append(f"{winner.variant} wins ({where}): median {format_rps(winner.rps.median)} RPS, "
                         f"the only variant measured cleanly at this level.")
        else:
            d = decisions[(winner.variant, runner.variant)]
            decisive = [e for e in d.evidence if e.sign > 0]
            if row_class(winner) in _RPS_CLASSES and any(e.source == "measured RPS" for e in decisive):
                cmp = compare_samples(runner.rps.samples, winner.rps.samples, higher_is_better=True)
                parts.append(f"{winner.variant} wins ({where}): median {format_rps(winner.rps.median)} RPS, "
                             f"{cmp.text} than the runner-up {runner.variant} ({format_rps(runner.rps.median)} RPS).")
            else:
                parts.append(f"{winner.variant} wins ({where}) on "
                             f"{' and '.join(dict.fromkeys(e.source for e in decisive))}, ahead of the runner-up "
                             f"{runner.variant}: " + "; ".join(e.text for e in decisive) + ".")
    else:
        names = ", ".join(dict.fromkeys(x.variant for pair in unresolved for x in pair))
        shown = unresolved[:MAX_EXPLAINED_PAIRS]
        why = "; ".join(f"{a.variant} vs {b.variant}: {_why_not(decisions[(a.variant, b.variant)])}"
                        for a, b in shown)
        if len(unresolved) > len(shown):
            why += (f"; {len(unresolved) - len(shown)} more pairs among them cannot be told apart either "
                    f"(the Evidence below gives every variant's figures)")
        second = tiers[1] if len(tiers) > 1 else []
        if len(top) > 1 and second and all(decisions[(a.variant, b.variant)].sign > 0 for a in top for b in second):
            sources = dict.fromkeys(e.source for a in top for b in second
                                    for e in decisions[(a.variant, b.variant)].evidence if e.sign > 0)
            parts.append(f"{', '.join(r.variant for r in top)} rank first ({where}), ahead of "
                         f"{', '.join(r.variant for r in second)} on {' and '.join(sources)}; but cannot tell on "
                         f"this machine which of {names} is fastest: {why}.")
        else:
            parts.append(f"Cannot tell on this machine which of {names} is fastest ({where}): {why}.")
        gen_involved = any(_generator_bound(x) for pair in unresolved for x in pair)
        if gen_involved:
            what_would_tell.append("more CPUs for the load generator (a larger budget.loadgen_cpuset, with "
                                   "loadgen_processes = \"auto\") or a smaller server budget (e.g. budget.server_cpus = 0.5), "
                                   "so that the servers, not Locust, reach their limit")
        if any(not _generator_bound(x) for pair in unresolved for x in pair):
            what_would_tell.append("more repetitions or longer cells, to narrow the confidence intervals")
    if len(tiers) > 1 or len(candidates) > 2:
        order = "; ".join(f"{i}. {', '.join(r.variant for r in tier)}" for i, tier in enumerate(tiers, start=1))
        parts.append(f"Order on the evidence (variants sharing a place cannot be told apart): {order}.")
    generator_bound = [r for r in candidates if _generator_bound(r)]
    if generator_bound:
        parts.append(f"Locust was the bottleneck for {', '.join(r.variant for r in generator_bound)} (generator-bound: "
                     f"its RPS is only a floor), so their places rest on wrk's ceiling and CPU-cost capacity "
                     f"(budget ÷ CPU seconds per request), never on Locust's RPS.")
    if all(row_class(r) == Bottleneck.BELOW_SATURATION for r in candidates):
        parts.append("No server and no generator reached its CPU limit at this level: this ranks the variants at "
                     "this concurrency (users waiting on latency), not their capacity.")
    parts.append("Evidence — " + "; ".join(_row_evidence(r, workload) for r in candidates) + ".")
    disagreements = [t for t in (capacity_disagreement(r, workload) for r in candidates) if t]
    if disagreements:
        parts.append("Where the evidence disagrees: " + "; ".join(disagreements) + ".")
    if what_would_tell:
        parts.append("What would tell: " + "; or ".join(what_would_tell) + ".")
    parts.extend(tail)
    measured = [r for r in candidates if row_class(r) in _RPS_CLASSES or row_class(r) is None]
    text = reason(workload, measured, [r.variant for r in candidates if r not in measured])
    if text:
        parts.append(text)
    return " ".join(parts)
