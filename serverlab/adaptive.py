"""Adaptive repetitions: pyperf's "measure until the figure is stable", applied to cells.

An experiment may set::

    repetitions = 3        # every cell at least this often (the first pass, shuffled per repetition)
    target_ci = 0.05       # stop adding repetitions to a cell once its 95% CIs are within ±5% of their medians
    max_repetitions = 6    # ... or once it has this many
    time_budget = 1200     # optional: add no repetition that would end the run later than this (seconds)

After the first pass the runner looks at every (variant, workload, level): its **width**
(:func:`row_width`) is the largest relative half-width ``(high - low) / 2 / median`` of
the intervals its verdict can rest on — Locust's RPS; wrk's ceiling where wrk ran with it;
the CPU-cost capacity where Locust was the limit. Each round adds one repetition to every
cell still wider than the target and below the maximum, widest first as far as the time
budget allows, run in shuffled order (seeded); rounds repeat until no cell needs one.
The report says which cells reached the target (:func:`target_statuses`).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from serverlab.terms import BottleneckClass, calibrated_workload

if TYPE_CHECKING:  # the statistics (SciPy) load only where figures are computed, not with every experiment
    from serverlab.stats import Estimate

#: Valid ``target_ci``: a relative half-width (0.05 = ±5% of the median).
TARGET_CI_RANGE = (0.001, 1.0)
#: Valid ``max_repetitions`` upper end (the lower end is the experiment's ``repetitions``).
MAX_REPETITIONS = 100
#: Valid ``time_budget`` (seconds).
TIME_BUDGET_RANGE = (10.0, 86_400.0)
#: The fewest first-pass repetitions with ``target_ci``: the bootstrap interval of a median of n
#: repetitions is about [min, max], which covers the true median with probability 1 - 2/2^n:
#: 50% for 2, 75% for 3.
MIN_REPETITIONS = 3
#: Seconds kept free of the time budget for the final teardown (servers, containers, report).
TEARDOWN_S = 15.0
#: The keys this module reads from an experiment file.
KEYS = ("target_ci", "max_repetitions", "time_budget")


def load_settings(check: Any, data: Mapping[str, Any], repetitions: int) -> dict[str, Any]:
    """Validate an experiment file's adaptive keys.

    :param check: the experiment loader's checker (``fail(key, value, expected)``, ``integer``).
    :param data: the experiment file's top-level table.
    :param repetitions: its (validated) ``repetitions``.
    :return: ``{"target_ci", "max_repetitions", "time_budget"}`` (``None`` where unset).
    :raises serverlab.experiment.ExperimentError: a value out of range (naming it and the valid
        range), ``max_repetitions`` or ``time_budget`` without ``target_ci``, ``target_ci`` without
        ``max_repetitions``, or fewer than :data:`MIN_REPETITIONS` ``repetitions``.
    """
    target, most, budget = (data.get(key) for key in KEYS)
    if target is None:
        for key, value in (("max_repetitions", most), ("time_budget", budget)):
            if value is not None:
                raise check.fail(key, value, "nothing unless target_ci is set too (e.g. target_ci = 0.05: "
                                             "repetitions are added until the 95% CIs are within ±5%)")
        return {"target_ci": None, "max_repetitions": None, "time_budget": None}
    low, high = TARGET_CI_RANGE
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not low <= target <= high:
        raise check.fail("target_ci", target, f"a relative 95% CI half-width in {low:g}..{high:g} "
                                              "(0.05 = within ±5% of the median)")
    if repetitions < MIN_REPETITIONS:
        raise check.fail("repetitions", repetitions, f"at least {MIN_REPETITIONS} with target_ci (the percentile "
                                                     "interval of fewer repetitions covers the median too rarely)")
    if most is None:
        raise check.fail("target_ci", target, f"a companion max_repetitions, an integer in {repetitions}..{MAX_REPETITIONS} "
                                              "(the most repetitions any cell gets)")
    most = check.integer("max_repetitions", most, repetitions, MAX_REPETITIONS)
    if budget is not None:
        low, high = TIME_BUDGET_RANGE
        if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not low <= budget <= high:
            raise check.fail("time_budget", budget, f"seconds in {low:g}..{high:g} (the whole run, first pass included)")
        budget = float(budget)
    return {"target_ci": float(target), "max_repetitions": most, "time_budget": budget}


def estimate_text(experiment: Any) -> str:
    """A run's estimated time for people: ``"19.2 min"``, or with adaptive repetitions
    ``"15.0 min (first pass), at most 20.0 min (time budget)"``.

    :param experiment: a :class:`serverlab.experiment.Experiment`.
    """
    first = experiment.estimated_seconds()
    if not experiment.target_ci:
        return f"{first / 60:.1f} min"
    most = experiment.estimated_seconds(repetitions=experiment.max_repetitions)
    budget = experiment.time_budget
    capped = min(most, budget) if budget else most
    why = "time budget" if budget and budget < most else f"{experiment.max_repetitions} repetitions"
    return f"{first / 60:.1f} min (first pass), at most {capped / 60:.1f} min ({why})"


def relative_half_width(est: Estimate | None) -> float:
    """``(high - low) / 2 / median``; infinite without an interval (or a median of 0 or less)."""
    if est is None or not est.has_ci or est.median <= 0:
        return math.inf
    return (est.high - est.low) / 2 / est.median  # type: ignore[operator]


def row_width(row: Any) -> float:
    """The widest relative half-width of the intervals a row's verdict can rest on (see the module docstring).

    :param row: a :class:`serverlab.report.rows.Row`.
    :return: e.g. 0.031 for ±3.1%; infinite when an interval is missing.
    """
    widths = [relative_half_width(row.rps)]
    if row.workload == calibrated_workload(row.calibration) and getattr(row, "wrk_rps", None) is not None:
        widths.append(relative_half_width(row.wrk_rps))
    if row.bottleneck_class == BottleneckClass.GENERATOR_BOUND and row.cost_capacity_rps is not None:
        widths.append(relative_half_width(row.cost_capacity_rps))
    return max(widths)


@dataclass(frozen=True)
class TargetStatus:
    """Whether one row reached the experiment's target CI half-width.

    :param variant, workload, mode, level: the row's key.
    :param repetitions: repetitions measured (ok or not).
    :param width: :func:`row_width` (infinite without an interval).
    :param reached: ``width <= target``.
    :param why: ``"reached"``, ``"at the maximum of N repetitions"`` or ``"the time budget ran out"``.
    """

    variant: str
    workload: str
    mode: str
    level: int
    repetitions: int
    width: float
    reached: bool
    why: str


def target_statuses(rows: Iterable[Any], experiment: Mapping[str, Any]) -> list[TargetStatus]:
    """Each measured row's status against the experiment record's ``target_ci`` (empty when it has none).

    :param rows: :class:`serverlab.report.rows.Row` objects.
    :param experiment: the run header's experiment record.
    """
    target, most = experiment.get("target_ci"), experiment.get("max_repetitions")
    if not target:
        return []
    out = []
    for row in rows:
        if row.failed:
            continue
        width = row_width(row)
        reached = width <= target
        why = ("reached" if reached else f"at the maximum of {most} repetitions" if most and row.repetitions >= most
               else "the time budget ran out")
        out.append(TargetStatus(row.variant, row.workload, row.mode, row.level, row.repetitions, width, reached, why))
    return out


def _pct(width: float) -> str:
    return "no interval" if math.isinf(width) else f"±{width:.1%}"


def target_paragraph(rows: Iterable[Any], experiment: Mapping[str, Any], label: Callable[[Any], str]) -> str | None:
    """One sentence: which cells reached the target CI, and which did not and why; ``None`` without a target.

    :param label: names a status's cell, e.g. ``lambda s: s.variant``.
    """
    statuses = target_statuses(rows, experiment)
    if not statuses:
        return None
    target, most = experiment["target_ci"], experiment.get("max_repetitions")
    reached = [s for s in statuses if s.reached]
    missed = [s for s in statuses if not s.reached]
    text = (f"Adaptive repetitions (target: every 95% CI the verdict rests on within ±{target:.0%} of its median, "
            f"at most {most} repetitions): {len(reached)} of {len(statuses)} cells reached it")
    if reached:
        text += " (" + ", ".join(f"{label(s)}: {_pct(s.width)} after {s.repetitions}" for s in reached) + ")"
    if missed:
        text += "; not reached: " + ", ".join(f"{label(s)}: {_pct(s.width)} after {s.repetitions} ({s.why})"
                                              for s in missed)
    return text + "."


def next_round(rows: Iterable[Any], experiment: Any, repetitions: Mapping[tuple[str, str, int], int],
               rng: random.Random, fits: Callable[[int], int]) -> list[tuple[str, str, int, int]]:
    """The cells of the next adaptive round, in the order to run them.

    :param rows: the rows aggregated from every cell measured so far.
    :param experiment: the :class:`serverlab.experiment.Experiment` (``target_ci``, ``max_repetitions``).
    :param repetitions: the highest repetition number measured per (variant, workload, level).
    :param rng: shuffles the round.
    :param fits: ``fits(n)``: how many of ``n`` more cells the time budget allows.
    :return: ``(variant, workload, level, repetition)`` per cell: the widest cells first as far
        as they fit, then shuffled; empty when every cell reached the target or the maximum.
    """
    wide = []
    for row in rows:
        key = (row.variant, row.workload, row.level)
        done = repetitions.get(key, 0)
        width = row_width(row)
        if width > experiment.target_ci and done < experiment.max_repetitions:
            wide.append((width, key, done))
    wide.sort(key=lambda item: -item[0])
    chosen = [(*key, done + 1) for _, key, done in wide[:max(0, fits(len(wide)))]]
    rng.shuffle(chosen)
    return chosen
