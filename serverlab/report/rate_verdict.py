"""The verdict of a closed- or requests-mode workload, in words, from its
:class:`~serverlab.report.ranking.LevelRanking` (:func:`serverlab.report.ranking.rank_level`
picks the level and the candidates, interference and failed rows left out, and places them).

:func:`rate_verdict` words the result: a winner only when its intervals clear the runner-up's, otherwise
"cannot tell on this machine" and what would tell, then the order by places, every
variant's evidence, where wrk and CPU cost disagree, and the workload's reason.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from serverlab import bottleneck as _bottleneck
from serverlab.report.formatting import format_estimate, format_rps
from serverlab.report.ranking import (
    RPS_CLASSES,
    MAX_EXPLAINED_PAIRS,
    CAPACITY_AGREEMENT,
    PairDecision,
    is_generator_bound,
    interval_text,
    rank_level,
    row_class,
    wrk_estimate,
)
from serverlab.stats import compare_samples
from serverlab.terms import BottleneckClass


def _why_not(decision: PairDecision) -> str:
    """Why a pair cannot be told apart, in words."""
    if decision.conflict:
        says = [f"{e.source} ({e.text}) puts {'the first' if e.sign > 0 else 'the second'} ahead"
                for e in decision.evidence if e.sign]
        return "the evidence disagrees: " + "; ".join(says)
    if not decision.evidence:
        return "no evidence can compare them (both generator-bound, no wrk or CPU-cost figures)"
    return "their intervals overlap: " + "; ".join(e.text for e in decision.evidence)


def _row_evidence(row: Any, workload: str) -> str:
    """The figures a row contributes: its class, Locust RPS, wrk, CPU-cost capacity."""
    summary = row.bottleneck
    kind = summary.kind if summary is not None else "unclassified"
    figures = []
    if summary is not None and summary.server_utilization is not None:
        figures.append(f"server {summary.server_utilization:.0%} busy")
    if summary is not None and summary.generator_utilization is not None:
        figures.append(f"Locust {summary.generator_utilization:.0%}")
    parts = [f"{kind}" + (f" ({', '.join(figures)})" if figures else "")]
    if row.rps is not None:
        parts.append(f"Locust {format_estimate(row.rps)} RPS" + (" (a floor)" if kind == BottleneckClass.GENERATOR_BOUND else ""))
    wrk = wrk_estimate(row, workload)
    if wrk is not None:
        parts.append(f"wrk {interval_text(wrk)} RPS")
    if getattr(row, "cost_capacity_rps", None) is not None:
        parts.append(f"CPU-cost capacity {format_estimate(row.cost_capacity_rps)} RPS")
    return f"{row.variant}: " + ", ".join(parts)


def capacity_disagreement(row: Any, workload: str) -> str | None:
    """A sentence when wrk's ceiling and the CPU-cost capacity of one variant differ by more than :data:`CAPACITY_AGREEMENT`."""
    wrk = wrk_estimate(row, workload)
    cap = getattr(row, "cost_capacity_rps", None)
    if wrk is None or not wrk.median or cap is None or not cap.median:
        return None
    diff = cap.median / wrk.median - 1
    if abs(diff) <= CAPACITY_AGREEMENT:
        return None
    why = ("the server cannot use its whole CPU budget (it waits on connections or I/O)" if diff > 0
           else "wrk reached more than its CPU cost implies (CPU per request falls at higher load)")
    return (f"for {row.variant} wrk ({format_rps(wrk.median)} RPS) and CPU cost ({format_rps(cap.median)} RPS) disagree by "
            f"{abs(diff):.0%}: {why}")


def _what_would_tell(unresolved: list[tuple[Any, Any]], decisions: dict[tuple[str, str], PairDecision]) -> list[str]:
    out = []
    rows = [x for pair in unresolved for x in pair]
    if any(is_generator_bound(x) for x in rows):
        out.append("more CPUs for the load generator (a larger budget.loadgen_cpuset, with loadgen_processes = "
                   "\"auto\") or a smaller server budget (e.g. budget.server_cpus = 0.5), so that the servers, "
                   "not Locust, reach their limit")
    if any(not is_generator_bound(x) for x in rows):
        out.append("more repetitions (repetitions, or target_ci = 0.05 with max_repetitions) or longer cells "
                   "(duration), to narrow the confidence intervals")
    singles = {e.source for a, b in unresolved for e in decisions[(a.variant, b.variant)].evidence
               if (e.a is not None and not e.a.has_ci) or (e.b is not None and not e.b.has_ci)}
    if singles:
        out.append(f"an interval for {' and '.join(sorted(singles))} (measured once per variant here: at least two "
                   "repetitions, each with its own wrk run)")
    return out


def rate_verdict(workload: str, mode: str, rows: Sequence[Any], reason: Callable[[str, list[Any], list[str]], str],
                 level_text: Callable[[str, int], str]) -> str:
    """The verdict of a closed- or requests-mode workload.

    The level is the highest one where some variant had no failures. Rows flagged
    for interference or with failures are left out and named. The rest are placed by
    :func:`serverlab.report.ranking.rank`; a winner is named only when it holds place 1
    alone, i.e. its intervals clear every other variant's on the evidence cited.

    :param workload: the workload; :param mode: ``closed`` or ``requests``.
    :param rows: this workload's :class:`serverlab.report.rows.Row` objects in this mode.
    :param reason: ``reason(workload, rows, left_out)``: the principle and checkable ratios
        (only rows whose RPS is not the generator's are passed; ``left_out`` names the others).
    :param level_text: ``level_text(mode, level)``, e.g. ``"32 users"``.
    :return: the verdict text.
    """
    level_ranking = rank_level(rows, workload, mode)
    if level_ranking is None:
        return (f"No winner ({mode} mode): no variant completed any load level without failed requests "
                f"or failed repetitions; see the failed cells.")
    level, levels, at_level = level_ranking.level, level_ranking.levels, level_ranking.at_level
    interfered, ranking = level_ranking.interfered, level_ranking.ranking
    where = f"{mode} mode, {level_text(mode, level)}"
    tail: list[str] = []
    if level != levels[0]:
        tail.append(f"This is the highest level where some variant had no failures (at {level_text(mode, levels[0])} "
                    f"every variant had failures).")
    excluded = [r.variant for r in at_level if not r.clean]
    if excluded:
        tail.append(f"Not considered (failed requests or repetitions at this level): {', '.join(excluded)}.")
    if interfered:
        shares = ", ".join(f"{r.variant} ({_bottleneck.disturbance(r.bottleneck)})" for r in interfered)
        tail.append(f"Left out ({_bottleneck.left_out_because([r.bottleneck for r in interfered])}): {shares}; "
                    f"rerun them on a quiet machine or with --retry-busy N.")
    if ranking is None:
        return (f"Cannot tell on this machine ({where}): every measured variant ran while other programs used the "
                f"lab's CPUs. What would tell: a quiet machine (see the run header's quietness probe), or "
                f"--retry-busy N to re-measure disturbed cells. " + " ".join(tail)).strip()

    places, decisions = ranking.places, ranking.decisions
    candidates = [r for p in places for r in p.rows]
    top = list(places[0].rows)
    winner = ranking.winner
    parts: list[str] = []
    what_would_tell: list[str] = []
    if winner is not None and len(places) == 1:
        parts.append(f"{winner.variant} wins ({where}): median {format_rps(winner.rps.median)} RPS, "
                     f"the only variant measured cleanly at this level.")
    elif winner is not None:
        runner = places[1].rows[0]
        decisive = decisions[(winner.variant, runner.variant)].decisive
        sources = " and ".join(dict.fromkeys(e.source for e in decisive))
        texts = [e.text + (f" ({compare_samples(runner.rps.samples, winner.rps.samples).text})"
                           if e.source == "measured RPS" else "") for e in decisive]
        parts.append(f"{winner.variant} wins ({where}) on {sources}: its interval clears the runner-up "
                     f"{runner.variant}'s (95% CIs, no overlap): " + "; ".join(texts) + ".")
    else:
        unresolved = [(a, b) for i, a in enumerate(top) for b in top[i + 1:]
                      if decisions[(a.variant, b.variant)].sign == 0]
        unresolved.sort(key=lambda pair: (pair[0] is not top[0], top.index(pair[0]), top.index(pair[1])))
        names = ", ".join(r.variant for r in top)
        shown = unresolved[:MAX_EXPLAINED_PAIRS]
        why = "; ".join(f"{a.variant} vs {b.variant}: {_why_not(decisions[(a.variant, b.variant)])}" for a, b in shown)
        if len(unresolved) > len(shown):
            why += (f"; {len(unresolved) - len(shown)} more pairs among them cannot be told apart either "
                    f"(the Evidence below gives every variant's figures)")
        if len(unresolved) < len(top) * (len(top) - 1) // 2:
            why += ("; the others are ordered, but a variant between them shares a place with both, so they "
                    "share the place")
        if len(places) > 1:
            sources = dict.fromkeys(e.source for a in top for b in places[1].rows
                                    for e in decisions[(a.variant, b.variant)].decisive)
            parts.append(f"{names} share first place ({where}), ahead of {', '.join(places[1].variants)} on "
                         f"{' and '.join(sources)} (95% CIs, no overlap); but cannot tell on this machine which of "
                         f"{names} is fastest: {why}.")
        else:
            parts.append(f"Cannot tell on this machine which of {names} is fastest ({where}): {why}.")
        what_would_tell = _what_would_tell(unresolved, decisions)
    if len(places) > 1 or len(candidates) > 2:
        order = "; ".join(f"{p.number}. {', '.join(p.variants)}" for p in places)
        parts.append(f"Order on the evidence (variants sharing a place cannot be told apart; each place is ahead of "
                     f"the next on non-overlapping 95% CIs): {order}.")
    generator_bound = [r for r in candidates if is_generator_bound(r)]
    if generator_bound:
        parts.append(f"Locust was the bottleneck for {', '.join(r.variant for r in generator_bound)} (generator-bound: "
                     f"its RPS is only a floor), so their places rest on wrk's ceiling and CPU-cost capacity "
                     f"(budget ÷ CPU seconds per request), never on Locust's RPS.")
    if all(row_class(r) == BottleneckClass.BELOW_SATURATION for r in candidates):
        parts.append("No server and no generator reached its CPU limit at this level: this ranks the variants at "
                     "this concurrency (users waiting on latency), not their capacity.")
    parts.append("Evidence — " + "; ".join(_row_evidence(r, workload) for r in candidates) + ".")
    disagreements = [t for t in (capacity_disagreement(r, workload) for r in candidates) if t]
    if disagreements:
        parts.append("Where the evidence disagrees: " + "; ".join(disagreements) + ".")
    if what_would_tell:
        parts.append("What would tell: " + "; or ".join(what_would_tell) + ".")
    parts.extend(tail)
    measured = [r for r in candidates if row_class(r) in RPS_CLASSES or row_class(r) is None]
    text = reason(workload, measured, [r.variant for r in candidates if r not in measured])
    if text:
        parts.append(text)
    return " ".join(parts)


__all__ = ["capacity_disagreement", "rate_verdict"]
