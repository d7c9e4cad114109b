"""The interactive lab as a backend: the web UI's Compare runs through the runner itself.

``docker compose up`` already runs every server variant, and the Locust master has
workers connected. :class:`LabBackend` lets :class:`serverlab.runner.Runner` measure
those servers exactly as ``make report`` measures its own: the same plan and shuffled
order, verification before load, the same warm-up, :func:`serverlab.loadgen.read_outcome`
over the Locust processes' ``hdr-*.json``, the hang check, the findings, interference
and bottleneck rules, and the same ``results.jsonl`` / report files. What differs is only
where things come from:

* a server is not restarted (the lab keeps it running; the master has no Docker
  socket): :meth:`LabBackend.start` checks it answers;
* the load runs on the master's connected workers, through a :class:`LoadDriver`
  (the web UI's, in ``locustfiles/``); it writes each Locust process's recorder as
  ``hdr-<process>.json``, the files a headless Locust leaves;
* the server's CPU and the per-CPU counters come from the server's own
  ``GET /lab/cpu`` (:mod:`serverlab.selfreport`), read twice per cell: at the end of the
  warm-up and at the end of the measured window (:class:`LabWatch` hands the same two
  readings to the interference rules).

No Locust import here: the driver is passed in, so the fast tests drive this backend
with a fake one.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Mapping, Protocol, Sequence

from labapp.variants import Variant
from serverlab.backends.base import BackendError, CommandResult, LocustPaths, RunningServer, wait_healthy
from serverlab.hdrdump import DumpError, ProcessDump
from serverlab.interference import CpuMonitor, interference_figures
from serverlab.load import LOAD_ENV, Load
from serverlab.selfreport import SelfReport, SelfReportError, SelfReportSampler, read_self_report
from serverlab.terms import MAX_REQUESTS_OPTION, OPEN_RATE_OPTION, WARMUP_OPTION, WORKLOADS, Mode
from serverlab.workloadspec import WorkloadSpec

#: Seconds between the quietness probe's two readings of a server's ``/lab/cpu``.
PROBE_SECONDS = 2.0


@dataclass(frozen=True)
class LabLoad:
    """One cell's load, as the runner's Locust command line asks for it (closed model).

    :param workload: the workload (its user class and parameter options).
    :param params: its request parameters, e.g. ``{"n": 1000}``.
    :param load: the runner's :class:`~serverlab.load.Load` (closed model: its users are the level).
    :param host: the server's base URL.
    :param warmup_s: discarded seconds; :param duration_s: measured seconds after them.
    """

    workload: WorkloadSpec
    params: dict[str, int]
    load: Load
    host: str
    warmup_s: float
    duration_s: float

    @property
    def users(self) -> int:
        """Concurrent users across the lab's workers (the :attr:`load`'s)."""
        return self.load.users


class LoadDriver(Protocol):
    """Runs a :class:`LabLoad` on the lab's Locust processes (the web UI's master and its workers)."""

    def run(self, load: LabLoad, window_start: Callable[[], None], window_end: Callable[[], None]) -> list[ProcessDump]:
        """Start the load; after the warm-up call ``window_start()`` and then reset every process's
        recorder; after the measured seconds take every process's recorder (as ``Recorder.snapshot``
        gives it, the ``hdr-*.json`` content), call ``window_end()``, stop the load.

        :return: one :class:`~serverlab.hdrdump.ProcessDump` per Locust process (``process`` names it).
        :raises BackendError: when no process answers or the load cannot start.
        """

    def stop(self) -> None:
        """Stop any load it started (idempotent)."""


def parse_locust_args(args: Sequence[str], env: Mapping[str, str] | None = None) -> LabLoad:
    """The :class:`LabLoad` of a command line and environment built by
    :meth:`serverlab.loadgen.LoadPlan.locust_args` and :meth:`~serverlab.loadgen.LoadPlan.environment`.

    :param env: the Locust environment; its :data:`~serverlab.load.LOAD_ENV` is the load (without
        it, a closed load of ``-u`` users).
    :raises BackendError: for what the lab's workers cannot run from the UI (the open
        and requests models, ``--processes`` other than the workers'), or an unknown user class.
    """
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("-u", type=int, required=True)
    parser.add_argument("--run-time", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument(WARMUP_OPTION, dest="warmup", type=float, default=0.0)
    parser.add_argument(MAX_REQUESTS_OPTION, dest="max_requests", type=int, default=0)
    parser.add_argument(OPEN_RATE_OPTION, dest="open_rate", type=float, default=0.0)
    options: dict[str, tuple[WorkloadSpec, str]] = {}
    for spec in WORKLOADS.values():
        for name, option in spec.locust_options.items():
            dest = f"{spec.name}__{name}"
            parser.add_argument(option, dest=dest, type=int)
            options[dest] = (spec, name)
    known, rest = parser.parse_known_args(list(args))
    try:
        load = Load.from_json(env[LOAD_ENV]) if env and env.get(LOAD_ENV) else Load.of(Mode.CLOSED, known.u)
    except ValueError as err:
        raise BackendError(str(err)) from None
    if known.max_requests or known.open_rate or load.mode != Mode.CLOSED:
        raise BackendError("the lab's workers run the closed model only (no --max-requests, no --open-rate)")
    by_class = {spec.user_class: spec for spec in WORKLOADS.values()}
    classes = [word for word in rest if word in by_class]
    if len(classes) != 1:
        raise BackendError(f"expected one user class of {sorted(by_class)} in the command line, got {classes}")
    spec = by_class[classes[0]]
    params = dict(spec.params(None))
    for dest, (owner, name) in options.items():
        value = getattr(known, dest)
        if owner is spec and value is not None:
            params[name] = value
    run_time = float(str(known.run_time).rstrip("s"))
    return LabLoad(spec, params, load, known.host, known.warmup, max(0.0, run_time - known.warmup))


class LabMonitor(CpuMonitor):
    """The per-CPU counters of one cell's window, from the server's two self-reports.

    :meth:`between` is :class:`serverlab.interference.CpuMonitor`'s own (interpolated);
    the samples are the server's ``/lab/cpu`` readings :class:`LabBackend` took.
    """

    def __init__(self, backend: LabBackend) -> None:
        super().__init__()
        self.backend = backend

    def __enter__(self) -> LabMonitor:
        self.backend.window_reports = []
        return self

    def __exit__(self, *exc: object) -> None:
        self.samples = [report.sample() for report in self.backend.window_reports if report.cpus]


class LabWatch:
    """The :class:`serverlab.cpuwatch.CpuWatch` of the lab: both looks come from a server's ``/lab/cpu``.

    :param backend: the lab backend whose readings the monitors use.
    :param probe_seconds: seconds between the quietness probe's two readings.
    """

    def __init__(self, backend: LabBackend, probe_seconds: float = PROBE_SECONDS) -> None:
        self.backend = backend
        self.probe_seconds = probe_seconds

    def probe(self, server_cpus: Iterable[int], loadgen_cpus: Iterable[int]) -> dict[str, object]:
        """Two readings of the first server's counters ``probe_seconds`` apart, before any load.

        :return: as :func:`serverlab.interference.quietness_probe` (no ``busiest`` programs: the
            master cannot see the host's processes); ``{"measured": False, "reason"}`` when unreadable.
        """
        url = self.backend.probe_url
        try:
            before = read_self_report(url)
            time.sleep(self.probe_seconds)
            after = read_self_report(url)
        except SelfReportError as err:
            return {"measured": False, "reason": str(err)}
        figures = interference_figures(before.sample(), after.sample(), server_cpus, loadgen_cpus, 0.0, 0.0)
        if figures is None:
            return {"measured": False, "reason": f"{url} reported no per-CPU counters"}
        return {**figures, "measured": True, "seconds": self.probe_seconds, "quiet": not figures["flagged"], "busiest": []}

    def monitor(self) -> LabMonitor:
        """A monitor fed by the next cell's two self-reports."""
        return LabMonitor(self.backend)


class LabBackend:
    """The running ``docker compose up`` lab, seen from its Locust master (see the module docstring).

    :param driver: runs the load on the master's workers.
    :param url_for: server name -> base URL from the master (``http://<name>:8000``).
    :param facts: extra facts for the results header (image, Locust processes ...).
    """

    name = "lab"

    def __init__(self, driver: LoadDriver, url_for: Callable[[str], str], facts: dict[str, object] | None = None) -> None:
        self.driver = driver
        self.url_for = url_for
        self.facts = dict(facts or {})
        self.probe_url = ""
        self.window_reports: list[SelfReport] = []
        self.current: RunningServer | None = None

    def describe(self) -> dict[str, object]:
        """Facts for the results header: ``backend "lab"``, limits enforced (by compose), the given facts."""
        return {"backend": self.name, "limits_enforced": True,
                "cpu_source": "each server's own GET /lab/cpu (its cgroup and /proc/stat)", **self.facts}

    def prepare(self, variants: Sequence[str] | None = None, progress: Callable[[str], None] = print,
                run_id: str | None = None) -> None:
        """Check the first server reports its CPU (the quietness probe reads it).

        :raises BackendError: naming the server when it does not answer ``/lab/cpu``.
        """
        names = list(variants or [])
        if not names:
            raise BackendError("no server to measure")
        self.probe_url = self.url_for(names[0])
        try:
            read_self_report(self.probe_url)
        except SelfReportError as err:
            raise BackendError(str(err)) from None

    def start(self, variant: Variant) -> RunningServer:
        """The variant's running server (not restarted), once it answers ``/healthz``.

        :raises BackendError: if it does not answer within 30 s.
        """
        url = self.url_for(variant.name)
        wait_healthy(url, 30, lambda: True)
        self.current = RunningServer(variant, url, url, variant.name, sampler=SelfReportSampler())
        return self.current

    def exit_status(self, server: RunningServer) -> str | None:
        """Always ``None``: the lab restarts a crashed server itself; the runner's hang check still applies."""
        return None

    def locust_paths(self, server: RunningServer, out_dir: Path) -> LocustPaths:
        """The server's URL and ``out_dir`` itself (the master writes the processes' files there)."""
        return LocustPaths("", server.url_for_loadgen, str(out_dir))

    def _report(self) -> None:
        server = self.current
        if server is None:
            return
        report = read_self_report(server.url_for_host)
        self.window_reports.append(report)
        if isinstance(server.sampler, SelfReportSampler):
            server.sampler.add(report)

    def run_locust(self, args: list[str], env: dict[str, str], out_dir: Path, timeout: float) -> CommandResult:
        """Run the load the runner asks for on the lab's workers; write each process's ``hdr-*.json``.

        :return: status 0 and a log naming the processes, or 1 and why nothing was measured.
        """
        try:
            load = parse_locust_args(args, env)
            dumps = self.driver.run(load, self._report, self._report)
        except (BackendError, SelfReportError, DumpError) as err:
            return CommandResult(1, f"[serverlab] {err}")
        out_dir.mkdir(parents=True, exist_ok=True)
        names = []
        for index, dump in enumerate(dumps):
            dump = dump if dump.process else replace(dump, process=str(index))
            dump.write(out_dir)
            names.append(dump.process)
        return CommandResult(0, f"[serverlab] {load.users} users of {load.workload.user_class} on {load.host}: "
                                f"{load.warmup_s:g} s warm-up, {load.duration_s:g} s measured, "
                                f"Locust processes {', '.join(names) or 'none'}")

    def run_wrk(self, args: list[str], timeout: float) -> CommandResult:
        """Not available in the lab (status 127): the UI does not calibrate."""
        return CommandResult(127, "wrk: not run from the web UI (make report EXPERIMENT=calibration does)")

    def stop(self, server: RunningServer) -> None:
        """Leave the server running (the lab owns it)."""
        self.current = None

    def kill(self, server: RunningServer) -> None:
        """Not possible without the Docker socket.

        :raises BackendError: always.
        """
        raise BackendError("the web UI cannot kill a lab server (it has no Docker socket)")

    def close(self) -> list[str]:
        """Stop the load if any is running; the servers stay up.

        :return: always empty (nothing of the lab's is removed).
        """
        self.driver.stop()
        return []

