"""How numbers and configurations read in every table: RPS, latency in ms, seconds, parameters,
workers×threads, slots.

Plain functions of values (no rows are built here); the tables, the verdicts and
``compare`` all format through them, so a figure reads the same everywhere.
Inputs: throughput in RPS, latency in microseconds, times in seconds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from serverlab.terms import LEVEL_NAMES, Mode, WorkerModel

if TYPE_CHECKING:
    from serverlab.records import VariantRecord
    from serverlab.stats import Estimate


def format_rps(value: float) -> str:
    """Requests per second for people: thousands separated at ≥ 1000, three significant
    figures or so below (``12,061``, ``156``, ``19.4``, ``0.52``)."""
    if value >= 100:  # one format from 100 up, so 999.7 rounds to "1,000" like 1000.2 does
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def format_estimate(est: Estimate | None, fmt: Callable[[float], str] = format_rps) -> str:
    """``"median [low–high]"`` with ``fmt`` for each figure, the median alone without an
    interval, ``"—"`` for ``None``.

    :param est: a :class:`serverlab.stats.Estimate` (in the unit ``fmt`` expects: RPS by default).
    :param fmt: formats one figure (:func:`format_rps` by default).
    """
    if est is None:
        return "—"
    if est.has_ci:
        return f"{fmt(est.median)} [{fmt(est.low)}–{fmt(est.high)}]"  # type: ignore[arg-type]
    return fmt(est.median)


def level_text(mode: str, level: int) -> str:
    """A load level with its unit, e.g. ``"64 users"``, ``"500 target RPS"`` (``"level"`` for an unknown mode)."""
    return f"{level} {LEVEL_NAMES[Mode(mode)].unit if mode in LEVEL_NAMES else 'level'}"


def worker_model(row: Any) -> str:
    """A row's worker model (its declaration's ``model``), ``"unknown"`` when not recorded."""
    return "unknown" if row.declared.model is None else str(row.declared.model)


def as_int(value: Any, default: int = 1) -> int:
    """``value`` as an ``int`` (a count from a variant's configuration), ``default`` when it is none."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def slots_text(declared: VariantRecord) -> str:
    """Concurrent requests a variant can hold, as a table shows them: the ``slots`` its
    declaration recorded (:attr:`serverlab.records.VariantRecord.slots`, derived on reading for
    results written before they were recorded); ``"unbounded"`` for ``None``."""
    return "unbounded" if declared.slots is None else str(declared.slots)


def fmt_ms(us: float | None) -> str:
    """Microseconds as milliseconds: rounded like RPS from 1 ms up (``1,234``, ``156``, ``19.4``,
    ``1.53``), three decimals below (``0.153``); ``"—"`` for ``None``."""
    if us is None:
        return "—"
    ms = us / 1000.0
    return format_rps(ms) if ms >= 1 else f"{ms:.3f}"


def fmt_s(seconds: float) -> str:
    """Seconds with three significant figures (``1.23``, ``45.6``), thousands separated from 100 s up (``1,234``)."""
    return f"{seconds:.3g}" if seconds < 100 else f"{seconds:,.0f}"


def fmt_params(params: dict[str, Any]) -> str:
    """A workload's parameters as ``"ms=50, n=1000"`` (sorted by name), ``"no parameters"`` when empty."""
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items())) or "no parameters"


def workers_threads(declared: VariantRecord) -> str:
    """A variant's workers × threads (``"2×4"``), × greenlets for gevent (``"1×1000 greenlets"``),
    ``"1×(thread per conn.)"`` for a thread per connection; ``"?"`` for a count not recorded."""
    workers = "?" if declared.workers is None else declared.workers
    if declared.model == WorkerModel.GEVENT:
        return f"{workers}×{'?' if declared.connections is None else declared.connections} greenlets"
    threads = "?" if declared.threads is None else declared.threads
    if threads == 0:
        return f"{workers}×(thread per conn.)"
    return f"{workers}×{threads}"


def yes_no(value: Any) -> str:
    """``"yes"``/``"no"`` for a recorded flag (e.g. ``keep_alive``), ``"—"`` when not recorded."""
    return "—" if value is None else ("yes" if value else "no")
