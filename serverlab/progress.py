"""The progress lines a run prints: one before and one after each cell, with the time left."""

from __future__ import annotations

import time
from typing import Callable

from serverlab.planning import PlannedCell
from serverlab.results import Cell
from serverlab.terms import CellStatus


class Progress:
    """Prints one line per cell: position, cell, outcome, and time left.

    :param total: cells to run this time; :param write: where lines go.
    """

    def __init__(self, total: int, write: Callable[[str], None]) -> None:
        self.total = total
        self.done = 0
        self.started = time.monotonic()
        self.write = write

    @property
    def seconds_per_cell(self) -> float:
        """Mean wall seconds per finished cell so far (0.0 before the first)."""
        return (time.monotonic() - self.started) / self.done if self.done else 0.0

    def starting(self, cell: PlannedCell, unit: str) -> None:
        """Announce a cell before it runs."""
        self.write(f"[{self.done + 1}/{self.total}] {cell.variant} · {cell.workload} · {cell.level} {unit} · r{cell.repetition} ...")

    def finished(self, cell: Cell) -> None:
        """Report a finished cell and the estimated time left."""
        self.done += 1
        elapsed = time.monotonic() - self.started
        left = elapsed / self.done * (self.total - self.done)
        if cell.status == CellStatus.OK:
            p99 = cell.latency_us.get("p99", 0) / 1000
            what = f"{cell.rps:,.0f} RPS, p99 {p99:.2f} ms, {cell.failures} failures"
            if cell.total_time_s is not None:
                what += f", {cell.total_time_s:.2f} s total"
            if cell.bottleneck is not None:
                what += f", {cell.bottleneck.kind} ({cell.bottleneck.reason})"
        else:
            what = f"{cell.status.upper()}: {cell.error}"
        self.write(f"    {what}  ({self.done}/{self.total} done, ~{left / 60:.1f} min left)")
