"""The Compare tab's runner: serverlab's own :class:`~serverlab.runner.Runner`, the lab's workers as its load.

A comparison is a run (:mod:`serverlab.uiruns`): the runner measures the ticked servers
through :class:`serverlab.backends.lab.LabBackend` exactly as ``make report`` measures
its own (shuffled order, verification before load, warm-up discarded,
:func:`serverlab.loadgen.read_outcome` over every Locust process's recorder, the
servers' own CPU from ``GET /lab/cpu``, the bottleneck and interference rules) into
``reports/<run-id>/`` with ``results.jsonl``, ``summary.md`` and ``index.html``.
:class:`CollectorDriver` is the backend's load: the master's users on its workers,
their recorders gathered by :mod:`serverlab.ui.collect`. :class:`LiveCpu` gives an
ordinary test the same figures every few seconds (:mod:`serverlab.livemeter`).

The web layer (:mod:`serverlab.ui.web`) talks to :class:`CompareRunner` through
``start``, ``stop``, ``running``, ``status`` and ``results_files`` only.

Units: seconds, RPS, fractions; latency in µs.
"""

from __future__ import annotations

import dataclasses
import os
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import gevent

from serverlab import LabError
from serverlab.backends import BackendError
from serverlab.backends.lab import LabBackend, LabLoad
from serverlab.budget import Budget
from serverlab.experiment import Experiment
from serverlab.hdrdump import ProcessDump
from serverlab.selfreport import SelfReportError, read_self_report
from serverlab.terms import WORKLOADS
from serverlab.ui.collect import Collector
from serverlab.ui.limits import CompareRequest, UIRefused
from serverlab.uiruns import CompareError, comparison_experiment, comparison_rows, lab_budget, run_comparison

#: Locust runner states in which a test is underway (Locust's STATE_* values).
BUSY_STATES = ("spawning", "running", "stopping", "cleanup")
#: Seconds to wait for the users to stop after a window.
STOP_TIMEOUT_S = 15.0


class CollectorDriver:
    """The lab backend's :class:`~serverlab.backends.lab.LoadDriver`: this master's users on its workers.

    :param environment: Locust's environment (master, or a local runner).
    :param collector: resets and gathers every process's recorder.
    :param workload_classes: workload name -> its User class.
    :param names: server URL -> its name (Host holds the name; the users turn it into the URL).
    """

    def __init__(self, environment: Any, collector: Collector, workload_classes: dict[str, type],
                 names: dict[str, str] | None = None) -> None:
        self.environment = environment
        self.collector = collector
        self.workload_classes = workload_classes
        self.names = dict(names or {})

    def run(self, load: LabLoad, window_start: Callable[[], None], window_end: Callable[[], None]) -> list[ProcessDump]:
        """See :meth:`serverlab.backends.lab.LoadDriver.run`.

        :raises BackendError: when no worker is connected or none answered.
        """
        env, runner = self.environment, self.environment.runner
        if self.collector.is_master() and runner.worker_count < 1:
            raise BackendError("no Locust worker is connected")
        env.user_classes = [self.workload_classes[load.workload.name]]
        env.host = self.names.get(load.host, load.host)  # the header names the server under load
        for name, option in load.workload.locust_options.items():
            setattr(env.parsed_options, load.workload.option_dest(option), load.params[name])
        users = load.load.locust_users  # the runner's Load: closed model, its level's users
        runner.start(users, spawn_rate=users)
        try:
            gevent.sleep(load.warmup_s)
            window_start()
            self.collector.reset_all()  # warm-up over
            gevent.sleep(load.duration_s)
            dumps = self.collector.collect()
            window_end()
        finally:
            self.stop()
        if not dumps:
            raise BackendError("no Locust process sent its recorder")
        return dumps

    def stop(self) -> None:
        """Stop the users and wait (up to :data:`STOP_TIMEOUT_S`) until Locust says so."""
        runner = self.environment.runner
        if runner.state in ("stopped", "ready"):
            return
        runner.stop()
        deadline = time.time() + STOP_TIMEOUT_S
        while runner.state not in ("stopped", "ready") and time.time() < deadline:
            gevent.sleep(0.1)


@dataclass
class CompareRun:
    """One Compare started from the web UI (:class:`CompareRunner` runs it): its experiment, run folder,
    state (running/done/stopped/failed), message and start/finish times (Unix seconds)."""

    experiment: Experiment
    state: str = "running"
    message: str = ""
    run_dir: Path | None = None
    started_at: float = 0.0
    finished_at: float | None = None


class CompareRunner:
    """One comparison at a time on one Locust master (or local runner), measured into a run folder.

    :param environment: Locust's environment.
    :param collector: gathers every process's recorder.
    :param workload_classes: workload name -> its User class.
    :param variants: server name -> its ``labapp.variants.Variant``.
    :param target_url: server name -> URL.
    :param reports_dir: where run folders go (``reports/``); when it is not writable, a folder
        on the container's ``/tmp``, and the status says so.
    """

    def __init__(self, environment: Any, collector: Collector, workload_classes: dict[str, type],
                 variants: dict[str, Any], target_url: Callable[[str], str], reports_dir: Path) -> None:
        self.environment = environment
        self.collector = collector
        self.variants = variants
        self.target_url = target_url
        self.reports_dir = Path(reports_dir)
        self.driver = CollectorDriver(environment, collector, workload_classes,
                                      {target_url(name): name for name in variants})
        self.comparison: CompareRun | None = None
        self.backend: LabBackend | None = None
        self._greenlet: gevent.Greenlet | None = None

    def running(self) -> bool:
        """Whether a comparison is underway."""
        return self.comparison is not None and self.comparison.state == "running"

    def _where(self) -> tuple[Path, str]:
        """The folder runs go to, and a note when it is not ``reports/``."""
        if os.access(self.reports_dir, os.W_OK):
            return self.reports_dir, ""
        fallback = Path(tempfile.gettempdir()) / "serverlab-ui-runs"
        fallback.mkdir(exist_ok=True)
        return fallback, (f"{self.reports_dir} is not writable by this container's user (uid {os.getuid()}): this "
                          f"run is kept inside the container ({fallback}; download it below). To keep comparisons "
                          "in reports/, make it writable for uid 10001, or start the lab as yourself with "
                          "SERVERLAB_UID=$(id -u) SERVERLAB_GID=$(id -g) docker compose up (make up does).")

    def start(self, req: CompareRequest) -> CompareRun:
        """Start a checked comparison in the background; return it (rows fill in as servers finish).

        :raises UIRefused: (409) when a comparison or a load test is running or no worker is
            connected; (400) for what :func:`serverlab.uiruns.comparison_experiment` refuses;
            (502) when the first server does not report its CPU.
        """
        if self.running():
            raise UIRefused("a comparison is already running: stop it first", status=409)
        runner = self.environment.runner
        if runner.state in BUSY_STATES:
            raise UIRefused(f"a load test is {runner.state}: stop it first", status=409)
        processes = runner.worker_count if self.collector.is_master() else 1
        if processes < 1:
            raise UIRefused("no Locust worker is connected yet", status=409)
        seed = random.SystemRandom().randrange(1, 2**31) if req.seed is None else req.seed
        # the workload's parameters as the start form's custom parameters set them (--cpu-n ...)
        params = WORKLOADS[req.workload].option_values(self.environment.parsed_options) if req.workload in WORKLOADS else None
        try:
            experiment = comparison_experiment(list(req.servers), req.workload, params, req.users, req.seconds,
                                               req.warmup_s, seed, Budget(), list(self.variants))
            report = read_self_report(self.target_url(experiment.servers[0]))
            affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
            experiment = dataclasses.replace(experiment, budget=lab_budget(report, affinity, processes))
        except CompareError as err:
            raise UIRefused(str(err), status=400) from None
        except SelfReportError as err:
            raise UIRefused(f"cannot read the server's CPU: {err}", status=502) from None
        self.comparison = CompareRun(experiment, started_at=time.time())
        self.backend = LabBackend(self.driver, self.target_url, {"loadgen_processes_connected": processes})
        self._greenlet = gevent.spawn(self._run, self.comparison, self.backend)
        return self.comparison

    def _run(self, comparison: CompareRun, backend: LabBackend) -> None:
        env = self.environment
        saved = (env.host, list(env.user_classes), dict(vars(env.parsed_options)) if env.parsed_options else None)
        reports_dir, note = self._where()
        comparison.message = note

        def found(run_dir: Path) -> None:
            comparison.run_dir = run_dir

        try:
            comparison.run_dir = run_comparison(comparison.experiment, backend, reports_dir, on_run_dir=found)
            comparison.state = "done"
            comparison.message = " ".join(filter(None, [
                f"{len(comparison.experiment.servers)} server(s) measured into {comparison.run_dir.name}", note]))
        except LabError as err:
            comparison.state, comparison.message = "failed", str(err)
        finally:
            comparison.finished_at = time.time()
            env.host, env.user_classes = saved[0], saved[1]
            if saved[2] is not None:
                vars(env.parsed_options).update(saved[2])
            if comparison.state == "running":
                comparison.state = "stopped"

    def stop(self) -> None:
        """Stop a running comparison: the cells measured so far stay in its run folder, and its report is written."""
        if self._greenlet is not None:
            self._greenlet.kill(block=True)
            self._greenlet = None
        c = self.comparison
        if c is not None and c.state in ("running", "stopped"):
            c.state, c.message = "stopped", "stopped by the user"
            if c.run_dir is not None:
                from serverlab.report import write_report

                try:
                    write_report([c.run_dir / "results.jsonl"], c.run_dir)
                except LabError:
                    pass  # nothing measured yet: no report to write
        self.driver.stop()

    def status(self) -> dict[str, Any]:
        """The Compare tab's data: ``{"state" (idle/running/done/stopped/failed), "message", "current",
        "compare_id" (the run id), "workload", "users", "seconds", "warmup_s", "seed", "rows"}``, rows from
        :func:`serverlab.uiruns.comparison_rows` (after a stop, rows never measured say ``not run``)."""
        c = self.comparison
        if c is None:
            return {"state": "idle", "rows": []}
        exp = c.experiment
        running = c.state == "running"
        current = self.backend.current.variant.name if running and self.backend and self.backend.current else None
        rows = comparison_rows(exp, c.run_dir, current)
        if not running:
            for row in rows:
                if row["status"] in ("waiting", "running"):
                    row["status"] = "not run"
        return {"state": c.state, "message": c.message, "current": current,
                "compare_id": c.run_dir.name if c.run_dir else None, "run_dir": str(c.run_dir) if c.run_dir else None,
                "workload": exp.workloads[0], "users": exp.load(exp.levels[0]).users, "seconds": exp.duration,
                "warmup_s": exp.warmup, "seed": exp.seed, "rows": rows,
                "has_report": bool(c.run_dir and (c.run_dir / "index.html").is_file())}

    def results_files(self) -> tuple[str, str, str]:
        """The last comparison's ``(run id, results.jsonl text, summary.md text)``, the run folder's own files.

        :raises UIRefused: (404) when no comparison has written its files yet.
        """
        c = self.comparison
        if c is None or c.run_dir is None or not (c.run_dir / "summary.md").is_file():
            raise UIRefused("no comparison has finished writing its report yet", status=404)
        return (c.run_dir.name, (c.run_dir / "results.jsonl").read_text(encoding="utf-8"),
                (c.run_dir / "summary.md").read_text(encoding="utf-8"))


class LiveCpu:
    """The loaded server's CPU and bottleneck while an ordinary test runs (:class:`serverlab.livemeter.LiveMeter`).

    A greenlet reads the server's ``/lab/cpu`` every :data:`serverlab.livemeter.LIVE_INTERVAL_S`
    seconds while Locust runs a test (not during a comparison: its cells carry their own figures).

    :param environment: Locust's environment (the master, or a local runner).
    :param collector: asks every Locust process for its CPU seconds.
    :param server: returns the name of the server the current test loads (or a URL).
    :param url_for: server name -> its URL; :param busy: whether a comparison runs.
    """

    def __init__(self, environment: Any, collector: Collector, server: Callable[[], str],
                 url_for: Callable[[str], str], busy: Callable[[], bool]) -> None:
        from serverlab.livemeter import LiveMeter

        affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        self.environment = environment
        self.collector = collector
        self.server = server
        self.busy = busy
        self._cpu: dict[str, tuple[float, float]] = {}
        self.meter = LiveMeter(lambda name: name if "://" in name else url_for(name), affinity)
        self._greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        """Start the sampling greenlet (once)."""
        if self._greenlet is None:
            self._greenlet = gevent.spawn(self._loop)

    def totals(self) -> Any:
        """Locust's counts now and its processes' CPU since the previous call (each process's own
        CPU seconds, a small message to every worker; ``None`` shares on the first call)."""
        from serverlab.livemeter import LoadTotals

        total = self.environment.runner.stats.total
        now = {t["process"]: (float(t["at"]), float(t["cpu_s"])) for t in self.collector.cpu_times()}
        shares = [(cpu - self._cpu[p][1]) / (at - self._cpu[p][0]) for p, (at, cpu) in now.items()
                  if p in self._cpu and at > self._cpu[p][0]]
        self._cpu = now
        return LoadTotals(int(total.num_requests), int(total.num_failures), max(shares, default=None),
                          sum(shares) if shares else None)

    def _loop(self) -> None:
        from serverlab.livemeter import LIVE_INTERVAL_S

        while True:
            server = self.server()
            if self.environment.runner.state in ("spawning", "running") and server and not self.busy():
                self.meter.update(server, self.totals())
            else:
                self.meter.reset()
                self._cpu = {}
            gevent.sleep(LIVE_INTERVAL_S)

    def status(self) -> dict[str, Any] | None:
        """The last interval's figures (:meth:`serverlab.livemeter.LiveMeter.figures`), or ``None``."""
        return self.meter.latest
