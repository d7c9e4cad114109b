"""The host-speed probe: a fixed piece of CPU work, timed on the server's CPUs, around every cell.

Why: the host's speed moves under the lab and ``/proc/stat`` does not show it (issue 16:
with the machine 99-100% idle and steal 0, one pure-Python loop took 0.644-0.771 s in six
runs within a minute; across days every variant read about half its earlier figure).
Only timing a fixed amount of work from inside shows it.

What: :func:`kernel` is a deterministic pure-Python integer loop (its result is checked
against :data:`KERNEL_CHECKSUM`); a probe (:func:`probe`) runs it :data:`KERNELS_PER_PROBE`
times back to back and reports the wall time in milliseconds (lower is faster). A probe
lasts a few hundred ms, several 100 ms CFS periods, so a CPU quota slows it in proportion
(a 0.5-CPU budget doubles it); each kernel alone is a few tens of ms.

Where and when: in a container of its own with the servers' budget (the same CPU quota,
cpuset and memory; the compose file's ``hostspeed`` service) or, locally, pinned to the
server cpuset; never in the server's cgroup. The runner probes right before it starts a
cell's server and right after it stopped it, so nothing of the server runs meanwhile and
nothing of the probe runs in the measured window.

The judgement: at the start of a run :data:`BASELINE_PROBES` probes give the run's
median (recorded in the run header, kept on ``--resume``); a cell whose probe before or
after deviates from that median by more than the run's threshold gets a
:class:`~serverlab.findings.HostSpeedChanged` finding, is classed ``interference`` (left out
of verdicts) and is re-measured by ``--retry-busy``. The threshold is derived from the
run's own quiet repeats (see :func:`derive_threshold`), and widened to the run's spread over
minutes once it has enough probes (:func:`run_reference`).

``python -m serverlab.hostspeed [--kernels N]`` prints one probe as a JSON line. This module
runs inside the lab image: the probe part uses the standard library only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

from serverlab import LabError

#: Iterations of :func:`kernel`: a few tens of ms of pure Python on this machine's CPUs.
KERNEL_ITERATIONS = 150_000
#: :func:`kernel`'s result for :data:`KERNEL_ITERATIONS` (a wrong result means the work changed).
KERNEL_CHECKSUM = 1_813_182_743
#: Kernels per probe, timed together: long enough to span several CFS periods (100 ms).
KERNELS_PER_PROBE = 10
#: Seconds slept before a probe's timed kernels: two 100 ms CFS periods, so a CPU quota is full again.
QUOTA_REFILL_S = 0.2
#: Probes at the start of a run: their median is the run's reference, their spread its noise.
BASELINE_PROBES = 5
#: The smallest threshold: a cell is flagged when the host ran at least 5% slower (or faster)
#: than the run's median. It matches :data:`serverlab.interference.INTERFERENCE_THRESHOLD`:
#: other programs taking 5% of the server's CPUs flag a cell; a host 5% slower costs the same.
THRESHOLD_FLOOR = 0.05
#: The run's threshold is this many times the largest deviation among its quiet baseline
#: probes (taken back to back, seconds apart: what the probe's own noise is on this machine
#: now), when that is larger than :data:`THRESHOLD_FLOOR`.
NOISE_FACTOR = 2.0
#: ... and at most this: a run whose quiet probes disagree by more says so in its header.
THRESHOLD_CAP = 0.25
#: Once the run has this many cell probes (each cell's before and after), their own spread
#: over minutes widens the threshold: back-to-back baseline probes agree within ~2%, but
#: on these machines a quiet host drifts more between cells minutes apart (run
#: 20261201-105543-asyncio: 144 probes over 11 minutes, robust sigma 3.5%, 95% within 8.9%,
#: five beyond 11%). A threshold from the baseline alone flagged 30 of its 72 cells.
MIN_SPREAD_READINGS = 10
#: Until then, the spread assumed: the robust sigma of that quiet run's probes (a share). Its
#: 3 sigmas (10.5%) keep the first cells of a run from being flagged for the host's usual
#: drift before the run has seen it; a run on a steadier host tightens it from its 10th probe.
PRIOR_SPREAD = 0.035
#: A probe is an outlier when it lies more than this many robust standard deviations from the
#: run's median (sigma = 1.4826 x the median absolute deviation, consistent with the normal
#: distribution's: Rousseeuw & Croux, JASA 88 (1993) 1273; a 3-sigma rule on it).
OUTLIER_Z = 3.0


class HostSpeedError(LabError):
    """A probe's output could not be read, or its kernel computed a wrong result."""


def kernel(iterations: int = KERNEL_ITERATIONS) -> int:
    """The fixed CPU work: a linear congruential generator folded into a checksum, in pure Python.

    Integer arithmetic and a loop, no allocation beyond small ints, no C helper: its time
    follows the interpreter's (and so the servers') speed on this CPU.

    :param iterations: loop iterations.
    :return: the checksum (deterministic for a given ``iterations``).
    """
    x, total = 1, 0
    for i in range(iterations):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        total ^= x >> (i & 7)
    return total


def probe(kernels: int = KERNELS_PER_PROBE, iterations: int = KERNEL_ITERATIONS) -> dict[str, Any]:
    """Run :func:`kernel` ``kernels`` times back to back (after one untimed run and a
    :data:`QUOTA_REFILL_S` sleep) and time it.

    :return: ``{"ms": total wall ms, "kernel_ms": [wall ms of each kernel], "kernels", "iterations"}``.
    :raises HostSpeedError: if the kernel's result is not :data:`KERNEL_CHECKSUM` (for the default size).
    """
    expected = kernel(iterations)  # untimed: warms the interpreter's specialised bytecode
    if iterations == KERNEL_ITERATIONS and expected != KERNEL_CHECKSUM:
        raise HostSpeedError(f"the probe's kernel computed {expected}, not {KERNEL_CHECKSUM}")
    # The interpreter's start and the warm-up used part of this period's CPU quota (a 0.5-CPU
    # budget: 50 ms per 100 ms CFS period); sleeping two periods refills it, so every probe
    # starts from a full quota and a throttled budget slows it in proportion, not by a phase.
    time.sleep(QUOTA_REFILL_S)
    times = []
    start = time.perf_counter()
    for _ in range(kernels):
        begun = time.perf_counter()
        if kernel(iterations) != expected:
            raise HostSpeedError("the probe's kernel is not deterministic")
        times.append((time.perf_counter() - begun) * 1000)
    total = (time.perf_counter() - start) * 1000
    return {"ms": round(total, 3), "kernel_ms": [round(t, 3) for t in times], "kernels": kernels,
            "iterations": iterations}


def parse_probes(output: str) -> list[float]:
    """The total milliseconds of every probe in ``python -m serverlab.hostspeed`` output (one JSON line each).

    :raises HostSpeedError: naming what came back when there is no probe result in it.
    """
    found = []
    for line in output.strip().splitlines():
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get("ms"), (int, float)) and data["ms"] > 0:
            found.append(float(data["ms"]))
    if not found:
        raise HostSpeedError(f"no probe result in its output: {output.strip()[-300:]!r}")
    return found


def derive_threshold(baseline_ms: Sequence[float]) -> float:
    """The run's threshold from its quiet baseline probes (a share: 0.05 = 5%).

    ``NOISE_FACTOR`` × the largest relative deviation of a baseline probe from their median,
    at least :data:`THRESHOLD_FLOOR` and at most :data:`THRESHOLD_CAP`. Probes taken back to
    back on a quiet host agree within their noise; twice that noise is outside it, so a cell
    beyond it ran on a host whose speed changed, not on a noisy probe.

    :param baseline_ms: at least one probe's total ms.
    :raises ValueError: if there are none.
    """
    if not baseline_ms:
        raise ValueError("no baseline probes")
    median = statistics.median(baseline_ms)
    noise = max(abs(ms / median - 1) for ms in baseline_ms)
    return round(min(THRESHOLD_CAP, max(THRESHOLD_FLOOR, NOISE_FACTOR * noise)), 4)


def baseline(baseline_ms: Sequence[float]) -> dict[str, Any]:
    """The run header's ``host_speed``: ``{"median_ms", "probes_ms", "noise", "threshold", "kernels",
    "iterations"}`` (ms; noise and threshold as shares).

    :raises ValueError: if ``baseline_ms`` is empty.
    """
    median = statistics.median(baseline_ms)
    return {"median_ms": round(median, 3), "probes_ms": [round(ms, 3) for ms in baseline_ms],
            "noise": round(max(abs(ms / median - 1) for ms in baseline_ms), 4),
            "threshold": derive_threshold(baseline_ms), "kernels": KERNELS_PER_PROBE,
            "iterations": KERNEL_ITERATIONS}


def robust_spread(readings_ms: Sequence[float]) -> float:
    """The relative robust standard deviation of probe times: 1.4826 x MAD / median (a share).

    :param readings_ms: probe totals in ms (at least one).
    :raises ValueError: if there are none.
    """
    if not readings_ms:
        raise ValueError("no probes")
    median = statistics.median(readings_ms)
    return 1.4826 * statistics.median(abs(ms - median) for ms in readings_ms) / median


def run_reference(baseline_ref: Mapping[str, Any], readings_ms: Sequence[float]) -> dict[str, Any]:
    """The reference a cell is judged against, from every probe of the run so far.

    The median is the median of the baseline's and the cells' probes so far (it follows a slow
    drift of the whole run, which :func:`speed_ratio` reports between runs). The threshold is
    the baseline's (:func:`derive_threshold`) or :data:`OUTLIER_Z` robust standard deviations
    of the cells' probes (:func:`robust_spread`; the back-to-back baseline probes would
    understate the drift between cells) if that is wider: of :data:`PRIOR_SPREAD` until there
    are :data:`MIN_SPREAD_READINGS` cell probes; at most :data:`THRESHOLD_CAP`.

    :param baseline_ref: the run header's ``host_speed`` (:func:`baseline`).
    :param readings_ms: the cells' probes' ms so far, in order (the baseline's are in ``baseline_ref``).
    :return: ``baseline_ref`` with ``median_ms`` and ``threshold`` updated (shares, ms).
    """
    reference = dict(baseline_ref)
    every = [float(ms) for ms in baseline_ref.get("probes_ms") or []] + list(readings_ms)
    if every:
        reference["median_ms"] = round(statistics.median(every), 3)
    threshold = float(baseline_ref.get("threshold", THRESHOLD_FLOOR))
    spread = robust_spread(readings_ms) if len(readings_ms) >= MIN_SPREAD_READINGS else PRIOR_SPREAD
    threshold = max(threshold, OUTLIER_Z * spread)
    reference["threshold"] = round(min(THRESHOLD_CAP, threshold), 4)
    return reference


def cell_figures(before_ms: float | None, after_ms: float | None, reference: Mapping[str, Any]) -> dict[str, Any] | None:
    """A cell's ``host_speed``: its probes against the run's median.

    :param before_ms: the probe right before the cell (``None``: it failed).
    :param after_ms: the probe right after it.
    :param reference: the run header's ``host_speed`` (:func:`baseline`).
    :return: ``{"before_ms", "after_ms", "median_ms", "deviation", "threshold", "flagged"}``:
        ``deviation`` is the larger (in size) of the two probes' relative deviations, positive
        when the host was slower; ``None`` when neither probe ran.
    """
    readings = [ms for ms in (before_ms, after_ms) if ms is not None]
    median = float(reference.get("median_ms") or 0)
    if not readings or median <= 0:
        return None
    threshold = float(reference.get("threshold", THRESHOLD_FLOOR))
    deviation = max((ms / median - 1 for ms in readings), key=abs)
    return {"before_ms": before_ms, "after_ms": after_ms, "median_ms": median, "deviation": round(deviation, 4),
            "threshold": threshold, "flagged": abs(deviation) > threshold}


def describe_baseline(host_speed: Mapping[str, Any] | None) -> str:
    """One line about a run header's ``host_speed`` (the report's "host speed" line)."""
    if not host_speed or not host_speed.get("median_ms"):
        return "not measured"
    probes = ", ".join(f"{ms:.0f}" for ms in host_speed.get("probes_ms", []))
    return (f"a fixed CPU probe took {float(host_speed['median_ms']):.0f} ms on the server's CPUs and "
            f"budget (median of {len(host_speed.get('probes_ms', []))} quiet probes: {probes} ms; noise "
            f"{float(host_speed.get('noise', 0)):.1%}); a cell whose probe before or after deviates by more than "
            f"{float(host_speed.get('threshold', THRESHOLD_FLOOR)):.0%} is flagged 'host speed changed'")


def speed_ratio(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> tuple[float, float] | None:
    """How much slower the new run's host was than the old one's, and the threshold to judge it by.

    :param old: the old run header's ``host_speed``; :param new: the new one's.
    :return: ``(new median ms ÷ old median ms, the larger of the two thresholds)``; ``None``
        when either run has no host speed (older results files).
    """
    if not old or not new or not old.get("median_ms") or not new.get("median_ms"):
        return None
    threshold = max(float(old.get("threshold", THRESHOLD_FLOOR)), float(new.get("threshold", THRESHOLD_FLOOR)))
    return float(new["median_ms"]) / float(old["median_ms"]), threshold


@runtime_checkable
class HostSpeedProbe(Protocol):
    """A backend that can time :func:`probe` on the server's CPUs and budget (both real backends can)."""

    def probe_host_speed(self, probes: int = 1) -> list[float]:
        """``probes`` probes back to back (one process), run with the servers' budget outside any
        server's cgroup: each one's total milliseconds.

        :raises serverlab.backends.BackendError: if the probe could not run or be read.
        """


class HostSpeedWatch:
    """The runner's use of the probe: the run's baseline, then a probe before and after each cell.

    :param backend: the run's backend; without :meth:`HostSpeedProbe.probe_host_speed` nothing is measured.
    :param write: progress output.
    :param budget: the run's :class:`~serverlab.budget.Budget` (a flagged cell is re-classified with it).
    """

    def __init__(self, backend: object, write: Callable[[str], None] = print, budget: Any = None) -> None:
        self.backend = backend if isinstance(backend, HostSpeedProbe) else None
        self.write = write
        self.budget = budget
        self.reference: dict[str, Any] | None = None
        #: the cells' probes' ms this run (each cell's before and after, in order)
        self.readings: list[float] = []

    def probe(self, probes: int = 1) -> float | None:
        """The median ms of ``probes`` probes, or ``None`` (said) when they cannot run."""
        readings = self.probes(probes)
        return statistics.median(readings) if readings else None

    def probes(self, probes: int) -> list[float]:
        """``probes`` probes' ms; empty (the failure said) when they cannot run, or without a probing backend."""
        if self.backend is None:
            return []
        try:
            return [float(ms) for ms in self.backend.probe_host_speed(probes)]
        except (LabError, OSError) as err:  # a probe never fails a cell: its figure is then "not measured"
            self.write(f"    host-speed probe failed: {err}")
            return []

    def start(self, recorded: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """The run's reference: ``recorded`` (a resumed run's header) or :data:`BASELINE_PROBES` new probes.

        :return: :func:`baseline` of the probes (for the run header), or ``None`` when not measured.
        """
        if recorded and recorded.get("median_ms"):
            self.reference = dict(recorded)
        else:
            readings = self.probes(BASELINE_PROBES)
            self.reference = baseline(readings) if readings else None
        if self.backend is not None:
            self.write(f"host speed: {describe_baseline(self.reference)}")
        return self.reference

    def judge(self, cell: Any, before_ms: float | None, after_ms: float | None) -> Any:
        """``cell`` with its ``host_speed`` figures; an ``ok`` cell beyond the threshold also gets a
        :class:`~serverlab.findings.HostSpeedChanged` finding and the ``interference`` class.

        :param cell: a :class:`serverlab.results.Cell`.
        :return: a new cell (the same one when nothing was measured).
        """
        from dataclasses import replace

        from serverlab.bottleneck import classify
        from serverlab.findings import HostSpeedChanged

        if self.reference is None:
            return cell
        # judged against the run's probes before this cell's, so a slow spell cannot excuse itself
        reference = run_reference(self.reference, self.readings)
        self.readings.extend(ms for ms in (before_ms, after_ms) if ms is not None)
        figures = cell_figures(before_ms, after_ms, reference)
        if figures is None:
            return cell
        cell = replace(cell, host_speed=figures)
        if figures["flagged"] and cell.status == "ok":
            finding = HostSpeedChanged(figures["deviation"], figures["threshold"], before_ms, after_ms,
                                       figures["median_ms"])
            cell = replace(cell, findings=(*cell.findings, finding))
            cell = replace(cell, bottleneck=classify(cell, self.budget))
        return cell


def main(argv: list[str] | None = None) -> int:
    """``python -m serverlab.hostspeed [--probes N] [--kernels N] [--iterations N]``: print each probe
    as a JSON line (:func:`probe`); 0, or 1 when the kernel computed a wrong result."""
    parser = argparse.ArgumentParser(prog="python -m serverlab.hostspeed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--probes", type=int, default=1, help="probes back to back (default 1)")
    parser.add_argument("--kernels", type=int, default=KERNELS_PER_PROBE, help="kernels per probe")
    parser.add_argument("--iterations", type=int, default=KERNEL_ITERATIONS, help="iterations per kernel")
    args = parser.parse_args(argv)
    try:
        for _ in range(min(max(1, args.probes), 100)):
            print(json.dumps(probe(max(1, args.kernels), max(1, args.iterations))), flush=True)
    except HostSpeedError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
