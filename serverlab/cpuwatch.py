"""How the runner watches the lab's CPUs for other programs (interference), behind one interface.

The runner looks twice: a quietness probe before a run (recorded in the run
header) and a monitor around each cell's load (its measured window's CPU times go
to :func:`serverlab.interference.interference_figures`). :class:`ProcStatWatch`
does both from ``/proc/stat`` (:mod:`serverlab.interference`); a test passes its
own :class:`CpuWatch` to simulate a busy or a quiet machine without waiting.
"""

from __future__ import annotations

from typing import Iterable, Protocol

from serverlab.interference import CpuMonitor, Sample, quietness_probe


class WindowMonitor(Protocol):
    """Samples CPU times while it is entered (a context manager); :class:`serverlab.interference.CpuMonitor` is one."""

    def __enter__(self) -> WindowMonitor:
        """Start sampling."""

    def __exit__(self, *exc: object) -> None:
        """Stop sampling (takes a last sample)."""

    def between(self, start: float, end: float) -> tuple[Sample, Sample] | None:
        """The CPU times at Unix times ``start`` and ``end`` (seconds); ``None`` if not measured."""


class CpuWatch(Protocol):
    """What the runner needs to notice other programs on the lab's CPUs."""

    def probe(self, server_cpus: Iterable[int], loadgen_cpus: Iterable[int]) -> dict[str, object]:
        """Watch the idle lab's CPUs briefly; the result of :func:`serverlab.interference.quietness_probe`."""

    def monitor(self) -> WindowMonitor:
        """A fresh monitor to enter around one cell's load."""


class ProcStatWatch:
    """The real watch: :func:`serverlab.interference.quietness_probe` (2 s) and
    :class:`serverlab.interference.CpuMonitor` (a sample every 0.25 s), both from ``/proc/stat``."""

    def probe(self, server_cpus: Iterable[int], loadgen_cpus: Iterable[int]) -> dict[str, object]:
        """Watch the CPUs for :data:`serverlab.interference.PROBE_SECONDS`; see :func:`quietness_probe`."""
        return quietness_probe(server_cpus, loadgen_cpus)

    def monitor(self) -> CpuMonitor:
        """A new :class:`serverlab.interference.CpuMonitor`."""
        return CpuMonitor()
