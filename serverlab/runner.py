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

import errno
import random
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from labapp.variants import Variant
from serverlab import LabError, calibration, rounds
from serverlab.backends import Backend, BackendError, RunningServer
from serverlab.bottleneck import classify, disturbed_by
from serverlab.cpulock import CpuLock
from serverlab.cpuwatch import CpuWatch, ProcStatWatch
from serverlab.budget import parse_cpuset
from serverlab.cellwindow import hung_after_load, window_problems
from serverlab.experiment import Experiment, check_machine, list_experiments
from serverlab.findings import cell_findings
from serverlab.hostspeed import HostSpeedWatch
from serverlab.interference import describe_probe, interference_figures
from serverlab.load import Load
from serverlab.loadgen import SATURATION_SHARE, LoadError, LoadPlan, read_outcome
from serverlab.planning import PlannedCell, check_unchanged, new_run_id, plan_cells, run_metadata
from serverlab.progress import Progress
from serverlab.records import Interference, VariantRecord
from serverlab.remoterun import RemoteGenerator
from serverlab.results import Calibration, Cell, ResultsDiskFull, ResultsWriter, RunHeader, read_results
from serverlab.runfolders import DiskFullError, disk_full_message, list_runs, new_attempt_dir, resume_command, write_text
from serverlab.terms import CellStatus, Mode
from serverlab.workloads import VerificationError, verify_workload

#: Seconds to wait before re-measuring a cell flagged for interference (``--retry-busy``).
RETRY_PAUSE_S = 2.0


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


class Runner:
    """Runs one experiment with one backend into ``reports/<run-id>/``.

    :param experiment: the validated experiment.
    :param backend: where servers and Locust run (:func:`serverlab.backends.make_backend`
        builds the ``docker`` and ``local`` ones for ``experiment.budget``).
    :param reports_dir: the parent of run folders.
    :param write: progress output (``print`` by default).
    :param retry_busy: re-measure a cell flagged for interference (or a host-speed change) up to this many times.
    :param cpu_watch: how other programs on the lab's CPUs are noticed (default:
        :class:`serverlab.cpuwatch.ProcStatWatch`, from ``/proc/stat``).
    :param retry_pause_s: seconds to wait before each such re-measurement.
    :param check_budget: check the budget against this machine (:func:`serverlab.experiment.check_machine`);
        ``False`` when the servers run elsewhere already (:class:`serverlab.backends.lab.LabBackend`).
    :raises serverlab.experiment.ExperimentError: if the budget does not fit this machine.
    :attr run_dir: the run folder once :meth:`run` has chosen it (``None`` before).
    """

    def __init__(self, experiment: Experiment, backend: Backend, reports_dir: Path,
                 write: Callable[[str], None] = print, retry_busy: int = 0, cpu_watch: CpuWatch | None = None,
                 retry_pause_s: float = RETRY_PAUSE_S, check_budget: bool = True) -> None:
        if check_budget:
            check_machine(experiment)
        self.run_dir: Path | None = None
        self.experiment = experiment
        self.backend = backend
        self.cpu_watch = cpu_watch or ProcStatWatch()
        self.retry_pause_s = retry_pause_s
        self.reports_dir = Path(reports_dir).resolve()
        self.write = write
        self.variants: dict[str, Variant] = experiment.variants()
        self.calibration: dict[tuple[str, int], Calibration] = {}
        self.retry_busy = max(0, int(retry_busy))
        self.server_cpus = parse_cpuset(experiment.budget.server_cpuset)
        self.loadgen_cpus = parse_cpuset(experiment.budget.loadgen_cpuset)
        self.host_speed = HostSpeedWatch(backend, write, experiment.budget)
        self._resumed: RunHeader | None = None
        #: Locust workers on other hosts (``budget.remote_workers``), ``None`` without.
        self.remote = RemoteGenerator.for_experiment(experiment, backend.name)

    def run(self, resume: str | None = None) -> Path:
        """Run every planned cell not yet measured; return the run folder.

        While it runs it holds the CPU lock of its cpusets (see :mod:`serverlab.cpulock`)
        and owns what it starts: on SIGINT, SIGTERM or SIGHUP it stops its server and
        load generator (processes or containers), says so, and raises :class:`RunStopped`.

        :param resume: a run id (or ``"latest"``) to continue instead of starting anew.
        :raises LabError: on a backend that cannot start, a bad resume target, or CPUs
            another run holds (:class:`serverlab.cpulock.CpusBusyError`).
        :raises RunStopped: when a stop signal arrived (after cleaning up).
        :raises serverlab.runfolders.DiskFullError: when the disk filled up (after cleaning
            up), naming the file, the cells kept and the ``--resume`` command.
        """
        experiment = self.experiment
        if resume:
            run_dir = self._resolve_run(resume)
            header, done_cells = read_results(run_dir / "results.jsonl")
            self._resumed = header
            if header.experiment.get("name") != experiment.name:
                raise LabError(f"run {header.run_id} is of experiment {header.experiment.get('name')!r}, not {experiment.name!r}")
            check_unchanged(experiment, header)
            seed = int(header.metadata["seed"])
            done = {c.cell_id for c in done_cells if c.status == CellStatus.OK}
            for cell in done_cells:
                if cell.calibration and cell.calibration.repetition is not None and not calibration.in_cell(experiment):
                    self.calibration[(cell.variant, cell.calibration.repetition)] = cell.calibration
        else:
            seed = experiment.seed if experiment.seed is not None else random.SystemRandom().randrange(2**32)
            run_dir = self.reports_dir / new_run_id(experiment)
            done, done_cells = set(), []
        self._measured = [c for c in done_cells if c.status == CellStatus.OK]
        plan = [cell for cell in plan_cells(experiment, seed) if cell.cell_id not in done]
        self.run_dir = run_dir
        lock = CpuLock([*self.server_cpus, *self.loadgen_cpus],
                       f"run {run_dir.name} (experiment {experiment.name}, backend {self.backend.name})")
        lock.acquire()
        previous_handlers = self._catch_stop_signals()
        progress = Progress(len(plan), self.write)
        stopped: KeyboardInterrupt | None = None
        try:
            self._run_cells(plan, run_dir, seed, bool(resume), progress)
        except KeyboardInterrupt as err:
            stopped = err
            raise
        except (OSError, ResultsDiskFull) as err:
            if err.errno != errno.ENOSPC:
                raise
            raise DiskFullError(disk_full_message(err, run_dir, self._resume_command(run_dir))) from None
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
                           f"{run_dir}/results.jsonl; continue with: {self._resume_command(run_dir)}")
        return run_dir

    def _resume_command(self, run_dir: Path) -> str:
        return resume_command(self.experiment.name, run_dir, self.reports_dir, self.experiment.path,
                              list_experiments().get(self.experiment.name))

    def _run_cells(self, plan: list[PlannedCell], run_dir: Path, seed: int, resume: bool, progress: Progress) -> None:
        """Prepare the backend, write (or reopen) the results file, and measure ``plan`` in order."""
        experiment = self.experiment
        self.backend.prepare(list(experiment.servers), progress=self.write, run_id=run_dir.name)
        probe = self.cpu_watch.probe(self.server_cpus, self.loadgen_cpus)
        self.write(describe_probe(probe))
        host_speed = self.host_speed.start(self._resumed.metadata.get("host_speed") if self._resumed else None)
        remote = {"remote_workers": self.remote.roll_call(self.backend, run_dir / "roll-call", self.write)} \
            if self.remote else {}
        header = RunHeader(run_id=run_dir.name, experiment=experiment.record(),
                           metadata={**run_metadata(experiment, self.backend, seed), "quietness_probe": probe,
                                     "host_speed": host_speed, **remote},
                           variants={name: VariantRecord.from_dict(name, v.record()) for name, v in self.variants.items()})
        writer = ResultsWriter(run_dir / "results.jsonl", header, resume=resume)
        unit = Mode(experiment.mode).level_unit
        self.write(f"run {run_dir.name}: {len(plan)} cells ({experiment.cell_count} planned), backend {self.backend.name}, "
                   f"seed {seed}, results in {run_dir}/results.jsonl")
        if resume and not plan:
            self.write(f"run {run_dir.name} is complete: every planned cell is ok, nothing to resume")
        for planned in plan:
            self._measure_one(planned, run_dir, writer, progress, unit)
        if experiment.target_ci:  # adaptive repetitions
            rounds.run_rounds(experiment, header, self._measured, seed, len(plan_cells(experiment, seed)),
                                lambda p: self._measure_one(p, run_dir, writer, progress, unit), progress, self.write)

    def _measure_one(self, planned: PlannedCell, run_dir: Path, writer: ResultsWriter, progress: Progress,
                     unit: str) -> None:
        progress.starting(planned, unit)
        cell = self.measure_retrying_busy(planned, run_dir)
        writer.append(cell)
        progress.finished(cell)
        self._measured.append(cell)

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
        if resume != "latest" and (Path(resume).name != resume or resume in (".", "..")):
            path = Path(resume)
            raise LabError(f"--resume takes a run id: the name of a run folder under --reports-dir "
                           f"{self.reports_dir} (or 'latest'), not a path; got {resume!r}. To continue the run in "
                           f"{path}, pass --reports-dir {path.parent} --resume {path.name}")
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

    def _base_cell(self, planned: PlannedCell, run_dir: Path, load: Load) -> dict[str, object]:
        """The fields every outcome of ``planned`` shares; its variant, budget and workload parameters
        are the run header's (stored once there)."""
        experiment = self.experiment
        budget = experiment.budget
        return dict(
            run_id=run_dir.name, cell_id=planned.cell_id, variant=planned.variant, workload=planned.workload,
            mode=experiment.mode, level=planned.level, users=load.users, repetition=planned.repetition,
            order=planned.order, warmup_s=experiment.warmup,
            loadgen_cpu_budget=float(min(budget.loadgen_processes, budget.loadgen_cores)
                                     + (self.remote.capacity() if self.remote else 0)),
        )

    def measure_retrying_busy(self, planned: PlannedCell, run_dir: Path) -> Cell:
        """:meth:`measure`, again up to ``retry_busy`` times while the cell is flagged for interference
        or its host-speed probe flagged it.

        :return: the first cell not flagged, or the last attempt (flagged, with a warning saying so).
        """
        cell = self.measure(planned, run_dir)
        for attempt in range(1, self.retry_busy + 1):
            why = disturbed_by(cell)
            if why is None:
                break
            self.write(f"    {why}: re-measuring (retry {attempt} of {self.retry_busy})")
            time.sleep(self.retry_pause_s)
            cell = self.measure(planned, run_dir)
        return cell

    def measure(self, planned: PlannedCell, run_dir: Path) -> Cell:
        """Start, verify, load and stop one cell's server; never raises for a server's failure.

        Each call measures into a fresh ``cells/<cell>/attempt-<N>/`` folder and reads only
        what that attempt left there (an interrupted earlier attempt's files are never merged).
        The host-speed probe runs right before the server starts and right after it stopped
        (:mod:`serverlab.hostspeed`): never beside the server, never in its measured window.

        :return: an ``ok`` cell, or a ``failed``/``unverified`` one saying why.
        """
        before = self.host_speed.probe()
        cell = self._measure_server(planned, run_dir)
        return self.host_speed.judge(cell, before, self.host_speed.probe())

    def _measure_server(self, planned: PlannedCell, run_dir: Path) -> Cell:
        variant = self.variants[planned.variant]
        load = self.experiment.load(planned.level)
        base = self._base_cell(planned, run_dir, load)
        cell_dir = new_attempt_dir(run_dir / "cells" / planned.cell_id.replace("/", "_"))
        try:
            server = self.backend.start(variant)
        except BackendError as err:
            return Cell(**base, status=CellStatus.FAILED, error=f"server did not start: {err}")
        try:
            key = (planned.variant, planned.repetition)
            if self.experiment.calibrate and not calibration.in_cell(self.experiment) and key not in self.calibration:
                self.calibration[key] = calibration.calibrate_standalone(self.backend, server, cell_dir, self.experiment,
                                                                         planned.repetition, self.write)
            base["calibration"] = self.calibration.get(key)
            in_cell = calibration.is_calibration_cell(self.experiment, planned.workload, planned.level)
            wrk = None
            if in_cell and calibration.wrk_goes_first(planned.repetition):
                wrk = calibration.wrk_in_cell(self.backend, server, cell_dir, self.experiment, planned.repetition, self.write)
            cell = self._load(planned, load, server, base, cell_dir)
            if cell.status == CellStatus.OK and in_cell:
                if wrk is None:
                    wrk = calibration.wrk_in_cell(self.backend, server, cell_dir, self.experiment,
                                                  planned.repetition, self.write)
                cell = replace(cell, calibration=calibration.paired_with(wrk, cell.rps))
            return cell
        finally:
            self.backend.stop(server)

    def _load(self, planned: PlannedCell, load: Load, server: RunningServer, base: dict, cell_dir: Path) -> Cell:
        experiment = self.experiment
        workload = experiment.workload_spec(planned.workload)
        params = experiment.params[planned.workload]
        try:
            verify_workload(server.url_for_host, workload, params)
        except VerificationError as err:
            return Cell(**base, status=CellStatus.UNVERIFIED, error=f"failed verification before load: {err}")
        plan = LoadPlan(workload, params, load, experiment.duration, experiment.warmup,
                        not server.variant.keep_alive)
        paths = self.backend.locust_paths(server, cell_dir)
        timeout = plan.run_time_s + 120
        # remote workers map the server's name to its published port themselves
        args = plan.locust_args(paths.locustfile, server.variant.name if self.remote else paths.host, paths.out_dir)
        env = plan.environment(paths.out_dir)
        if self.remote:
            args, env, timeout = self.remote.locust_args(args, load.processes), self.remote.environment(env), \
                timeout + self.remote.wait_s
        with self.cpu_watch.monitor() as monitor:
            result = self.backend.run_locust(args, env, cell_dir, timeout)
        write_text(cell_dir / "locust.log", result.output)
        died = self.backend.exit_status(server)
        hung = None if died else hung_after_load(server)
        remote_problem, remote_cpu_s = self.remote.check(cell_dir, result.output) if self.remote else (None, 0.0)
        if remote_problem:
            return Cell(**base, status=CellStatus.FAILED, error=remote_problem)
        try:
            outcome = read_outcome(cell_dir, plan, result.output)
        except LoadError as err:
            reason = died or hung or (f"Locust exited with status {result.returncode}" if result.returncode not in (0, 1) else "")
            return Cell(**base, status=CellStatus.FAILED, error=f"{reason + ': ' if reason else ''}{err}")
        sampler = server.sampler
        server_cpu = sampler.cpu_between(*outcome.window) if sampler else None
        saturated = outcome.busiest_process_share >= SATURATION_SHARE or outcome.cpu_warning
        interference: Interference | None = None
        window = monitor.between(*outcome.window)
        if window is not None:
            local_cpu_s = outcome.loadgen_cpu_s - remote_cpu_s  # this machine's generator CPU only
            loadgen_rate = local_cpu_s / outcome.duration_s if outcome.duration_s > 0 else 0.0
            figures = interference_figures(window[0], window[1], self.server_cpus, self.loadgen_cpus,
                                           server_cpu, loadgen_rate * (window[1].at - window[0].at))
            interference = Interference.from_dict(figures) if figures is not None else None
        findings = cell_findings(outcome, saturated=saturated, interference=interference, mode=experiment.mode)
        status, error = CellStatus.OK, None
        problems = window_problems(outcome, experiment.mode, experiment.duration)
        if died:
            status, error = CellStatus.FAILED, f"{died} during the load"
        elif experiment.mode == Mode.REQUESTS and outcome.requests < planned.level:
            status, error = CellStatus.FAILED, f"only {outcome.requests} of {planned.level} requests completed within {experiment.duration:g} s"
        elif hung or problems or outcome.requests == 0:  # the cause (a hung server) first, then what it did to the window
            silent = ["no responses in the measured period"] if outcome.requests == 0 else []
            status, error = CellStatus.FAILED, "; ".join(filter(None, [hung, *problems, *silent]))
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
        return replace(cell, bottleneck=classify(cell, experiment.budget)) if cell.status == CellStatus.OK else cell
