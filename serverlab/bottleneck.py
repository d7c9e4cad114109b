"""Bottleneck attribution: what limited each cell's throughput.

Every measured cell gets one class, with the figures that decided it:

* ``interference`` — something other than the lab used at least
  :data:`serverlab.interference.INTERFERENCE_THRESHOLD` of the server's or the
  generator's CPUs during the window, or the host itself changed speed around the cell
  (the host-speed probe, :mod:`serverlab.hostspeed`): the figure is not the server's,
  whatever else holds;
* ``server-bound`` — the server used at least :data:`SERVER_BOUND_UTILIZATION`
  of its CPU budget: its RPS is its capacity at this budget, and can be ranked;
* ``generator-bound`` — a load-generator process used at least
  :data:`GENERATOR_BOUND_UTILIZATION` of a core (or fell behind its schedule)
  while the server had CPU to spare: the RPS measures Locust and is only a floor
  of the server's capacity;
* ``below-saturation`` — neither: a closed loop whose users wait on latency; the
  RPS describes the server at that concurrency, not its capacity.

Utilizations are fractions: server ``CPU s ÷ window s ÷ server_cpus``; generator
the busiest Locust process's ``CPU s ÷ window s`` (of one core).
"""

from __future__ import annotations

from typing import Sequence

from serverlab.budget import Budget
from serverlab.interference import INTERFERENCE_THRESHOLD
from serverlab.loadgen import SATURATION_SHARE
from serverlab.records import Bottleneck, BottleneckSummary
from serverlab.results import Cell
from serverlab.terms import BottleneckClass, CellStatus

#: The server is the bottleneck at or above this share of its CPU budget. Where it
#: comes from: on the quiet 2-core machine (the README's "What it measured here") servers
#: that Locust could saturate measured 93–99% busy, the uWSGI ones it could not 55–58%;
#: a CPU quota enforced in 100 ms periods, the sampling interval (0.2 s) and start/stop edges of
#: the window cost a few per cent, so 90% separates the two with room on both sides.
SERVER_BOUND_UTILIZATION = 0.90
#: A Locust process at or above this share of one core is the bottleneck: Locust is
#: single-threaded per process, and at 90%+ its event loop, not the server, sets the
#: pace (the README's uwsgi-threads row: Locust 99%, wrk 2.6× higher). The same
#: figure as :data:`serverlab.loadgen.SATURATION_SHARE`.
GENERATOR_BOUND_UTILIZATION = SATURATION_SHARE
#: The classes, in the order a report explains them.
CLASSES = tuple(BottleneckClass)
#: When repetitions disagree, the class a row takes on a tie: the least flattering one first.
_TIE_ORDER = (BottleneckClass.INTERFERENCE, BottleneckClass.GENERATOR_BOUND, BottleneckClass.BELOW_SATURATION,
              BottleneckClass.SERVER_BOUND)


def server_utilization(cell: Cell, budget: Budget | None) -> float | None:
    """Server CPU seconds ÷ window seconds ÷ the budget's ``server_cpus`` (cores); ``None`` when not
    measured (or no budget was recorded)."""
    cpus = budget.server_cpus if budget is not None else None
    if cell.server_cpu_s is None or not cell.duration_s or not cpus:
        return None
    return cell.server_cpu_s / cell.duration_s / float(cpus)


def generator_utilization(cell: Cell, budget: Budget | None = None) -> float | None:
    """The busiest Locust process's share of one core; ``None`` when not measured.

    Cells written before results version 2 have no per-process figure: the
    average over the generator's processes (``loadgen_cpu_s ÷ window ÷ processes``, the
    cell's ``loadgen_cpu_budget`` or else the budget's ``loadgen_processes``) stands in for it.
    """
    if cell.loadgen_busiest_share is not None:
        return cell.loadgen_busiest_share
    if cell.loadgen_cpu_s is None or not cell.duration_s:
        return None
    processes = cell.loadgen_cpu_budget or (budget.loadgen_processes if budget is not None else None) or 1
    return cell.loadgen_cpu_s / cell.duration_s / float(processes)


def classify(cell: Cell, budget: Budget | None) -> Bottleneck | None:
    """The bottleneck class of a measured cell and the figures that decided it.

    Rules, first match wins: interference flagged, or the host-speed probe flagged
    (:attr:`serverlab.results.Cell.host_speed`) → ``interference``; server
    utilization ≥ :data:`SERVER_BOUND_UTILIZATION` → ``server-bound``; generator
    utilization ≥ :data:`GENERATOR_BOUND_UTILIZATION`, Locust's own high-CPU
    warning, or an open-model generator that fell behind → ``generator-bound``;
    otherwise ``below-saturation``.

    :param cell: a cell; only ``ok`` cells are classified.
    :param budget: the run's budget (:attr:`serverlab.results.RunHeader.budget`): its ``server_cpus``
        is what the server's utilization is a share of.
    :return: a :class:`~serverlab.records.Bottleneck` (utilizations as fractions, ``None`` where
        not measured; the host-speed deviation when the probe flagged the cell), or ``None`` for
        a cell that was not measured.
    """
    if cell.status != CellStatus.OK:
        return None
    server = server_utilization(cell, budget)
    generator = generator_utilization(cell, budget)
    interference = cell.interference
    share = interference.share if interference is not None else None
    fell_behind = cell.open_load is not None and cell.open_load.fell_behind
    host_speed = cell.host_speed if cell.host_speed is not None and cell.host_speed.flagged else None
    if interference is not None and interference.flagged:
        kind = BottleneckClass.INTERFERENCE
        reason = (f"other programs used {interference.share:.0%} of the lab's CPUs "
                  f"(threshold {interference.threshold:.0%})")
    elif host_speed is not None:
        kind = BottleneckClass.INTERFERENCE
        deviation = host_speed.deviation
        reason = (f"host speed changed: the CPU probe ran {abs(deviation):.0%} {'slower' if deviation > 0 else 'faster'} "
                  f"than the run's median (threshold {host_speed.threshold:.0%})")
    elif server is not None and server >= SERVER_BOUND_UTILIZATION:
        kind = BottleneckClass.SERVER_BOUND
        reason = f"server at {server:.0%} of its CPU budget"
    elif (generator is not None and generator >= GENERATOR_BOUND_UTILIZATION) or fell_behind or (
            generator is None and cell.loadgen_saturated):
        kind = BottleneckClass.GENERATOR_BOUND
        reason = ("load generator fell behind its schedule" if fell_behind and (generator or 0) < GENERATOR_BOUND_UTILIZATION
                  else f"Locust at {generator:.0%} of a core" if generator is not None else "Locust saturated")
        if server is not None:
            reason += f" while the server used {server:.0%} of its budget"
    else:
        kind = BottleneckClass.BELOW_SATURATION
        reason = "neither the server nor the generator at its CPU limit: users wait on latency"
        if server is not None and generator is not None:
            reason = f"server at {server:.0%}, Locust at {generator:.0%}: users wait on latency"
    return Bottleneck(kind=kind, reason=reason,
                      server_utilization=None if server is None else round(server, 4),
                      generator_utilization=None if generator is None else round(generator, 4),
                      interference_share=share,
                      host_speed_deviation=host_speed.deviation if host_speed is not None else None)


def cell_bottleneck(cell: Cell, budget: Budget | None) -> Bottleneck | None:
    """The bottleneck the runner stored with the cell, or :func:`classify` (with the run's ``budget``)
    for older files."""
    return cell.bottleneck if cell.bottleneck is not None else classify(cell, budget)


def summarize(cells: list[Cell], budget: Budget | None) -> BottleneckSummary | None:
    """One class for the repetitions of a (variant, workload, mode, level).

    Any repetition with interference makes the row ``interference`` (so it stays out
    of verdicts); otherwise the most common class, ties going to the least
    flattering (generator-bound, then below-saturation, then server-bound).

    :param cells: the ``ok`` repetitions.
    :param budget: the run's budget (for cells of files that stored no class: :func:`classify`).
    :return: a :class:`~serverlab.records.BottleneckSummary`: the class, repetitions per class,
        the median utilizations, the largest interference share (and the largest host-speed
        deviation when a repetition's host speed changed); ``None`` when no repetition was classified.
    """
    found = [b for b in (cell_bottleneck(c, budget) for c in cells) if b is not None]
    if not found:
        return None
    counts: dict[BottleneckClass, int] = {}
    for b in found:
        counts[b.kind] = counts.get(b.kind, 0) + 1
    if counts.get(BottleneckClass.INTERFERENCE):
        kind = BottleneckClass.INTERFERENCE
    else:
        top = max(counts.values())
        kind = next(k for k in _TIE_ORDER if counts.get(k) == top)

    def median(values: list[float]) -> float | None:
        values = sorted(values)
        if not values:
            return None
        mid = len(values) // 2
        return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2

    shares = [b.interference_share for b in found if b.interference_share is not None]
    deviations = [b.host_speed_deviation for b in found if b.host_speed_deviation is not None]
    return BottleneckSummary(
        kind=kind, counts=tuple(counts.items()),
        server_utilization=median([b.server_utilization for b in found if b.server_utilization is not None]),
        generator_utilization=median([b.generator_utilization for b in found if b.generator_utilization is not None]),
        interference_share=max(shares) if shares else None,
        host_speed_deviation=max(deviations, key=abs) if deviations else None)


def describe(summary: BottleneckSummary | None) -> str:
    """A short table text: ``"server-bound (server 98%, Locust 73%)"``; ``"—"`` when unknown."""
    if summary is None:
        return "—"
    parts = []
    if summary.server_utilization is not None:
        parts.append(f"server {summary.server_utilization:.0%}")
    if summary.generator_utilization is not None:
        parts.append(f"Locust {summary.generator_utilization:.0%}")
    if summary.interference_share is not None:
        parts.append(f"other {summary.interference_share:.0%}")
    if summary.host_speed_deviation is not None:
        parts.append(f"host speed {summary.host_speed_deviation:+.0%}")
    text = summary.kind + (f" ({', '.join(parts)})" if parts else "")
    if len(summary.counts) > 1:
        text += " [" + ", ".join(f"{n}× {k}" for k, n in sorted(summary.counts)) + "]"
    return text


def disturbance(summary: BottleneckSummary | None) -> str:
    """What disturbed an ``interference`` row, for a verdict's "left out" list: ``"25% of a lab
    CPU side"`` (other programs), or ``"the host's speed changed by +12%"`` when the host-speed
    probe flagged it and other programs stayed below the threshold; ``""`` for other classes."""
    if summary is None or summary.kind != BottleneckClass.INTERFERENCE:
        return ""
    deviation = summary.host_speed_deviation
    share = summary.interference_share or 0
    if deviation is not None and share < INTERFERENCE_THRESHOLD:
        return f"the host's speed changed by {deviation:+.0%}"
    return f"{share:.0%} of a lab CPU side"


def left_out_because(summaries: Sequence[BottleneckSummary | None]) -> str:
    """The "left out" reason of a verdict for these ``interference`` rows' summaries: other programs,
    or the host's speed as well when the host-speed probe flagged one of them."""
    if any(s is not None and s.host_speed_deviation is not None for s in summaries):
        return "other programs used the lab's CPUs, or the host's speed changed, while they ran: interference"
    return "other programs used the lab's CPUs while they ran: interference"


def disturbed_by(cell: Cell) -> str | None:
    """Why ``--retry-busy`` should re-measure ``cell``: other programs on the lab's CPUs (its
    interference was flagged) or, for an ``ok`` cell, a host-speed change; ``None`` when neither."""
    if cell.interference is not None and cell.interference.flagged:
        return f"other programs used {cell.interference.share:.0%} of the lab's CPUs"
    if cell.host_speed is not None and cell.host_speed.flagged and cell.status == CellStatus.OK:
        return f"the host's speed changed by {cell.host_speed.deviation:+.0%}"
    return None
