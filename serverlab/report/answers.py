"""The answer first: per workload, one sentence, the places and the evidence each place rests on.

:func:`answers` turns a run's rows into one :class:`Answer` per workload, built on the
ranking's places (:func:`serverlab.report.ranking.rank_level`: closed and requests mode)
or on the sustainable throughput (open mode). Every format shows it first: the sentence,
the ranking chart (:func:`serverlab.report.charts.answer_chart`), a compact table, and the
reasoning as one table row per variant. ``report.json`` and the web UI's Compare result
hold it as data (:meth:`Answer.to_dict`, :func:`answer_rows`).

Units: RPS; the figures are :class:`~serverlab.stats.Estimate` objects (median, 95% CI).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from serverlab.report.formatting import _level_text
from serverlab.report.ranking import CALIBRATION_WORKLOAD, PairDecision, rank_level, row_class
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
from serverlab.stats import NO_CI_NOTE, Estimate, compare_samples, format_estimate, format_rps
from serverlab.terms import Bottleneck, Mode

#: The evidence kinds of :class:`serverlab.report.ranking.Evidence`, in the order they are named,
#: with the words tables and charts use for each.
SOURCE_LABELS = {"measured RPS": "Locust RPS", "wrk": "wrk", "CPU cost": "CPU-cost capacity",
                 "sustained rate": "sustained target rate"}
#: A sentence names at most this many variants it cannot tell apart, then counts the rest.
MAX_NAMED = 4
_RPS_CLASSES = (Bottleneck.SERVER_BOUND, Bottleneck.BELOW_SATURATION, None)


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
                    "model": r.config.get("model"), "bottleneck": row_class(r),
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
    if source == "wrk" and workload == CALIBRATION_WORKLOAD:
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
    if row.rps is not None and kind in _RPS_CLASSES:
        out.append("measured RPS")
    if evidence_estimate(row, "wrk", workload) is not None:
        out.append("wrk")
    if row.cost_capacity_rps is not None and kind in (Bottleneck.GENERATOR_BOUND, Bottleneck.SERVER_BOUND):
        out.append("CPU cost")
    return tuple(out)


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


def _rate_answer(workload: str, mode: str, rows: list[Row]) -> Answer:
    ranking = rank_level(rows, workload)
    if ranking is None:
        return Answer(workload, mode, None, f"{mode} mode",
                      f"No winner on {workload} ({mode} mode): no variant completed any load level without failed "
                      f"requests or failed repetitions; see the failed cells.", principle=principle(workload))
    where = f"{mode} mode, {_level_text(mode, ranking.level)}"
    cpus = next((r.config.get("server_cpus") for r in rows if r.config.get("server_cpus") is not None), "?")
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
            if row_class(row) == Bottleneck.GENERATOR_BOUND:
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
        if row.failed:
            error = row.failed_cells[0].error if row.failed_cells else ""
            why = "every repetition failed" + (f" ({error[:100]}{'…' if len(error) > 100 else ''})" if error else "")
        elif row.failed_cells:
            why = f"{len(row.failed_cells)} of {row.repetitions} repetitions failed"
        else:
            why = f"{row.failures} failed requests ({row.failure_ratio:.1%})"
        reasons[row.variant].append(f"not ranked: {why} at this level")
        placed.append(Placed(row.variant, None, False, row, left_out=why))
    for row in ranking.interfered:
        share = (row.bottleneck or {}).get("interference_share") or 0
        reasons[row.variant].append(f"left out: other programs used {share:.0%} of a lab CPU side (interference); "
                                    f"rerun on a quiet machine or with --retry-busy N")
        placed.append(Placed(row.variant, None, False, row, left_out="interference"))
    measured = [r for r in ranking.candidates if row_class(r) in _RPS_CLASSES]
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
    if any(row_class(x) == Bottleneck.GENERATOR_BOUND for pair in unresolved for x in pair):
        would.append("more CPUs for the load generator or a smaller server budget")
    if any(row_class(x) != Bottleneck.GENERATOR_BOUND for pair in unresolved for x in pair):
        would.append("more repetitions or longer cells")
    ahead = ""
    if len(top) > 1 and len(tiers) > 1:
        ahead = f"; they share 1st place ahead of {_names([r.variant for r in tiers[1]])}"
    return (f"Cannot tell which of {_names(names)} is fastest on {workload} ({where}){ahead}: "
            f"{'; '.join(sorted(whys))}. What would tell: {'; or '.join(would)}.", None, None, None, tuple(would))


def _open_answer(workload: str, rows: list[Row], bound_ms: float) -> Answer:
    usable = [r for r in rows if row_class(r) != Bottleneck.INTERFERENCE]
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
