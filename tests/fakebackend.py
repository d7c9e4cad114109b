"""A fake backend for driving the real :class:`serverlab.runner.Runner` in milliseconds.

:class:`FakeBackend` satisfies :class:`serverlab.backends.Backend` without server
processes, Docker or Locust:

* ``start`` serves the lab's real Flask app (``labapp.create_app``) from a thread on a
  127.0.0.1 port, so the runner's verification and its ``/healthz`` hang check are the
  real ones, over real HTTP;
* ``run_locust`` does not send load: it writes the ``hdr-*.json`` files the locustfile
  would (one per Locust process: an HDR histogram of a fixed latency, counts, the
  measured window in Unix seconds, CPU seconds), which :func:`serverlab.loadgen.read_outcome`
  then reads as usual; the window lies just before the call, as long as planned;
* ``run_wrk`` prints a wrk summary line;
* ``probe_host_speed`` returns the next scripted probe time (:meth:`FakeBackend.script_host_speed`),
  else :data:`PROBE_MS`.

What one start of a variant does is scripted with :meth:`FakeBackend.script`, one
:class:`Fault` name per start (unscripted starts behave): the server can fail to start,
answer wrongly, die or hang during the load, leave requests unanswered, end the
measured window early, or have the whole "Locust" run fail. :class:`FakeCpuWatch`
plays a quiet or a busy machine for the interference checks.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Callable, Iterable, Sequence

from werkzeug.serving import make_server

import labapp
from labapp.variants import Variant
from serverlab.backends import Backend, BackendError, CommandResult, LocustPaths, RunningServer
from serverlab.interference import CpuTimes, Sample, interference_figures
from serverlab.histograms import new_histogram

#: The latency every fake request has (µs), and the throughput of a fake server (responses/s).
LATENCY_US = 2_000
RPS = 500
#: CPU seconds per second of the fake server (its sampler) and of each fake Locust process.
SERVER_CPU_RATE = 0.4
LOCUST_CPU_RATE = 0.3
#: Memory the fake server reports (bytes).
SERVER_MEMORY = 50 * 2**20
#: What an unscripted host-speed probe takes (ms).
PROBE_MS = 300.0


class Fault(str, Enum):
    """What one start of a fake server does (``OK`` unless scripted)."""

    OK = "ok"
    NO_START = "no-start"          # start() raises BackendError
    WRONG_ANSWER = "wrong-answer"  # every workload answers "Goodbye" (verification fails)
    DIE = "die"                    # the server exits during the load
    HANG = "hang"                  # the server stops answering mid-window and after the load
    UNANSWERED = "unanswered"      # 3 requests per process sent but never answered
    SHORT_WINDOW = "short-window"  # Locust's run ends at half the planned window (server fine)
    NO_RESULTS = "no-results"      # Locust exits with status 2 and writes nothing
    INTERRUPT = "interrupt"        # a SIGTERM arrives during the load (the run is stopped)


class FakeSampler:
    """A server's CPU and memory as a constant rate: :data:`SERVER_CPU_RATE` s/s, :data:`SERVER_MEMORY` bytes."""

    def __init__(self) -> None:
        self.stopped = False

    def cpu_between(self, start: float, end: float) -> float | None:
        """CPU seconds between two Unix times: the rate times the interval."""
        return max(0.0, end - start) * SERVER_CPU_RATE

    def peak_memory(self) -> int | None:
        """The constant memory figure (bytes)."""
        return SERVER_MEMORY

    def stop(self) -> None:
        """Mark the sampler stopped."""
        self.stopped = True


def _wrong_answers(app):
    """WSGI middleware: ``/healthz`` as is, every other path answers ``Goodbye`` (200, text/html)."""

    def wrapped(environ, start_response):
        if environ.get("PATH_INFO") == "/healthz":
            return app(environ, start_response)
        body = b"Goodbye"
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))])
        return [body]

    return wrapped


@dataclass
class FakeServer:
    """One started fake server: the in-process HTTP server, its fault, and what happened to it."""

    variant: Variant
    fault: Fault
    http: object
    thread: threading.Thread
    loaded: bool = False
    stopped: bool = False

    def shut(self) -> None:
        """Stop answering HTTP (idempotent)."""
        if not self.stopped:
            self.stopped = True
            self.http.shutdown()  # type: ignore[attr-defined]
            self.http.server_close()  # type: ignore[attr-defined]
            self.thread.join(timeout=5)


@dataclass
class FakeBackend:
    """A :class:`serverlab.backends.Backend` with scripted faults and a record of every call.

    :param budget: accepted for the same construction as the real backends; unused.
    :param prepare_error: when set, :meth:`prepare` raises :class:`BackendError` with it
        (Docker missing, the image not building).
    :param wrk_installed: ``False``: :meth:`run_wrk` answers as if wrk were missing (status 127).
    :param rates: per variant, the throughput (responses/s per Locust process) of its next
        "Locust" runs, one per run, then :data:`RPS`: repetitions that disagree, for adaptive repetitions.
    :param wrk_rates: per variant, the RPS of its next wrk runs, one per run, then :data:`RPS` × 2.
    :attr wrk_runs: ``(variant, argv)`` of every wrk run.
    :attr starts: variant names in the order they were started.
    :attr locust_runs: ``(variant, argv)`` of every "Locust" run.
    :attr prepared: the ``(variants, run_id)`` of every :meth:`prepare`.
    :attr probes: how many host-speed probes ran.
    """

    budget: object = None
    name: str = "fake"
    prepare_error: str | None = None
    wrk_installed: bool = True
    rates: dict[str, list[float]] = field(default_factory=dict)
    wrk_rates: dict[str, list[float]] = field(default_factory=dict)
    wrk_runs: list[tuple[str, list[str]]] = field(default_factory=list)
    starts: list[str] = field(default_factory=list)
    locust_runs: list[tuple[str, list[str]]] = field(default_factory=list)
    prepared: list[tuple[list[str] | None, str | None]] = field(default_factory=list)
    closed: int = 0
    probes: int = 0
    _script: dict[str, list[Fault]] = field(default_factory=dict)
    _host_speed: list[float] = field(default_factory=list)
    _running: dict[int, FakeServer] = field(default_factory=dict)
    _current: FakeServer | None = None
    _app: object = None

    def script(self, variant: str, faults: Iterable[Fault | str]) -> None:
        """Make the next starts of ``variant`` behave as ``faults`` (one per start), then as :attr:`Fault.OK`."""
        self._script.setdefault(variant, []).extend(Fault(f) for f in faults)

    def script_host_speed(self, milliseconds: Iterable[float]) -> None:
        """Make the next host-speed probes take these times (ms), then :data:`PROBE_MS`."""
        self._host_speed.extend(float(ms) for ms in milliseconds)

    def probe_host_speed(self, probes: int = 1) -> list[float]:
        """The next scripted probe times (ms), or :data:`PROBE_MS`; never beside a running fake server."""
        assert self._current is None or self._current.stopped, "a host-speed probe while the server runs"
        self.probes += probes
        return [self._host_speed.pop(0) if self._host_speed else PROBE_MS for _ in range(probes)]

    # -- the Backend interface ----------------------------------------------------

    def describe(self) -> dict[str, object]:
        """Facts for the results header."""
        return {"backend": self.name, "limits_enforced": False}

    def prepare(self, variants: Sequence[str] | None = None, progress: Callable[[str], None] = print,
                run_id: str | None = None) -> None:
        """Record the call; build the lab's Flask app once.

        :raises BackendError: with :attr:`prepare_error` when that is set.
        """
        self.prepared.append((list(variants) if variants is not None else None, run_id))
        if self.prepare_error:
            raise BackendError(self.prepare_error)
        if self._app is None:
            self._app = labapp.create_app({"TESTING": True})

    def start(self, variant: Variant) -> RunningServer:
        """Serve the lab's app (or a wrong one) on a free 127.0.0.1 port, per the variant's script.

        :raises BackendError: for a scripted :attr:`Fault.NO_START`.
        """
        self.starts.append(variant.name)
        queue = self._script.get(variant.name) or []
        fault = queue.pop(0) if queue else Fault.OK
        if fault is Fault.NO_START:
            raise BackendError(f"{variant.name}: the server exited while starting (scripted)")
        app = self._app or labapp.create_app({"TESTING": True})
        http = make_server("127.0.0.1", 0, _wrong_answers(app) if fault is Fault.WRONG_ANSWER else app, threaded=True)
        thread = threading.Thread(target=http.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        thread.start()
        fake = FakeServer(variant, fault, http, thread)
        self._running[id(fake)] = fake
        self._current = fake
        url = f"http://127.0.0.1:{http.server_port}"
        return RunningServer(variant, url, url, fake, sampler=FakeSampler())

    def exit_status(self, server: RunningServer) -> str | None:
        """Why a server scripted to die is gone (after its load), else ``None``."""
        fake: FakeServer = server.handle  # type: ignore[assignment]
        if fake.fault is Fault.DIE and fake.loaded:
            return "server process exited with status -9: (scripted)"
        return None

    def locust_paths(self, server: RunningServer, out_dir: Path) -> LocustPaths:
        """The paths as they are here (no container)."""
        return LocustPaths("locustfile.py", server.url_for_loadgen, str(out_dir))

    def run_locust(self, args: list[str], env: dict[str, str], out_dir: Path, timeout: float) -> CommandResult:
        """Write what the locustfile's processes would leave in ``out_dir`` for this argv; send nothing."""
        fake = self._current
        assert fake is not None, "run_locust before start"
        self.locust_runs.append((fake.variant.name, list(args)))
        fake.loaded = True
        if fake.fault is Fault.INTERRUPT:
            assert threading.current_thread() is threading.main_thread(), "the runner catches signals in the main thread only"
            os.kill(os.getpid(), signal.SIGTERM)  # the runner's handler raises RunStopped here
        if fake.fault is Fault.NO_RESULTS:
            return CommandResult(2, "locust: error: scripted failure")
        if fake.fault in (Fault.DIE, Fault.HANG):
            fake.shut()
        queue = self.rates.get(fake.variant.name) or []
        write_locust_files(Path(env["SERVERLAB_HDR_DIR"] if "SERVERLAB_HDR_DIR" in env else out_dir), args, fake.fault,
                           rate=queue.pop(0) if queue else RPS)
        return CommandResult(0, "fake locust: files written")

    def run_wrk(self, args: list[str], timeout: float) -> CommandResult:
        """A wrk summary (its ``N requests in`` and ``Requests/sec`` lines) at the variant's next
        :attr:`wrk_rates` figure (default :data:`RPS` × 2), or status 127 without wrk."""
        if not self.wrk_installed:
            return CommandResult(127, "wrk is not installed on this machine (apt-get install wrk)")
        variant = self._current.variant.name if self._current else "?"
        self.wrk_runs.append((variant, list(args)))
        queue = self.wrk_rates.get(variant) or []
        rate = queue.pop(0) if queue else RPS * 2
        seconds = float(_option(args, "-d", "3s").rstrip("s"))
        return CommandResult(0, f"Running {seconds:g}s test @ {args[-1]}\n  {int(rate * seconds)} requests in "
                                f"{seconds:.2f}s, 1.00MB read\nRequests/sec:   {rate:.2f}\n")

    def stop(self, server: RunningServer) -> None:
        """Stop serving and stop the sampler."""
        fake: FakeServer = server.handle  # type: ignore[assignment]
        fake.shut()
        self._running.pop(id(fake), None)
        if server.sampler:
            server.sampler.stop()

    def kill(self, server: RunningServer) -> None:
        """Stop serving at once."""
        server.handle.shut()  # type: ignore[attr-defined]

    def close(self) -> list[str]:
        """Stop every fake server still serving; their variant names."""
        self.closed += 1
        names = [fake.variant.name for fake in self._running.values() if not fake.stopped]
        for fake in self._running.values():
            fake.shut()
        self._running.clear()
        return names


def _option(args: list[str], name: str, default: str | None = None) -> str | None:
    return args[args.index(name) + 1] if name in args else default


def write_locust_files(out_dir: Path, args: list[str], fault: Fault = Fault.OK, rate: float = RPS) -> list[Path]:
    """Write one ``hdr-fake-<i>.json`` per Locust process of ``args`` (a :meth:`LoadPlan.locust_args` argv).

    Every request takes :data:`LATENCY_US`; throughput is ``rate`` per process (open
    mode: the target rate; requests mode: ``--max-requests`` in total). The measured
    window ends now and is ``--run-time`` minus ``--warmup-seconds`` long (seconds).

    :return: the files written.
    """
    import time

    processes = int(_option(args, "--processes", "1"))
    run_time = float(_option(args, "--run-time", "1s").rstrip("s"))
    warmup = float(_option(args, "--warmup-seconds", "0"))
    duration = run_time - warmup
    max_requests = _option(args, "--max-requests")
    open_rate = _option(args, "--open-rate")
    end = time.time()
    start = end - duration
    window = duration / 2 if fault in (Fault.HANG, Fault.SHORT_WINDOW) else duration
    if max_requests is not None:
        per_process = int(max_requests) // processes
    else:
        per_process = int((float(open_rate) / processes if open_rate is not None else rate) * window)
    paths = []
    for i in range(processes):
        hist = new_histogram()
        hist.record_value(LATENCY_US, per_process)
        seconds = max(1, int(window))
        dump = {
            "requests": per_process, "failures": 0, "sent": per_process,
            "unanswered": 3 if fault is Fault.UNANSWERED else 0, "late_sends": 0, "max_lag_ms": 0.5,
            "first_send_at": start, "last_response_at": start + window,
            "window_start_at": start, "window_end_at": start + (window if fault is Fault.SHORT_WINDOW else duration),
            "cpu_seconds": LOCUST_CPU_RATE * duration,
            "responses_per_second": [per_process // seconds] * seconds,
            "histogram": hist.encode().decode("ascii"),
        }
        path = out_dir / f"hdr-fake-{i}.json"
        path.write_text(json.dumps(dump))
        paths.append(path)
    return paths


class _FakeMonitor:
    """CPU times of a window: quiet (the lab alone) or busy (another program on every CPU)."""

    def __init__(self, busy: bool, cpus: list[int]) -> None:
        self.busy = busy
        self.cpus = cpus

    def __enter__(self) -> _FakeMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def between(self, start: float, end: float) -> tuple[Sample, Sample]:
        busy = (end - start) if self.busy else 0.0  # a busy machine: every CPU fully used
        before = Sample(start, {cpu: CpuTimes(0.0, 0.0) for cpu in self.cpus}, 0.0)
        after = Sample(end, {cpu: CpuTimes(busy, 0.0) for cpu in self.cpus}, 0.0)
        return before, after


class FakeCpuWatch:
    """A :class:`serverlab.cpuwatch.CpuWatch` playing a quiet machine, or a busy one for scripted cells.

    :param busy: one flag per monitored load, in order (``True``: another program used
        the lab's CPUs, so the cell is flagged for interference); quiet after the list.
    """

    def __init__(self, busy: Sequence[bool] = ()) -> None:
        self.busy = list(busy)
        self.probes = 0
        self.cpus = list(range(os.cpu_count() or 1))

    def probe(self, server_cpus: Iterable[int], loadgen_cpus: Iterable[int]) -> dict[str, object]:
        """A quiet probe, at once."""
        self.probes += 1
        before, after = _FakeMonitor(False, self.cpus).between(0.0, 1.0)
        figures = interference_figures(before, after, server_cpus, loadgen_cpus, 0.0, 0.0) or {}
        return {**figures, "measured": True, "seconds": 0.0, "quiet": True, "busiest": []}

    def monitor(self) -> _FakeMonitor:
        """The next scripted window (quiet once the script is used up)."""
        return _FakeMonitor(self.busy.pop(0) if self.busy else False, self.cpus)


def _check_protocols() -> None:
    """Static check that the fakes fit the interfaces (runs at import)."""
    from serverlab.cpuwatch import CpuWatch

    backend: Backend = FakeBackend()
    watch: CpuWatch = FakeCpuWatch()
    assert isinstance(backend, Backend) and watch is not None


_check_protocols()
