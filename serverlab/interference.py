"""Interference: CPU time on the lab's CPUs used by something that is not the lab.

A shared machine is the normal case. The kernel counts, per CPU, the time spent
running anything (``/proc/stat``: user, nice, system) and the time a hypervisor
took away (steal). The lab knows its own share: the server's CPU seconds (its
cgroup or process tree), the load generator's (Locust's own process CPU) and this
runner's. What is left on the server's and the generator's CPUs was used by
something else — a second benchmark, a test suite, a build — and it lowers the
figures without any error (on the 2-core machine of the README's "What it measured
here", the same cells measured up to 3× lower beside a test suite, and nothing flagged it).

Two measurements use it:

* :func:`quietness_probe`: a short look at the CPUs before a run, recorded in the
  run header;
* :class:`CpuMonitor` + :func:`interference_figures`: per cell, over the measured
  window, stored in :attr:`serverlab.results.Cell.interference`.

Interrupt time (irq, softirq) is left out on both sides: the lab's own network
traffic is processed there and the kernel does not say for whom.

Units: seconds of CPU time; shares are fractions of ``window × CPUs``.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import psutil

#: A cell (or the probe) is flagged when something other than the lab used at least
#: this share of the server's or the generator's CPUs. 5% is a fair start: quiet
#: repetitions of one cell here agree within a few per cent (the README's quietness
#: probe read 0–2% on the quiet machine), while the busy-machine figures came from
#: another program taking a large share of a core. The quiet-machine check of this lab's own overhead (the
#: runner's sampling threads, docker's CLI) stays well below it.
INTERFERENCE_THRESHOLD = 0.05
#: Seconds the quietness probe watches the CPUs before a run.
PROBE_SECONDS = 2.0
#: Seconds between /proc/stat samples during a cell.
SAMPLE_INTERVAL_S = 0.25

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01
PROC_STAT = Path("/proc/stat")


@dataclass(frozen=True)
class CpuTimes:
    """Cumulative times of one CPU since boot (seconds).

    :param busy: user + nice + system (time running any task, interrupts excluded).
    :param steal: time the hypervisor ran something else while this CPU wanted to run.
    """

    busy: float
    steal: float


def read_proc_stat(path: Path = PROC_STAT) -> dict[int, CpuTimes]:
    """Per-CPU cumulative times from ``/proc/stat``.

    :return: CPU number -> :class:`CpuTimes`; empty when the file is unreadable
        (not Linux), so callers record "not measured" instead of failing.
    """
    try:
        return parse_proc_stat(Path(path).read_text())
    except OSError:
        return {}


def parse_proc_stat(text: str, tick_s: float = _TICK_S) -> dict[int, CpuTimes]:
    """Per-CPU cumulative times from the text of ``/proc/stat`` (its ``cpuN`` lines; others ignored).

    :param text: the file's text, e.g. as a server's ``GET /lab/cpu`` reports it.
    :param tick_s: seconds per clock tick (``1 / SC_CLK_TCK``).
    :return: CPU number -> :class:`CpuTimes` (seconds); malformed lines are skipped.
    """
    out: dict[int, CpuTimes] = {}
    for line in text.splitlines():
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        parts = line.split()
        try:
            cpu = int(parts[0][3:])
            values = [int(v) for v in parts[1:]]
        except ValueError:
            continue
        values += [0] * (8 - len(values))
        user, nice, system, steal = values[0], values[1], values[2], values[7]
        out[cpu] = CpuTimes((user + nice + system) * tick_s, steal * tick_s)
    return out


def own_cpu_seconds() -> float:
    """CPU seconds this process (the runner, all its threads) has used."""
    times = os.times()
    return times.user + times.system


@dataclass(frozen=True)
class Sample:
    """One look at the CPUs: Unix time, per-CPU times, the runner's own CPU seconds."""

    at: float
    cpus: dict[int, CpuTimes]
    own_s: float


def take_sample() -> Sample:
    """Read ``/proc/stat`` and this process's CPU time now."""
    return Sample(time.time(), read_proc_stat(), own_cpu_seconds())


def _interpolate(samples: list[Sample], at: float) -> Sample:
    """The (linearly interpolated) sample at Unix time ``at``; clamped to the first/last."""
    if at <= samples[0].at:
        return samples[0]
    for before, after in zip(samples, samples[1:]):
        if before.at <= at <= after.at:
            span = after.at - before.at
            f = (at - before.at) / span if span > 0 else 0.0
            cpus = {c: CpuTimes(before.cpus[c].busy + f * (after.cpus[c].busy - before.cpus[c].busy),
                                before.cpus[c].steal + f * (after.cpus[c].steal - before.cpus[c].steal))
                    for c in before.cpus if c in after.cpus}
            return Sample(at, cpus, before.own_s + f * (after.own_s - before.own_s))
    return samples[-1]


class CpuMonitor:
    """Samples ``/proc/stat`` every ``interval`` seconds in a thread while a cell runs.

    Use as a context manager around the load; then :meth:`between` gives the CPU
    times of a window inside it.

    :param interval: seconds between samples.
    """

    def __init__(self, interval: float = SAMPLE_INTERVAL_S) -> None:
        self.interval = interval
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "CpuMonitor":
        self.samples.append(take_sample())
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.samples.append(take_sample())

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.samples.append(take_sample())

    def between(self, start: float, end: float) -> tuple[Sample, Sample] | None:
        """The interpolated samples at Unix times ``start`` and ``end``; ``None`` if not measured."""
        if len(self.samples) < 2 or not self.samples[0].cpus:
            return None
        return _interpolate(self.samples, start), _interpolate(self.samples, end)


def _side(before: Sample, after: Sample, cpus: Iterable[int]) -> tuple[list[int], float, float]:
    """(CPUs present, busy seconds, steal seconds) of a set of CPUs between two samples."""
    present = [c for c in cpus if c in before.cpus and c in after.cpus]
    busy = sum(after.cpus[c].busy - before.cpus[c].busy for c in present)
    steal = sum(after.cpus[c].steal - before.cpus[c].steal for c in present)
    return present, busy, steal


def interference_figures(before: Sample, after: Sample, server_cpus: Iterable[int], loadgen_cpus: Iterable[int],
                         server_cpu_s: float | None, loadgen_cpu_s: float | None,
                         threshold: float = INTERFERENCE_THRESHOLD) -> dict[str, object] | None:
    """How much of the server's and the generator's CPUs something else used in a window.

    For each side: ``other = busy − the lab's own CPU there − the runner's CPU``
    (the runner is not pinned, so it is credited to each side in full: a
    conservative estimate), plus steal; the side's share is that over
    ``window × its CPUs``. The cell is flagged when either share reaches ``threshold``.

    :param before: the sample at the window's start; :param after: at its end.
    :param server_cpus: CPU numbers of the server's cpuset.
    :param loadgen_cpus: CPU numbers of the load generator's cpuset.
    :param server_cpu_s: the server's CPU seconds in the window (``None``: unknown, counted as 0).
    :param loadgen_cpu_s: the load generator's CPU seconds in the window (``None``: counted as 0).
    :param threshold: the flagging share (0.05 = 5%).
    :return: ``{"window_s", "server_other_s", "loadgen_other_s", "steal_s", "runner_s",
        "server_share", "loadgen_share", "share", "threshold", "flagged"}`` (seconds,
        fractions), or ``None`` when the CPUs could not be read.
    """
    window = after.at - before.at
    if window <= 0 or not before.cpus:
        return None
    runner = max(0.0, after.own_s - before.own_s)
    figures: dict[str, object] = {"window_s": round(window, 3), "runner_s": round(runner, 3), "threshold": threshold}
    shares = []
    steal_total = 0.0
    for name, cpus, own in (("server", server_cpus, server_cpu_s), ("loadgen", loadgen_cpus, loadgen_cpu_s)):
        present, busy, steal = _side(before, after, cpus)
        if not present:
            continue
        other = max(0.0, busy - (own or 0.0) - runner) + max(0.0, steal)
        share = other / (window * len(present))
        figures[f"{name}_other_s"] = round(other, 3)
        figures[f"{name}_share"] = round(share, 4)
        shares.append(share)
        steal_total += max(0.0, steal)
    if not shares:
        return None
    figures["steal_s"] = round(steal_total, 3)
    figures["share"] = round(max(shares), 4)
    figures["flagged"] = max(shares) >= threshold
    return figures


def quietness_probe(server_cpus: Iterable[int], loadgen_cpus: Iterable[int], seconds: float = PROBE_SECONDS,
                    threshold: float = INTERFERENCE_THRESHOLD) -> dict[str, object]:
    """Watch the lab's CPUs for ``seconds`` while the lab does nothing; name the busiest other programs.

    :param server_cpus: CPU numbers of the server's cpuset.
    :param loadgen_cpus: CPU numbers of the load generator's cpuset.
    :param seconds: how long to watch.
    :param threshold: the flagging share.
    :return: the :func:`interference_figures` of the probe window (lab CPU 0) plus
        ``"busiest"``: up to 3 ``"name (pid): NN% of a core"`` texts, and ``"quiet"``
        (not flagged); ``{"measured": False}`` where ``/proc/stat`` is unreadable.
    """
    server_cpus, loadgen_cpus = list(server_cpus), list(loadgen_cpus)
    me = os.getpid()
    procs = []
    for proc in psutil.process_iter(["name"]):
        try:
            if proc.pid != me:
                proc.cpu_percent(None)
                procs.append(proc)
        except psutil.Error:
            continue
    before = take_sample()
    time.sleep(seconds)
    after = take_sample()
    figures = interference_figures(before, after, server_cpus, loadgen_cpus, 0.0, 0.0, threshold)
    if figures is None:
        return {"measured": False}
    busiest: list[tuple[float, str]] = []
    for proc in procs:
        try:
            percent = proc.cpu_percent(None)
        except psutil.Error:
            continue
        if percent >= 1.0:
            busiest.append((percent, f"{proc.info.get('name') or '?'} ({proc.pid}): {percent:.0f}% of a core"))
    busiest.sort(reverse=True)
    return {**figures, "measured": True, "seconds": seconds, "quiet": not figures["flagged"],
            "busiest": [text for _, text in busiest[:3]]}


def describe_probe(probe: dict[str, object]) -> str:
    """One line about a :func:`quietness_probe` result, for the progress output and the report."""
    if not probe.get("measured"):
        return "quietness probe: CPU counters not readable here (not Linux?); interference is not measured"
    share = float(probe.get("share", 0.0))  # type: ignore[arg-type]
    text = (f"quietness probe ({probe.get('seconds')} s): other programs used {share:.0%} of the lab's busiest "
            f"CPU side (server {float(probe.get('server_share', 0)):.0%}, "  # type: ignore[arg-type]
            f"load generator {float(probe.get('loadgen_share', 0)):.0%}, steal {probe.get('steal_s', 0)} s)")  # type: ignore[arg-type]
    if probe.get("quiet"):
        return text + ": quiet"
    busiest = probe.get("busiest") or []
    return (text + f": NOT quiet (threshold {float(probe.get('threshold', INTERFERENCE_THRESHOLD)):.0%})"  # type: ignore[arg-type]
            + (f"; busiest: {', '.join(busiest)}" if busiest else "")  # type: ignore[arg-type]
            + "; cells measured meanwhile will be flagged and left out of verdicts")
