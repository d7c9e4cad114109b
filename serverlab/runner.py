"""Running an experiment fairly, one cell at a time, keeping every result.

For each cell (variant × workload × level × repetition) the runner:

1. (re)starts the variant under the experiment's CPU/memory budget and waits
   until it is healthy;
2. verifies it answers the workload correctly (status, headers, body) — a wrong
   answer marks the cell ``unverified`` and nothing is loaded;
3. runs Locust on other CPUs: a warm-up whose figures are discarded, then the
   measured period;
4. reads the server's CPU seconds and peak memory and the generator's CPU;
5. appends the cell to ``results.jsonl`` at once (a crash or Ctrl-C keeps every
   finished cell; ``--resume`` re-runs only what is missing or failed).

The order of cells is shuffled per repetition (seeded; the seed is recorded), so
no variant always runs first, last, or after the same neighbour.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import random
import signal
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from labapp import package_versions
from labapp.variants import Variant
from serverlab import LabError
from serverlab.backends import ROOT, BackendError, DockerBackend, LocalBackend, RunningServer, compose_project, make_backend
from serverlab.bottleneck import classify
from serverlab.cpulock import CpuLock
from serverlab.experiment import Experiment, check_machine, parse_cpuset
from serverlab.findings import Calibration, cell_findings
from serverlab.interference import CpuMonitor, describe_probe, interference_figures, quietness_probe
from serverlab.loadgen import SATURATION_SHARE, LoadError, LoadOutcome, LoadPlan, parse_wrk, read_outcome, wrk_args
from serverlab.results import Cell, ResultsWriter, RunHeader, read_results
from serverlab.workloads import WORKLOADS, VerificationError, verify

#: Concurrency (Locust users and wrk connections) of the calibration runs.
CALIBRATION_CONNECTIONS = 32
#: A measured window (warm-up end to last response) shorter than planned by more than
#: this share, or by more than :data:`SHORT_WINDOW_SLACK_S` if that is larger, fails the
#: cell: the server stopped answering (hung, stopped, overloaded) before the end, so the
#: figures cover less than the planned period. A healthy window comes out within a few
#: hundredths of a second of the plan (up to ~0.4 s short on a busy machine); a hung server
#: cut an 8 s window to 5 s, and Locust's early timers (fixed in the locustfile) cut 3 s to 0.4 s.
SHORT_WINDOW_TOLERANCE = 0.10
#: The absolute floor of the shortfall allowed (seconds): covers Locust's start-up skew on 1-3 s cells.
SHORT_WINDOW_SLACK_S = 0.5
#: After the load, the server must answer ``/healthz`` within this many seconds, or the
#: cell fails as hung. Long enough to drain a full backlog (64 queued 50 ms requests on a
#: single-threaded server take 3.2 s); a hung server is thus named at most this long
#: after Locust's own end (its run time plus its 5 s stop timeout).
HUNG_AFTER_S = 10.0


#: Signals that stop a run cleanly (servers and generators first); exit status 128 + the number.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class RunStopped(KeyboardInterrupt):
    """A run was stopped by a signal (SIGINT, SIGTERM or SIGHUP) after cleaning up.

    :param signum: the signal's number; :attr:`exit_code` is ``128 + signum``
        (130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP).
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.signame = signal.Signals(signum).name
        super().__init__(self.signame)

    @property
    def exit_code(self) -> int:
        """The process exit status for this signal: ``128 + signum``."""
        return 128 + self.signum


@dataclass(frozen=True)
class PlannedCell:
    """One cell of the run's plan, in execution order.

    :param variant: variant name; :param workload: workload name; :param level: load level.
    :param repetition: 1-based; :param order: 0-based position in the run.
    """

    variant: str
    workload: str
    level: int
    repetition: int
    order: int

    @property
    def cell_id(self) -> str:
        """``"<variant>/<workload>/<level>/r<repetition>"``."""
        return f"{self.variant}/{self.workload}/{self.level}/r{self.repetition}"


def plan_cells(experiment: Experiment, seed: int) -> list[PlannedCell]:
    """Every cell of ``experiment``, shuffled within each repetition by ``seed``.

    :return: cells in execution order; repetition 1's cells all come before repetition 2's.
    """
    rng = random.Random(seed)
    cells: list[PlannedCell] = []
    for repetition in range(1, experiment.repetitions + 1):
        combos = [(v, w, lvl) for v in experiment.servers for w in experiment.workloads for lvl in experiment.levels]
        rng.shuffle(combos)
        for variant, workload, level in combos:
            cells.append(PlannedCell(variant, workload, level, repetition, len(cells)))
    return cells


def new_run_id(experiment: Experiment, now: datetime | None = None) -> str:
    """A run id like ``20261120-231500-quick`` (UTC)."""
    now = now or datetime.now(timezone.utc)
    return f"{now:%Y%m%d-%H%M%S}-{experiment.name}"


def _git_commit() -> str | None:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if commit.returncode != 0:
        return None
    return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _settings(record: dict[str, object]) -> dict[str, object]:
    """An experiment record's settings as JSON would give them back, name-independent parts only."""
    return json.loads(json.dumps({k: v for k, v in record.items() if k not in ("description", "path")}, default=str))


def experiment_digest(experiment: Experiment) -> str:
    """A digest of the effective experiment: its settings and its variants as they would run.

    Two loads of an unchanged experiment file (and unchanged ``servers/*.toml``) give the
    same digest; any setting that changes what is measured changes it.

    :return: 16 hex digits (the start of a SHA-256).
    """
    effective = {"settings": _settings(experiment.record()),
                 "variants": {name: variant.record() for name, variant in experiment.variants().items()}}
    return hashlib.sha256(json.dumps(effective, sort_keys=True, default=str).encode()).hexdigest()[:16]


def check_unchanged(experiment: Experiment, header: RunHeader) -> None:
    """Refuse to resume a run whose experiment changed since it began.

    :raises LabError: naming the changed settings, and how to start a new run instead.
    """
    old, new = _settings(header.experiment), _settings(experiment.record())
    changed = sorted(key for key in {*old, *new} if old.get(key) != new.get(key))
    recorded = header.metadata.get("experiment_digest")
    if (recorded is None and not changed) or recorded == experiment_digest(experiment):
        return
    what = "; ".join(f"{key}: {old.get(key)!r} then, {new.get(key)!r} now" for key in changed) \
        or "the server variants' declarations (servers/*.toml)"
    raise LabError(f"experiment {experiment.name!r} changed since run {header.run_id} began ({what}); resuming would "
                   "mix cells measured under different settings. Run it without --resume to start a new run, "
                   "or restore the settings to resume this one")


def run_metadata(experiment: Experiment, backend: LocalBackend | DockerBackend, seed: int) -> dict[str, object]:
    """The facts stored once per run: host, versions, limits, commit, seed."""
    return {
        "packages": package_versions(),  # this environment's; the Docker backend replaces them with the image's
        "python": platform.python_version(),
        **backend.describe(),
        "cpu_model": _cpu_model(),
        "host_cores": os.cpu_count(),
        "git_commit": _git_commit(),
        "started_at": time.time(),
        "seed": seed,
        "experiment_digest": experiment_digest(experiment),
        "server_cpus": experiment.budget.server_cpus,
        "server_memory": experiment.budget.server_memory,
        "server_cpuset": experiment.budget.server_cpuset,
        "loadgen_cpuset": experiment.budget.loadgen_cpuset,
        "loadgen_processes": experiment.budget.loadgen_processes,
        "loadgen_processes_chosen": (
            f"{experiment.budget.loadgen_processes} Locust process(es)"
            + (f" (auto: one per CPU of loadgen_cpuset {experiment.budget.loadgen_cpuset!r} on this machine)"
               if experiment.budget.loadgen_auto else " (set in the experiment)")),
    }


class Progress:
    """Prints one line per cell: position, cell, outcome, and time left.

    :param total: cells to run this time; :param write: where lines go.
    """

    def __init__(self, total: int, write: Callable[[str], None]) -> None:
        self.total = total
        self.done = 0
        self.started = time.monotonic()
        self.write = write

    def starting(self, cell: PlannedCell, unit: str) -> None:
        """Announce a cell before it runs."""
        self.write(f"[{self.done + 1}/{self.total}] {cell.variant} · {cell.workload} · {cell.level} {unit} · r{cell.repetition} ...")

    def finished(self, cell: Cell) -> None:
        """Report a finished cell and the estimated time left."""
        self.done += 1
        elapsed = time.monotonic() - self.started
        left = elapsed / self.done * (self.total - self.done)
        if cell.status == "ok":
            p99 = cell.latency_us.get("p99", 0) / 1000
            what = f"{cell.rps:,.0f} RPS, p99 {p99:.2f} ms, {cell.failures} failures"
            if cell.total_time_s is not None:
                what += f", {cell.total_time_s:.2f} s total"
            if cell.bottleneck:
                what += f", {cell.bottleneck['class']} ({cell.bottleneck['reason']})"
        else:
            what = f"{cell.status.upper()}: {cell.error}"
        self.write(f"    {what}  ({self.done}/{self.total} done, ~{left / 60:.1f} min left)")


class Runner:
    """Runs one experiment with one backend into ``reports/<run-id>/``.

    :param experiment: the validated experiment.
    :param backend: ``"docker"`` or ``"local"``.
    :param reports_dir: the parent of run folders.
    :param write: progress output (``print`` by default).
    :param retry_busy: re-measure a cell flagged for interference up to this many times.
    :raises serverlab.experiment.ExperimentError: if the budget does not fit this machine
        (:func:`serverlab.experiment.check_machine`).
    """

    def __init__(self, experiment: Experiment, backend: str, reports_dir: Path,
                 write: Callable[[str], None] = print, retry_busy: int = 0) -> None:
        check_machine(experiment)
        self.experiment = experiment
        self.backend = make_backend(backend, experiment.budget)
        self.reports_dir = Path(reports_dir).resolve()
        self.write = write
        self.variants: dict[str, Variant] = experiment.variants()
        self.calibration: dict[str, Calibration] = {}
        self.retry_busy = max(0, int(retry_busy))
        self.server_cpus = parse_cpuset(experiment.budget.server_cpuset)
        self.loadgen_cpus = parse_cpuset(experiment.budget.loadgen_cpuset)

    def run(self, resume: str | None = None) -> Path:
        """Run every planned cell not yet measured; return the run folder.

        While it runs it holds the CPU lock of its cpusets (see :mod:`serverlab.cpulock`)
        and owns what it starts: on SIGINT, SIGTERM or SIGHUP it stops its server and
        load generator (processes or containers), says so, and raises :class:`RunStopped`.

        :param resume: a run id (or ``"latest"``) to continue instead of starting anew.
        :raises LabError: on a backend that cannot start, a bad resume target, or CPUs
            another run holds (:class:`serverlab.cpulock.CpusBusyError`).
        :raises RunStopped: when a stop signal arrived (after cleaning up).
        """
        experiment = self.experiment
        if resume:
            run_dir = self._resolve_run(resume)
            header, done_cells = read_results(run_dir / "results.jsonl")
            if header.experiment.get("name") != experiment.name:
                raise LabError(f"run {header.run_id} is of experiment {header.experiment.get('name')!r}, not {experiment.name!r}")
            check_unchanged(experiment, header)
            seed = int(header.metadata["seed"])
            done = {c.cell_id for c in done_cells if c.status == "ok"}
            for cell in done_cells:
                if cell.calibration:
                    self.calibration[cell.variant] = cell.calibration
        else:
            seed = experiment.seed if experiment.seed is not None else random.SystemRandom().randrange(2**32)
            run_dir = self.reports_dir / new_run_id(experiment)
            done = set()
        plan = [cell for cell in plan_cells(experiment, seed) if cell.cell_id not in done]
        lock = CpuLock([*self.server_cpus, *self.loadgen_cpus],
                       f"run {run_dir.name} (experiment {experiment.name}, backend {self.backend.name})")
        lock.acquire()
        if isinstance(self.backend, DockerBackend):
            self.backend.project = compose_project(run_dir.name)
        previous_handlers = self._catch_stop_signals()
        progress = Progress(len(plan), self.write)
        stopped: KeyboardInterrupt | None = None
        try:
            self._run_cells(plan, run_dir, seed, bool(resume), progress)
        except KeyboardInterrupt as err:
            stopped = err
            raise
        finally:
            self._stopping = True  # a second signal must not cut the cleanup short
            left = self.backend.close()
            lock.release()
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
            if stopped is not None:
                name = stopped.signame if isinstance(stopped, RunStopped) else "SIGINT"
                self.write(f"\nstopped by {name}: " + (f"stopped {', '.join(left)}; " if left else "")
                           + f"no server or load generator of this run is left running. {progress.done} cells kept in "
                           f"{run_dir}/results.jsonl; continue with: serverlab run {experiment.name} --resume {run_dir.name}")
        return run_dir

    def _run_cells(self, plan: list[PlannedCell], run_dir: Path, seed: int, resume: bool, progress: Progress) -> None:
        """Prepare the backend, write (or reopen) the results file, and measure ``plan`` in order."""
        experiment = self.experiment
        if isinstance(self.backend, DockerBackend):
            self.backend.prepare(list(experiment.servers), progress=self.write)
        else:
            self.backend.prepare()
        probe = quietness_probe(self.server_cpus, self.loadgen_cpus)
        self.write(describe_probe(probe))
        header = RunHeader(run_id=run_dir.name, experiment=experiment.record(),
                           metadata={**run_metadata(experiment, self.backend, seed), "quietness_probe": probe})
        writer = ResultsWriter(run_dir / "results.jsonl", header, resume=resume)
        unit = {"closed": "users", "open": "RPS", "requests": "requests"}[experiment.mode]
        self.write(f"run {run_dir.name}: {len(plan)} cells ({experiment.cell_count} planned), backend {self.backend.name}, "
                   f"seed {seed}, results in {run_dir}/results.jsonl")
        if resume and not plan:
            self.write(f"run {run_dir.name} is complete: every planned cell is ok, nothing to resume")
        for planned in plan:
            progress.starting(planned, unit)
            cell = self.measure_retrying_busy(planned, run_dir)
            writer.append(cell)
            progress.finished(cell)

    def _catch_stop_signals(self) -> dict[int, object]:
        """Turn SIGINT/SIGTERM/SIGHUP into :class:`RunStopped` (main thread only); return the old handlers."""
        self._stopping = False
        if threading.current_thread() is not threading.main_thread():
            return {}

        def on_signal(signum: int, _frame: object) -> None:
            if not self._stopping:
                self._stopping = True
                raise RunStopped(signum)

        return {signum: signal.signal(signum, on_signal) for signum in STOP_SIGNALS}

    def _resolve_run(self, resume: str) -> Path:
        """The run folder ``resume`` names; ``"latest"`` is the newest run of this experiment
        started (finished or not; ``reports/latest`` moves only when a run completes).

        :raises LabError: naming the runs there when there is no such run.
        """
        runs = list_runs(self.reports_dir)
        if resume == "latest":
            mine = [run for run in runs if run.experiment == self.experiment.name]
            if mine:
                return mine[-1].path
        elif (self.reports_dir / resume / "results.jsonl").is_file() and resume != "latest":
            return self.reports_dir / resume
        names = ", ".join(f"{run.path.name} ({run.experiment})" for run in runs) or "none"
        what = f"no run of experiment {self.experiment.name!r}" if resume == "latest" else f"no run {resume!r}"
        raise LabError(f"{what} under {self.reports_dir}; runs there: {names}")

    # -- one cell -----------------------------------------------------------------

    def _base_cell(self, planned: PlannedCell, run_dir: Path, variant: Variant) -> dict[str, object]:
        experiment = self.experiment
        budget = experiment.budget
        config = {**variant.record(), "server_cpus": budget.server_cpus, "server_memory": budget.server_memory,
                  "server_cpuset": budget.server_cpuset, "loadgen_cpuset": budget.loadgen_cpuset,
                  "loadgen_processes": budget.loadgen_processes, "backend": self.backend.name}
        return dict(
            run_id=run_dir.name, cell_id=planned.cell_id, variant=planned.variant, workload=planned.workload,
            workload_params=experiment.params[planned.workload], mode=experiment.mode, level=planned.level,
            users=planned.level if experiment.mode == "closed" else experiment.users,
            repetition=planned.repetition, order=planned.order, config=config, warmup_s=experiment.warmup,
            loadgen_cpu_budget=float(min(budget.loadgen_processes, budget.loadgen_cores)),
        )

    def measure_retrying_busy(self, planned: PlannedCell, run_dir: Path) -> Cell:
        """:meth:`measure`, again up to ``retry_busy`` times while the cell is flagged for interference.

        :return: the first cell not flagged, or the last attempt (flagged, with a warning saying so).
        """
        cell = self.measure(planned, run_dir)
        for attempt in range(1, self.retry_busy + 1):
            if not (cell.interference or {}).get("flagged"):
                break
            self.write(f"    other programs used {cell.interference['share']:.0%} of the lab's CPUs: "  # type: ignore[index]
                       f"re-measuring (retry {attempt} of {self.retry_busy})")
            time.sleep(2.0)
            cell = self.measure(planned, run_dir)
        return cell

    def measure(self, planned: PlannedCell, run_dir: Path) -> Cell:
        """Start, verify, load and stop one cell's server; never raises for a server's failure.

        Each call measures into a fresh ``cells/<cell>/attempt-<N>/`` folder and reads only
        what that attempt left there (an interrupted earlier attempt's files are never merged).

        :return: an ``ok`` cell, or a ``failed``/``unverified`` one saying why.
        """
        variant = self.variants[planned.variant]
        base = self._base_cell(planned, run_dir, variant)
        cell_dir = new_attempt_dir(run_dir / "cells" / planned.cell_id.replace("/", "_"))
        try:
            server = self.backend.start(variant)
        except BackendError as err:
            return Cell(**base, status="failed", error=f"server did not start: {err}")
        try:
            if self.experiment.calibrate and planned.variant not in self.calibration:
                self.calibration[planned.variant] = self.calibrate(server, cell_dir)
            base["calibration"] = self.calibration.get(planned.variant)
            return self._load(planned, server, base, cell_dir)
        finally:
            self.backend.stop(server)

    def _load(self, planned: PlannedCell, server: RunningServer, base: dict, cell_dir: Path) -> Cell:
        experiment = self.experiment
        workload = WORKLOADS[planned.workload]
        params = experiment.params[planned.workload]
        try:
            verify(server.url_for_host, workload, params)
        except VerificationError as err:
            return Cell(**base, status="unverified", error=f"failed verification before load: {err}")
        plan = LoadPlan(workload, params, experiment.mode, planned.level, experiment.users,
                        experiment.duration, experiment.warmup, experiment.budget.loadgen_processes)
        locustfile, host, out = self.backend.locust_paths(server, cell_dir)
        timeout = plan.run_time_s + 120
        with CpuMonitor() as monitor:
            result = self.backend.run_locust(plan.locust_args(locustfile, host, out), plan.environment(out), cell_dir, timeout)
        (cell_dir / "locust.log").write_text(result.output)
        died = self.backend.exit_status(server)
        hung = None if died else self._hung(server)
        try:
            outcome = read_outcome(cell_dir, plan, result.output)
        except LoadError as err:
            reason = died or hung or (f"Locust exited with status {result.returncode}" if result.returncode not in (0, 1) else "")
            return Cell(**base, status="failed", error=f"{reason + ': ' if reason else ''}{err}")
        sampler = self.backend.sampler()
        server_cpu = sampler.cpu_between(*outcome.window) if sampler else None
        saturated = outcome.busiest_process_share >= SATURATION_SHARE or outcome.cpu_warning
        interference = None
        window = monitor.between(*outcome.window)
        if window is not None:
            loadgen_rate = outcome.loadgen_cpu_s / outcome.duration_s if outcome.duration_s > 0 else 0.0
            interference = interference_figures(window[0], window[1], self.server_cpus, self.loadgen_cpus,
                                                server_cpu, loadgen_rate * (window[1].at - window[0].at))
        findings = cell_findings(outcome, saturated=saturated, interference=interference, mode=experiment.mode)
        status, error = "ok", None
        problems = self._window_problems(outcome)
        if died:
            status, error = "failed", f"{died} during the load"
        elif experiment.mode == "requests" and outcome.requests < planned.level:
            status, error = "failed", f"only {outcome.requests} of {planned.level} requests completed within {experiment.duration:g} s"
        elif outcome.requests == 0:
            status, error = "failed", "no responses in the measured period"
        elif hung or problems:
            status, error = "failed", "; ".join(filter(None, [hung, *problems]))
        cell = Cell(
            **base, status=status, error=error, started_at=outcome.window[0], duration_s=outcome.duration_s,
            requests=outcome.requests, failures=outcome.failures, rps=outcome.rps, latency_us=outcome.latency_us,
            hdr=outcome.histogram, locust=outcome.locust, server_cpu_s=server_cpu,
            server_peak_memory_bytes=sampler.peak_memory() if sampler else None,
            cpu_ms_per_request=(server_cpu * 1000 / outcome.requests) if server_cpu is not None and outcome.requests else None,
            loadgen_cpu_s=outcome.loadgen_cpu_s, loadgen_saturated=saturated, total_time_s=outcome.total_time_s,
            open_load=outcome.open_load, findings=tuple(findings),
            loadgen_busiest_share=round(outcome.busiest_process_share, 4), interference=interference,
            timeline=outcome.timeline,
        )
        return replace(cell, bottleneck=classify(cell)) if cell.status == "ok" else cell

    def _hung(self, server: RunningServer) -> str | None:
        """``None`` if the server answers ``/healthz`` within :data:`HUNG_AFTER_S`, else why not."""
        if not server.url_for_host:
            return None
        try:
            with urllib.request.urlopen(server.url_for_host + "/healthz", timeout=HUNG_AFTER_S) as response:
                if response.status == 200:
                    return None
                return f"server hung: /healthz answered {response.status} after the load"
        except OSError as err:
            return (f"server hung: it did not answer /healthz within {HUNG_AFTER_S:g} s after the load "
                    f"({getattr(err, 'reason', err)}; stopped, deadlocked or overloaded)")

    def _window_problems(self, outcome: LoadOutcome) -> list[str]:
        """Why a measured window is not trustworthy: cut short, or requests left unanswered."""
        experiment = self.experiment
        problems = []
        allowed = max(experiment.duration * SHORT_WINDOW_TOLERANCE, SHORT_WINDOW_SLACK_S)
        if experiment.mode != "requests" and experiment.duration - outcome.duration_s > allowed:
            silent_tail = outcome.window_end - outcome.window[1]
            why = (f"the server stopped answering {silent_tail:.1f} s before Locust stopped" if silent_tail > allowed
                   else "Locust's run ended early (its timers were late or it was starved of CPU)")
            problems.append(f"measured window {outcome.duration_s:.2f} s of {experiment.duration:g} s planned "
                            f"(shorter by more than {allowed:.2g} s): {why}")
        if outcome.unanswered and experiment.mode != "open":
            problems.append(f"{outcome.unanswered} request(s) sent but never answered when Locust stopped")
        return problems

    def calibrate(self, server: RunningServer, cell_dir: Path) -> Calibration:
        """Measure the variant's hello ceiling with wrk and with Locust at the same concurrency.

        :return: wrk's and Locust's RPS and their ratio; when wrk or Locust fails, a
            :class:`~serverlab.findings.Calibration` whose ``note`` says which and why, and no ratio.
        """
        duration = max(3.0, min(self.experiment.duration, 10.0))
        self.write(f"    calibrating {server.variant.name}: wrk vs Locust on hello, {CALIBRATION_CONNECTIONS} connections, {duration:g} s each")
        wrk = self.backend.run_wrk(wrk_args(server.url_for_loadgen + "/", CALIBRATION_CONNECTIONS, duration), duration + 60)
        calib_dir = cell_dir / "calibration"
        calib_dir.mkdir(exist_ok=True)
        (calib_dir / "wrk.log").write_text(wrk.output)
        try:
            wrk_rps = parse_wrk(wrk.output)
        except LoadError as err:
            return Calibration(note=f"wrk failed: {err}")
        hello = WORKLOADS["hello"]
        plan = LoadPlan(hello, {}, "closed", CALIBRATION_CONNECTIONS, CALIBRATION_CONNECTIONS, duration, 1.0,
                        self.experiment.budget.loadgen_processes)
        locustfile, host, out = self.backend.locust_paths(server, calib_dir)
        result = self.backend.run_locust(plan.locust_args(locustfile, host, out), plan.environment(out), calib_dir,
                                         plan.run_time_s + 120)
        (calib_dir / "locust.log").write_text(result.output)
        try:
            locust_rps = read_outcome(calib_dir, plan, result.output).rps
        except LoadError as err:
            return Calibration(wrk_rps=wrk_rps, note=f"Locust failed: {err}")
        return Calibration(wrk_rps=wrk_rps, locust_rps=locust_rps, ratio=locust_rps / wrk_rps if wrk_rps else 0.0,
                           connections=CALIBRATION_CONNECTIONS, duration_s=duration)


@dataclass(frozen=True)
class RunFolder:
    """A run folder found under the reports folder.

    :param path: the folder; :param experiment: its experiment's name;
    :param started_at: Unix seconds it started (its header's, else the file's change time).
    """

    path: Path
    experiment: str
    started_at: float


def list_runs(reports_dir: Path) -> list[RunFolder]:
    """Every run folder under ``reports_dir`` (the ``latest`` link excluded), oldest first.

    A folder whose ``results.jsonl`` has an unreadable header is left out.
    """
    runs = []
    for results in Path(reports_dir).glob("*/results.jsonl"):
        if results.parent.is_symlink():
            continue
        try:
            with results.open(encoding="utf-8") as handle:
                header = json.loads(handle.readline())
            started = float(header.get("metadata", {}).get("started_at") or results.stat().st_ctime)
            runs.append(RunFolder(results.parent, str(header.get("experiment", {}).get("name")), started))
        except (OSError, ValueError, AttributeError, TypeError):
            continue
    return sorted(runs, key=lambda run: (run.started_at, run.path.name))


def new_attempt_dir(cell_root: Path) -> Path:
    """Create and return ``cell_root/attempt-<N>``, N one more than any attempt there (1 first).

    :raises OSError: if the folder cannot be created.
    """
    cell_root.mkdir(parents=True, exist_ok=True)
    numbers = [int(p.name.split("-", 1)[1]) for p in cell_root.glob("attempt-*") if p.name.split("-", 1)[1].isdigit()]
    attempt = cell_root / f"attempt-{max(numbers, default=0) + 1}"
    attempt.mkdir()
    return attempt


def update_latest(reports_dir: Path, run_dir: Path) -> None:
    """Point ``reports/latest`` at ``run_dir`` (a relative symlink)."""
    link = Path(reports_dir) / "latest"
    tmp = link.with_name(".latest.tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(run_dir.name)
    os.replace(tmp, link)
