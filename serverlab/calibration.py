"""wrk in every repetition: the reference generator's hello ceiling, measured like any cell.

With ``calibrate = true`` wrk measures each variant's hello ceiling at
:data:`CALIBRATION_CONNECTIONS` connections **in every repetition**, at the place of
that repetition's hello cell in the shuffled order, so wrk's figure gets a bootstrap CI
like Locust's RPS (:attr:`serverlab.report.rows.Row.wrk_rps`):

* when the experiment runs hello at :data:`CALIBRATION_CONNECTIONS` users (closed mode),
  wrk runs on that cell's server, after its Locust window in odd repetitions and before it in
  even ones (:func:`wrk_in_cell`, :func:`wrk_goes_first`); the cell is its Locust half, so no
  separate Locust run is needed;
* otherwise the variant's first cell of each repetition runs wrk and then Locust on hello
  before its own load (:func:`calibrate_standalone`), as the lab always did once per variant.

Each run also records the server's CPU milliseconds per request under wrk, to compare
with the cell's under Locust (the two generators should send the same work).

An experiment of declared requests (an app's own ``[[requests]]``) calibrates on its
first GET request instead of hello, standalone, and records that request's name
(:attr:`serverlab.results.Calibration.workload`) so that the verdict weighs wrk only there.
"""

from __future__ import annotations

import re
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

from serverlab.load import Load
from serverlab.loadgen import LoadError, LoadOutcome, LoadPlan, parse_wrk, read_outcome, wrk_args
from serverlab.results import Calibration
from serverlab.runfolders import write_text
from serverlab.terms import CALIBRATION_CONNECTIONS, CALIBRATION_WORKLOAD, WORKLOADS, Mode
from serverlab.workloads import calibration_target

if TYPE_CHECKING:
    from serverlab.backends import Backend, RunningServer
    from serverlab.budget import Budget


class Experiment(Protocol):
    """What the calibration reads of a :class:`serverlab.experiment.Experiment` (typed here, so
    that calibration, which the experiment's time estimate uses, does not import it back)."""

    servers: tuple[str, ...]
    workloads: tuple[str, ...]
    mode: Mode
    levels: tuple[int, ...]
    duration: float
    repetitions: int
    calibrate: bool
    budget: Budget
    requests: tuple[Any, ...]

#: Seconds of overhead per wrk run (a one-off container's start and stop), for estimates.
WRK_OVERHEAD_S = 1.5

_WRK_REQUESTS = re.compile(r"^\s*(\d+) requests in ", re.MULTILINE)


def wrk_duration(experiment: Experiment) -> float:
    """Seconds each wrk (and standalone Locust) calibration run lasts: the cell's duration, within 3..10 s."""
    return max(3.0, min(experiment.duration, 10.0))


def in_cell(experiment: Experiment) -> bool:
    """Whether the experiment has a hello cell at :data:`CALIBRATION_CONNECTIONS` users (closed mode) to pair wrk with."""
    return (experiment.calibrate and experiment.mode == Mode.CLOSED and not experiment.requests
            and CALIBRATION_WORKLOAD in experiment.workloads and CALIBRATION_CONNECTIONS in experiment.levels)


def is_calibration_cell(experiment: Experiment, workload: str, level: int) -> bool:
    """Whether wrk runs after this cell (see :func:`in_cell`)."""
    return in_cell(experiment) and workload == CALIBRATION_WORKLOAD and level == CALIBRATION_CONNECTIONS


def estimated_seconds(experiment: Experiment, overhead_s: float, repetitions: int | None = None) -> float:
    """Seconds the calibration adds to a run of ``repetitions`` (default: the experiment's).

    :param overhead_s: a cell's start/verify/stop overhead (the standalone calibration pays it once more).
    """
    if not experiment.calibrate:
        return 0.0
    reps = repetitions if repetitions is not None else experiment.repetitions
    each = wrk_duration(experiment)
    if in_cell(experiment):
        return len(experiment.servers) * reps * (each + WRK_OVERHEAD_S)
    return len(experiment.servers) * reps * (2 * each + 1.0 + overhead_s)


def requests_of(output: str) -> int | None:
    """The ``N requests in ...`` count of wrk's output, or ``None``."""
    match = _WRK_REQUESTS.search(output)
    return int(match.group(1)) if match else None


def measure_wrk(backend: Backend, server: RunningServer, duration: float, log: Path, path: str | None = None,
                headers: Sequence[str] = (), connections: int = CALIBRATION_CONNECTIONS) -> tuple[float, float | None]:
    """Run wrk on hello (or ``path`` with ``headers``) for ``duration`` seconds at ``connections``; return
    its RPS and the server's CPU ms per request during it (``None`` without a sampler). wrk's output goes to ``log``.

    :raises LoadError: when wrk printed no figure.
    """
    started = time.time()
    result = backend.run_wrk(wrk_args(server.url_for_loadgen + (path or WORKLOADS[CALIBRATION_WORKLOAD].path),
                                      connections, duration, headers=headers), duration + 60)
    ended = time.time()
    write_text(log, result.output)
    rps = parse_wrk(result.output)
    cpu = server.sampler.cpu_between(started, ended) if server.sampler else None
    requests = requests_of(result.output)
    return rps, (cpu * 1000 / requests if cpu is not None and requests else None)


def wrk_goes_first(repetition: int) -> bool:
    """Whether wrk runs before the hello cell's Locust window (even repetitions) rather than after it.

    Alternating means neither generator always meets the freshly started server: with Locust always
    first, Locust/wrk read 1.07 and 1.11 on gunicorn-gthread and uwsgi-http11 where interleaved
    rounds on one warm server read 1.01 and 1.00 (``scripts/locust-vs-wrk.py``; the README's
    "Why Locust's RPS differs from wrk's" has what the order does not explain).
    """
    return repetition % 2 == 0


def wrk_in_cell(backend: Backend, server: RunningServer, cell_dir: Path, experiment: Experiment,
                repetition: int, write: Callable[[str], None]) -> Calibration:
    """wrk on the hello cell's server, before or after its Locust window (:func:`wrk_goes_first`).

    :return: this repetition's :class:`~serverlab.results.Calibration` without Locust's half
        (:func:`paired_with` adds it once the cell measured); on failure one whose ``note`` says why.
    """
    duration = wrk_duration(experiment)
    first = wrk_goes_first(repetition)
    write(f"    wrk on {server.variant.name}: hello, {CALIBRATION_CONNECTIONS} connections, {duration:g} s "
          f"({'before' if first else 'after'} Locust, repetition {repetition})")
    try:
        wrk_rps, cpu_ms = measure_wrk(backend, server, duration, cell_dir / "wrk.log")
    except LoadError as err:
        return Calibration(note=f"wrk failed: {err}", repetition=repetition, wrk_first=first)
    return Calibration(wrk_rps=wrk_rps, connections=CALIBRATION_CONNECTIONS, duration_s=duration, repetition=repetition,
                       wrk_cpu_ms_per_request=cpu_ms, wrk_first=first)


def paired_with(wrk: Calibration, locust_rps: float) -> Calibration:
    """``wrk`` (from :func:`wrk_in_cell`) with the cell's Locust RPS and their ratio; unchanged when wrk failed."""
    if wrk.note is not None or not wrk.wrk_rps:
        return wrk
    return replace(wrk, locust_rps=locust_rps, ratio=locust_rps / wrk.wrk_rps)


def run_locust_plan(backend: Backend, server: RunningServer, plan: LoadPlan, out_dir: Path) -> LoadOutcome:
    """Run Locust's ``plan`` against ``server`` into ``out_dir`` (its log as ``locust.log``) and read what it measured.

    :raises LoadError: when Locust measured nothing (:func:`serverlab.loadgen.read_outcome`).
    """
    paths = backend.locust_paths(server, out_dir)
    result = backend.run_locust(plan.locust_args(paths.locustfile, paths.host, paths.out_dir),
                                plan.environment(paths.out_dir), out_dir, plan.run_time_s + 120)
    write_text(out_dir / "locust.log", result.output)
    return read_outcome(out_dir, plan, result.output)


def calibrate_standalone(backend: Backend, server: RunningServer, cell_dir: Path, experiment: Experiment,
                         repetition: int, write: Callable[[str], None]) -> Calibration:
    """wrk and Locust on hello (or the first declared GET request) at the same concurrency, before a
    cell of another workload or level: wrk first in even repetitions, Locust first in odd ones
    (:func:`wrk_goes_first`).

    :return: wrk's and Locust's RPS and their ratio; when wrk or Locust fails, a
        :class:`~serverlab.results.Calibration` whose ``note`` says which and why, and no ratio.
    """
    duration = wrk_duration(experiment)
    target = calibration_target(experiment.requests)
    if target is None:
        return Calibration(note="no GET request declared: wrk sends GETs only, so nothing was calibrated",
                           repetition=repetition)
    workload, path, headers = target
    named = workload.name if experiment.requests else None  # recorded for declared requests only
    first = wrk_goes_first(repetition)
    write(f"    calibrating {server.variant.name}: {'wrk then Locust' if first else 'Locust then wrk'} on {workload.name}, "
          f"{CALIBRATION_CONNECTIONS} connections, {duration:g} s each (repetition {repetition})")
    calib_dir = cell_dir / "calibration"
    calib_dir.mkdir(exist_ok=True)
    plan = LoadPlan(workload, {}, Load.of(Mode.CLOSED, CALIBRATION_CONNECTIONS, processes=experiment.budget.loadgen_processes),
                    duration, 1.0, not server.variant.keep_alive)

    wrk_rps = cpu_ms = locust_rps = None
    stage = ""
    try:
        for stage in ("wrk", "Locust") if first else ("Locust", "wrk"):
            if stage == "wrk":
                wrk_rps, cpu_ms = measure_wrk(backend, server, duration, calib_dir / "wrk.log", path, headers)
            else:
                locust_rps = run_locust_plan(backend, server, plan, calib_dir).rps
    except LoadError as err:
        return Calibration(wrk_rps=wrk_rps, note=f"{stage} failed: {err}", repetition=repetition,
                           wrk_cpu_ms_per_request=cpu_ms, workload=named, wrk_first=first)
    return Calibration(wrk_rps=wrk_rps, locust_rps=locust_rps, ratio=locust_rps / wrk_rps if wrk_rps else 0.0,
                       connections=CALIBRATION_CONNECTIONS, duration_s=duration, repetition=repetition,
                       wrk_cpu_ms_per_request=cpu_ms, workload=named, wrk_first=first)
