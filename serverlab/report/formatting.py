"""How numbers and configurations read in every table: latency in ms, seconds, parameters, workers×threads.

Plain functions of values (no rows are built here); the tables, the verdicts and
``compare`` all format through them, so a figure reads the same everywhere.
Inputs: latency in microseconds, times in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from serverlab.stats import format_rps
from serverlab.terms import Mode, WorkerModel


@dataclass(frozen=True)
class LevelNames:
    """What one load level of a mode is called: after a number, as a table column, on a chart axis."""

    unit: str
    column: str
    axis: str


#: The load level's names per mode, for every table, chart and label of the report.
LEVEL_NAMES = {
    Mode.CLOSED: LevelNames("users", "users", "concurrent users"),
    Mode.OPEN: LevelNames("target RPS", "target RPS", "target RPS"),
    Mode.REQUESTS: LevelNames("requests", "requests (users)", "requests"),
}


def _level_text(mode: str, level: int) -> str:
    """A load level with its unit, e.g. ``"64 users"``, ``"500 target RPS"`` (``"level"`` for an unknown mode)."""
    return f"{level} {LEVEL_NAMES[Mode(mode)].unit if mode in LEVEL_NAMES else 'level'}"


def _model(row: Any) -> str:
    """A row's worker model (``config["model"]``), ``"unknown"`` when not recorded."""
    return str(row.config.get("model", "unknown"))


def _int(value: Any, default: int = 1) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _slots(config: dict[str, Any]) -> str:
    """Concurrent requests a variant can hold: ``config["slots"]`` or derived from its model."""
    if config.get("slots") is not None:
        return str(config["slots"])
    workers, threads = _int(config.get("workers")), _int(config.get("threads"))
    if config.get("model") == WorkerModel.GEVENT and config.get("connections"):
        return str(workers * _int(config["connections"]))
    if threads == 0:
        return "unbounded"
    return str(workers * threads)


def _fmt_ms(us: float | None) -> str:
    """Microseconds as milliseconds: rounded like RPS from 1 ms up (``1,234``, ``156``, ``19.4``,
    ``1.53``), three decimals below (``0.153``); ``"—"`` for ``None``."""
    if us is None:
        return "—"
    ms = us / 1000.0
    return format_rps(ms) if ms >= 1 else f"{ms:.3f}"


def _fmt_s(seconds: float) -> str:
    return f"{seconds:.3g}" if seconds < 100 else f"{seconds:,.0f}"


def _fmt_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items())) or "no parameters"


def _workers_threads(config: dict[str, Any]) -> str:
    workers = config.get("workers", "?")
    if config.get("model") == WorkerModel.GEVENT:
        return f"{workers}×{config.get('connections', '?')} greenlets"
    threads = config.get("threads", "?")
    if threads == 0:
        return f"{workers}×(thread per conn.)"
    return f"{workers}×{threads}"


def _yes_no(value: Any) -> str:
    return "—" if value is None else ("yes" if value else "no")
