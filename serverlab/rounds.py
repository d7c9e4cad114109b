"""The adaptive rounds of a run: after the first pass, more repetitions for the cells whose 95% CIs
are wider than the experiment's ``target_ci`` (the settings and the choice of cells:
:mod:`serverlab.adaptive`).

Its own module because it plans cells and reads the report's rows: :mod:`serverlab.adaptive`
is imported by the experiment loader, which the planner and the report depend on.
"""

from __future__ import annotations

import itertools
import random
import time
from typing import Any, Callable

from serverlab.adaptive import TEARDOWN_S, next_round
from serverlab.planning import PlannedCell
from serverlab.report.rows import aggregate  # the report's own figures decide, so the two agree
from serverlab.terms import CellStatus


def run_rounds(experiment: Any, header: Any, measured: list[Any], seed: int, order: int,
               measure: Callable[[Any], None], progress: Any, write: Callable[[str], None]) -> int:
    """Run adaptive rounds until no cell needs another repetition (or none fits the time budget).

    :param experiment: the :class:`serverlab.experiment.Experiment` (``target_ci`` set).
    :param header: the run's :class:`serverlab.results.RunHeader`.
    :param measured: every cell measured so far (:class:`serverlab.results.Cell`); ``measure``
        appends to it.
    :param seed: the run's seed (round ``k`` shuffles with ``seed + k``).
    :param order: the position of the first added cell in the run.
    :param measure: measures a :class:`serverlab.planning.PlannedCell` and appends the cell to ``measured``.
    :param progress: the run's :class:`serverlab.progress.Progress` (its ``total`` grows by each
        round; its ``started`` and ``seconds_per_cell`` size the time budget).
    :param write: progress output.
    :return: the cells added.
    """
    def fits(n: int) -> int:
        if experiment.time_budget is None:
            return n
        left = experiment.time_budget - (time.monotonic() - progress.started) - TEARDOWN_S
        return min(n, int(left // max(progress.seconds_per_cell, 1.0)))

    added = 0
    for round_number in itertools.count(1):
        highest: dict[tuple[str, str, int], int] = {}
        for cell in measured:
            key = (cell.variant, cell.workload, cell.level)
            highest[key] = max(highest.get(key, 0), cell.repetition)
        rows = aggregate(header, [c for c in measured if c.status == CellStatus.OK])
        chosen = next_round(rows, experiment, highest, random.Random(seed + round_number), fits)
        if not chosen:
            return added
        progress.total += len(chosen)
        write(f"adaptive repetitions: {len(chosen)} more cell(s) whose 95% CIs are wider than ±{experiment.target_ci:.0%}")
        for variant, workload, level, repetition in chosen:
            measure(PlannedCell(variant, workload, level, repetition, order + added))
            added += 1
    return added
