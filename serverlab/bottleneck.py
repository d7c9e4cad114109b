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

from typing import Any, Sequence

from serverlab.interference import INTERFERENCE_THRESHOLD
from serverlab.loadgen import SATURATION_SHARE
from serverlab.results import Cell
from serverlab.terms import Bottleneck, CellStatus

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
CLASSES = tuple(Bottleneck)
#: When repetitions disagree, the class a row takes on a tie: the least flattering one first.
_TIE_ORDER = (Bottleneck.INTERFERENCE, Bottleneck.GENERATOR_BOUND, Bottleneck.BELOW_SATURATION, Bottleneck.SERVER_BOUND)


def server_utilization(cell: Cell) -> float | None:
    """Server CPU seconds ÷ window seconds ÷ CPU budget (cores); ``None`` when not measured."""
    cpus = cell.config.get("server_cpus")
    try:
        budget = float(cpus) if cpus is not None else None
    except (TypeError, ValueError):
        budget = None
    if cell.server_cpu_s is None or not cell.duration_s or not budget:
        return None
    return cell.server_cpu_s / cell.duration_s / budget


def generator_utilization(cell: Cell) -> float | None:
    """The busiest Locust process's share of one core; ``None`` when not measured.

    Cells written before results version 2 have no per-process figure: the
    average over the generator's processes (``loadgen_cpu_s ÷ window ÷ processes``)
    stands in for it.
    """
    if cell.loadgen_busiest_share is not None:
        return cell.loadgen_busiest_share
    if cell.loadgen_cpu_s is None or not cell.duration_s:
        return None
    processes = cell.loadgen_cpu_budget or cell.config.get("loadgen_processes") or 1
    try:
        return cell.loadgen_cpu_s / cell.duration_s / float(processes)
    except (TypeError, ValueError, ZeroDivisionError):
        return None


def classify(cell: Cell) -> dict[str, Any] | None:
    """The bottleneck class of a measured cell and the figures that decided it.

    Rules, first match wins: interference flagged, or the host-speed probe flagged
    (:attr:`serverlab.results.Cell.host_speed`) → ``interference``; server
    utilization ≥ :data:`SERVER_BOUND_UTILIZATION` → ``server-bound``; generator
    utilization ≥ :data:`GENERATOR_BOUND_UTILIZATION`, Locust's own high-CPU
    warning, or an open-model generator that fell behind → ``generator-bound``;
    otherwise ``below-saturation``.

    :param cell: a cell; only ``ok`` cells are classified.
    :return: ``{"class", "server_utilization", "generator_utilization",
        "interference_share", "reason"}`` (fractions; ``None`` where not measured), plus
        ``"host_speed_deviation"`` when the host-speed probe flagged the cell, or ``None``
        for a cell that was not measured.
    """
    if cell.status != CellStatus.OK:
        return None
    server = server_utilization(cell)
    generator = generator_utilization(cell)
    interference = cell.interference or {}
    share = interference.get("share")
    fell_behind = bool(cell.open_load and cell.open_load.get("fell_behind"))
    host_speed = cell.host_speed or {}
    if interference.get("flagged"):
        kind = Bottleneck.INTERFERENCE
        reason = (f"other programs used {float(share or 0):.0%} of the lab's CPUs "
                  f"(threshold {float(interference.get('threshold', 0.05)):.0%})")
    elif host_speed.get("flagged"):
        kind = Bottleneck.INTERFERENCE
        deviation = float(host_speed.get("deviation") or 0)
        reason = (f"host speed changed: the CPU probe ran {abs(deviation):.0%} {'slower' if deviation > 0 else 'faster'} "
                  f"than the run's median (threshold {float(host_speed.get('threshold', 0.05)):.0%})")
    elif server is not None and server >= SERVER_BOUND_UTILIZATION:
        kind = Bottleneck.SERVER_BOUND
        reason = f"server at {server:.0%} of its CPU budget"
    elif (generator is not None and generator >= GENERATOR_BOUND_UTILIZATION) or fell_behind or (
            generator is None and cell.loadgen_saturated):
        kind = Bottleneck.GENERATOR_BOUND
        reason = ("load generator fell behind its schedule" if fell_behind and (generator or 0) < GENERATOR_BOUND_UTILIZATION
                  else f"Locust at {generator:.0%} of a core" if generator is not None else "Locust saturated")
        if server is not None:
            reason += f" while the server used {server:.0%} of its budget"
    else:
        kind = Bottleneck.BELOW_SATURATION
        reason = "neither the server nor the generator at its CPU limit: users wait on latency"
        if server is not None and generator is not None:
            reason = f"server at {server:.0%}, Locust at {generator:.0%}: users wait on latency"
    found = {
        "class": kind,
        "server_utilization": None if server is None else round(server, 4),
        "generator_utilization": None if generator is None else round(generator, 4),
        "interference_share": None if share is None else float(share),
        "reason": reason,
    }
    if host_speed.get("flagged"):
        found["host_speed_deviation"] = float(host_speed.get("deviation") or 0)
    return found


def cell_bottleneck(cell: Cell) -> dict[str, Any] | None:
    """The bottleneck the runner stored with the cell, or :func:`classify` for older files."""
    return cell.bottleneck if cell.bottleneck else classify(cell)


def summarize(cells: list[Cell]) -> dict[str, Any] | None:
    """One class for the repetitions of a (variant, workload, mode, level).

    Any repetition with interference makes the row ``interference`` (so it stays out
    of verdicts); otherwise the most common class, ties going to the least
    flattering (generator-bound, then below-saturation, then server-bound).

    :param cells: the ``ok`` repetitions.
    :return: ``{"class", "counts": {class: n}, "server_utilization", "generator_utilization",
        "interference_share"}`` (medians; the interference share is the maximum; plus
        ``"host_speed_deviation"``, the largest, when a repetition's host speed changed), or
        ``None`` when no repetition was classified.
    """
    found = [b for b in (cell_bottleneck(c) for c in cells) if b]
    if not found:
        return None
    counts: dict[str, int] = {}
    for b in found:
        counts[b["class"]] = counts.get(b["class"], 0) + 1
    if counts.get(Bottleneck.INTERFERENCE):
        kind = Bottleneck.INTERFERENCE
    else:
        top = max(counts.values())
        kind = next(k for k in _TIE_ORDER if counts.get(k) == top)

    def median(key: str) -> float | None:
        values = sorted(float(b[key]) for b in found if b.get(key) is not None)
        if not values:
            return None
        mid = len(values) // 2
        return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2

    shares = [float(b["interference_share"]) for b in found if b.get("interference_share") is not None]
    summary = {"class": kind, "counts": counts, "server_utilization": median("server_utilization"),
               "generator_utilization": median("generator_utilization"),
               "interference_share": max(shares) if shares else None}
    deviations = [float(b["host_speed_deviation"]) for b in found if b.get("host_speed_deviation") is not None]
    if deviations:
        summary["host_speed_deviation"] = max(deviations, key=abs)
    return summary


def describe(summary: dict[str, Any] | None) -> str:
    """A short table text: ``"server-bound (server 98%, Locust 73%)"``; ``"—"`` when unknown."""
    if not summary:
        return "—"
    parts = []
    if summary.get("server_utilization") is not None:
        parts.append(f"server {summary['server_utilization']:.0%}")
    if summary.get("generator_utilization") is not None:
        parts.append(f"Locust {summary['generator_utilization']:.0%}")
    if summary.get("interference_share") is not None:
        parts.append(f"other {summary['interference_share']:.0%}")
    if summary.get("host_speed_deviation") is not None:
        parts.append(f"host speed {summary['host_speed_deviation']:+.0%}")
    counts = summary.get("counts") or {}
    mixed = len(counts) > 1
    text = summary["class"] + (f" ({', '.join(parts)})" if parts else "")
    if mixed:
        text += " [" + ", ".join(f"{n}× {k}" for k, n in sorted(counts.items())) + "]"
    return text



def disturbance(summary: dict[str, Any] | None) -> str:
    """What disturbed an ``interference`` row, for a verdict's "left out" list: ``"25% of a lab
    CPU side"`` (other programs), or ``"the host's speed changed by +12%"`` when the host-speed
    probe flagged it and other programs stayed below the threshold; ``""`` for other classes."""
    if not summary or summary.get("class") != Bottleneck.INTERFERENCE:
        return ""
    deviation = summary.get("host_speed_deviation")
    share = summary.get("interference_share") or 0
    if deviation is not None and share < INTERFERENCE_THRESHOLD:
        return f"the host's speed changed by {deviation:+.0%}"
    return f"{share:.0%} of a lab CPU side"


def left_out_because(summaries: Sequence[dict[str, Any] | None]) -> str:
    """The "left out" reason of a verdict for these ``interference`` rows' summaries: other programs,
    or the host's speed as well when the host-speed probe flagged one of them."""
    if any((s or {}).get("host_speed_deviation") is not None for s in summaries):
        return "other programs used the lab's CPUs, or the host's speed changed, while they ran: interference"
    return "other programs used the lab's CPUs while they ran: interference"


def disturbed_by(cell: Cell) -> str | None:
    """Why ``--retry-busy`` should re-measure ``cell``: other programs on the lab's CPUs (its
    interference was flagged) or, for an ``ok`` cell, a host-speed change; ``None`` when neither."""
    if (cell.interference or {}).get("flagged"):
        return f"other programs used {float(cell.interference['share']):.0%} of the lab's CPUs"  # type: ignore[index]
    if (cell.host_speed or {}).get("flagged") and cell.status == CellStatus.OK:
        return f"the host's speed changed by {float(cell.host_speed['deviation']):+.0%}"  # type: ignore[index]
    return None
