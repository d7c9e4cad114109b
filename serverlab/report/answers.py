"""The answer first: per workload, one sentence, the places and the evidence each place rests on.

:func:`answers` turns a run's rows into one :class:`Answer` per workload, built on the
ranking's places (:func:`serverlab.report.ranking.rank_level`: closed and requests mode)
or on the sustainable throughput (open mode). Every format shows it first: the sentence,
the ranking chart (:func:`serverlab.report.answer_chart.answer_chart`), a compact table, and the
reasoning as one table row per variant. ``report.json`` and the web UI's Compare result
hold it as data (:meth:`~serverlab.report.answer_data.Answer.to_dict`, :func:`answer_rows`);
the data types live in :mod:`serverlab.report.answer_data`.

Units: RPS; the figures are :class:`~serverlab.stats.Estimate` objects (median, 95% CI).
"""

from __future__ import annotations

from typing import Any, Sequence

from serverlab import bottleneck as _bottleneck
from serverlab.report.answer_data import (
    MEASURED_CLASSES,
    SOURCE_LABELS,
    Answer,
    Figure,
    Placed,
    evidence_estimate,
    valid_sources,
)
from serverlab.report.formatting import format_estimate, format_rps, level_text
from serverlab.report.ranking import PairDecision, rank_level, row_class
from serverlab.report.rate_verdict import capacity_disagreement
from serverlab.report.rows import Row
from serverlab.report.verdicts import (
    DEFAULT_P99_BOUND_MS,
    VERDICT_MODE_PREFERENCE,
    check_facts,
    principle,
    proxy_facts,
    sustainable_throughput,
)
from serverlab.stats import NO_CI_NOTE, Estimate, compare_samples
from serverlab.terms import BottleneckClass, Mode

#: A sentence names at most this many variants it cannot tell apart, then counts the rest.
MAX_NAMED = 4


def _and(items: Sequence[str]) -> str:
    """``["a", "b", "c"]`` → ``"a, b and c"``."""
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else "".join(items)


def _names(variants: Sequence[str]) -> str:
    shown = list(variants[:MAX_NAMED])
    more = len(variants) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more else "")


def _ratio_text(old: Estimate, new: Estimate) -> tuple[str, dict[str, Any]]:
    cmp = compare_samples(old.samples, new.samples, higher_is_better=True)
    data = {"ratio": cmp.speedup, "low": cmp.low, "high": cmp.high, "significant": cmp.significant}
    if cmp.speedup is None:
        return cmp.text, data
    if cmp.low is None or cmp.high is None:
        return f"{cmp.speedup:.2f}× (one sample each: no interval)", data
    return f"{cmp.speedup:.2f}× [{cmp.low:.2f}–{cmp.high:.2f}]", data


def _short_why(decision: PairDecision, names: tuple[str, str] | None = None) -> str:
    """Why a pair shares a place, in a clause; with ``names`` (a, b) a disagreement says who each evidence favours."""
    if decision.conflict:  # as the ranking counts it: a decisive sign, or wrk's lean
        says = [(SOURCE_LABELS[e.source], e.sign or e.lean) for e in decision.evidence
                if e.sign or (e.source == "wrk" and e.lean)]
        ahead = _and([name for name, sign in says if sign > 0])
        behind = _and([name for name, sign in says if sign < 0])
        if names:
            return f"the evidence disagrees ({ahead} favours {names[0]}, {behind} {names[1]})"
        return f"the evidence disagrees ({ahead} ahead, {behind} behind)"
    if not decision.evidence:
        return "no evidence compares them"
    return "their intervals overlap (" + ", ".join(dict.fromkeys(SOURCE_LABELS[e.source] for e in decision.evidence)) + ")"


def _failure_text(row: Row) -> str:
    """Why a row with failures is not ranked: every repetition failed (first error), some did, or failed requests."""
    if row.failed:
        error = row.failed_cells[0].error if row.failed_cells else ""
        return "every repetition failed" + (f" ({error[:100]}{'…' if len(error) > 100 else ''})" if error else "")
    if row.failed_cells:
        return f"{len(row.failed_cells)} of {row.repetitions} repetitions failed"
    return f"{row.failures} failed requests ({row.failure_ratio:.1%})"


def _rate_answer(workload: str, mode: str, rows: list[Row]) -> Answer:
    ranking = rank_level(rows, workload)
    if ranking is None:
        top = max(r.level for r in rows)
        return Answer(workload, mode, None, f"{mode} mode",
                      f"No winner on {workload} ({mode} mode): no variant completed any load level without failed "
                      f"requests or failed repetitions; see the failed cells.",
                      placed=tuple(Placed(r.variant, None, False, r, left_out=_failure_text(r))
                                   for r in rows if r.level == top), principle=principle(workload))
    where = f"{mode} mode, {level_text(mode, ranking.level)}"
    cpus = next((r.server_cpus for r in rows if r.server_cpus is not None), "?")
    decisions, tiers = ranking.decisions, ranking.tiers
    reasons: dict[str, list[str]] = {r.variant: [] for r in ranking.at_level}
    placed: list[Placed] = []
    for number, tier in enumerate(tiers, start=1):
        for row in tier:
            used = {e.source for o in ranking.candidates if o is not row
                    for d in [decisions[(row.variant, o.variant)]] if d.sign
                    for e in d.evidence if e.sign == d.sign}
            evidence = tuple(s for s in SOURCE_LABELS if s in used)
            figures = tuple(Figure(s, est) for s in valid_sources(row, workload)
                            if (est := evidence_estimate(row, s, workload)) is not None)
            mine = reasons[row.variant]
            if row_class(row) == BottleneckClass.GENERATOR_BOUND:
                on = _and(["its floor" if s == "measured RPS" else SOURCE_LABELS[s] for s in evidence])
                mine.append(f"generator-bound: Locust's {format_rps(row.rps.median)} RPS is only a floor; "
                            f"placed on {on or 'nothing that separates it'}")
            disagreement = capacity_disagreement(row, workload)
            if disagreement:
                mine.append(disagreement.removeprefix(f"for {row.variant} "))
            mates = [o for o in tier if o is not row]
            if mates and row is tier[0]:  # said once per place, on its first variant
                mine.append(f"shares place {number} with {_names([o.variant for o in mates])}: "
                            f"{_short_why(decisions[(row.variant, mates[0].variant)])}")
            placed.append(Placed(row.variant, number, len(tier) > 1, row, evidence, figures))
    for row in ranking.excluded:
        why = _failure_text(row)
        reasons[row.variant].append(f"not ranked: {why} at this level")
        placed.append(Placed(row.variant, None, False, row, left_out=why))
    for row in ranking.interfered:
        disturbed = _bottleneck.disturbance(row.bottleneck)
        what = disturbed if disturbed.startswith("the host") else f"other programs used {disturbed}"
        reasons[row.variant].append(f"left out: {what} (interference); rerun on a quiet machine or with --retry-busy N")
        placed.append(Placed(row.variant, None, False, row, left_out="interference"))
    measured = [r for r in ranking.candidates if row_class(r) in MEASURED_CLASSES]
    for variant, fact in check_facts(workload, measured):
        reasons.setdefault(variant, []).append("check (Locust RPS): " + fact)
    for variant, fact in proxy_facts([r for r in rows if r.level == ranking.level]):
        reasons.setdefault(variant, []).append(fact)
    placed = [Placed(p.variant, p.place, p.shared, p.row, p.evidence, p.figures, p.left_out,
                     tuple(reasons.get(p.variant, ()))) for p in placed]
    sentence, winner, runner, lead, would = _rate_sentence(workload, where, ranking)
    return Answer(workload, mode, ranking.level, where, sentence, winner, runner, lead, tuple(placed),
                  principle(workload, cpus), would)


def _rate_sentence(workload: str, where: str, ranking: Any) -> tuple[str, str | None, str | None,
                                                                    dict[str, Any] | None, tuple[str, ...]]:
    """(sentence, winner, runner-up, lead, what would tell) of a ranked level."""
    tiers, decisions, winner = ranking.tiers, ranking.decisions, ranking.winner
    if not tiers:
        return (f"Cannot tell on {workload} ({where}): every variant ran while other programs used the lab's CPUs. "
                f"What would tell: a quiet machine, or --retry-busy N.", None, None, None,
                ("a quiet machine, or --retry-busy N",))
    if winner is not None and len(tiers) == 1:
        return (f"{winner.variant} wins {workload} ({where}): the only variant measured cleanly at this level, "
                f"{format_estimate(winner.rps)} RPS.", winner.variant, None, None, ())
    if winner is not None:
        runner = tiers[1][0]
        decisive = [e.source for e in decisions[(winner.variant, runner.variant)].evidence if e.sign > 0]
        comparable = [(s, a, b) for s in sorted(decisive, key=lambda s: s != "measured RPS")
                      if (a := evidence_estimate(winner, s, workload)) and (b := evidence_estimate(runner, s, workload))]
        with_ci = [c for c in comparable if c[1].has_ci and c[2].has_ci]
        sources = _and([SOURCE_LABELS[s] for s in dict.fromkeys(decisive)])
        if not comparable:
            return (f"{winner.variant} wins {workload} ({where}) on {sources}, ahead of the runner-up "
                    f"{runner.variant}.", winner.variant, runner.variant, None, ())
        source, mine, theirs = (with_ci or comparable)[0]
        ratio, data = _ratio_text(theirs, mine)
        return (f"{winner.variant} wins {workload} ({where}) on {sources}: {SOURCE_LABELS[source]} "
                f"{format_estimate(mine)} vs {format_estimate(theirs)} RPS for the runner-up {runner.variant}, "
                f"{ratio}.", winner.variant, runner.variant, {"source": source, **data}, ())
    top = tiers[0]
    if len(top) > 1:
        unresolved = [(a, b) for i, a in enumerate(top) for b in top[i + 1:]]
    else:
        unresolved = [(top[0], o) for o in ranking.candidates if o is not top[0]
                      and decisions[(top[0].variant, o.variant)].sign <= 0]
    names = list(dict.fromkeys(x.variant for pair in unresolved for x in pair))
    if len(unresolved) == 1:  # one pair: say which evidence favours which
        a, b = unresolved[0]
        whys = {_short_why(decisions[(a.variant, b.variant)], (a.variant, b.variant))}
    else:
        whys = {_short_why(decisions[(a.variant, b.variant)]).split(" (")[0] for a, b in unresolved}
    would = []
    if any(row_class(x) == BottleneckClass.GENERATOR_BOUND for pair in unresolved for x in pair):
        would.append("more CPUs for the load generator or a smaller server budget")
    if any(row_class(x) != BottleneckClass.GENERATOR_BOUND for pair in unresolved for x in pair):
        would.append("more repetitions or longer cells")
    ahead = ""
    if len(top) > 1 and len(tiers) > 1:
        ahead = f"; they share 1st place ahead of {_names([r.variant for r in tiers[1]])}"
    return (f"Cannot tell which of {_names(names)} is fastest on {workload} ({where}){ahead}: "
            f"{'; '.join(sorted(whys))}. What would tell: {'; or '.join(would)}.", None, None, None, tuple(would))


def _open_answer(workload: str, rows: list[Row], bound_ms: float) -> Answer:
    usable = [r for r in rows if row_class(r) != BottleneckClass.INTERFERENCE]
    kept = {id(r) for r in usable}
    sustained = {v: t for (w, v), t in sustainable_throughput(usable, bound_ms).items() if w == workload}
    rates = sorted({t for t in sustained.values() if t is not None}, reverse=True)
    placed = []
    for variant, rate in sorted(sustained.items(), key=lambda kv: -(kv[1] or 0)):
        mine = [r for r in usable if r.variant == variant]
        row = next((r for r in mine if r.level == rate), max(mine, key=lambda r: r.level))
        if rate is None:
            placed.append(Placed(variant, None, False, row, left_out="sustained no target rate",
                                 reasons=(f"sustained no target rate with p99 under {bound_ms:g} ms",)))
            continue
        figure = Figure("sustained rate", Estimate(float(rate), None, None, 1, (float(rate),), NO_CI_NOTE))
        place = rates.index(rate) + 1
        placed.append(Placed(variant, place, list(sustained.values()).count(rate) > 1, row, ("sustained rate",),
                             (figure,)))
    for variant in dict.fromkeys(r.variant for r in rows if id(r) not in kept):
        if variant in sustained:
            continue  # measured cleanly at some rate: placed on it
        row = next(r for r in rows if r.variant == variant)
        placed.append(Placed(variant, None, False, row, left_out="interference",
                             reasons=("left out: other programs used the lab's CPUs (interference)",)))
    where = f"open mode, p99 under {bound_ms:g} ms"
    first = [p for p in placed if p.place == 1]
    if not first:
        sentence = f"No winner on {workload} ({where}): no variant sustained any target rate without failures."
    elif len(first) > 1:
        sentence = (f"Cannot tell which of {_names([p.variant for p in first])} is fastest on {workload} ({where}): "
                    f"all sustained {rates[0]} RPS. What would tell: finer steps of target rate.")
    else:
        runner = next((p for p in placed if p.place == 2), None)
        sentence = (f"{first[0].variant} wins {workload} ({where}): it sustained {rates[0]} RPS"
                    + (f", the runner-up {runner.variant} {rates[1]} RPS" if runner else "")
                    + " (target rates are discrete steps: no interval).")
    winner = first[0].variant if len(first) == 1 else None
    return Answer(workload, Mode.OPEN, rates[0] if rates else None, where, sentence, winner,
                  placed=tuple(placed), principle=principle(workload))


def answers(rows: Sequence[Row], p99_bound_ms: float = DEFAULT_P99_BOUND_MS) -> list[Answer]:
    """One :class:`Answer` per workload, in row order.

    A workload measured in several modes is answered in the mode its verdict uses
    (:data:`serverlab.report.verdicts.VERDICT_MODE_PREFERENCE`): closed and requests mode
    on the ranking's places (:func:`serverlab.report.ranking.rank_level`), open mode on the
    highest sustained target rate (:func:`serverlab.report.verdicts.sustainable_throughput`).

    :param rows: rows from :func:`serverlab.report.rows.aggregate`.
    :param p99_bound_ms: open mode's latency bound (ms).
    :return: the answers.
    """
    by_workload: dict[str, list[Row]] = {}
    for row in rows:
        by_workload.setdefault(row.workload, []).append(row)
    out = []
    for workload, wrows in by_workload.items():
        modes = {r.mode for r in wrows}
        mode = next(m for m in VERDICT_MODE_PREFERENCE if m in modes)
        mrows = [r for r in wrows if r.mode == mode]
        out.append(_open_answer(workload, mrows, p99_bound_ms) if mode == Mode.OPEN
                   else _rate_answer(workload, mode, mrows))
    return out


def answer_rows(rows: Sequence[Row], p99_bound_ms: float = DEFAULT_P99_BOUND_MS) -> list[dict[str, Any]]:
    """The answers as data, one dict per workload (:meth:`Answer.to_dict`), for the web UI's Compare result.

    :param rows: rows from :func:`serverlab.report.rows.aggregate`.
    :param p99_bound_ms: open mode's latency bound (ms).
    """
    return [a.to_dict() for a in answers(rows, p99_bound_ms)]
