"""What every backend offers the runner, and the pieces both backends share.

* :class:`Backend` — the interface (a :class:`typing.Protocol`) the runner uses;
  :class:`serverlab.backends.local.LocalBackend` and
  :class:`serverlab.backends.docker.DockerBackend` satisfy it, and so does the
  fake backend of the tests.
* :class:`RunningServer` — a started variant, with its own CPU/memory sampler.
* :class:`Sampler` — samples a server's CPU seconds and memory in a thread.
* :func:`run_command` — runs a command in its own process group, killed whole on a
  timeout or a signal.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol, Sequence, runtime_checkable

import psutil

from labapp.variants import Variant
from serverlab import LabError

#: The repository root (servers/, locustfiles/, docker-compose.yml).
ROOT = Path(__file__).resolve().parents[2]
#: The lab's locustfile on this machine.
LOCUSTFILE = ROOT / "locustfiles" / "locustfile.py"

class BackendError(LabError):
    """A backend could not start, reach or stop something it needs."""


class Sampler:
    """Samples a server's cumulative CPU seconds and memory every ``interval`` seconds.

    :param read: returns ``(cpu_seconds, memory_bytes)`` or raises ``OSError`` when gone.
    """

    def __init__(self, read: Callable[[], tuple[float, int]], interval: float = 0.2) -> None:
        self._read = read
        self._interval = interval
        self.samples: list[tuple[float, float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                cpu, memory = self._read()
            except (OSError, psutil.Error, ValueError):
                pass
            else:
                self.samples.append((time.time(), cpu, memory))
            self._stop.wait(self._interval)

    def stop(self) -> None:
        """Stop sampling (takes one last sample first)."""
        try:
            cpu, memory = self._read()
            self.samples.append((time.time(), cpu, memory))
        except (OSError, psutil.Error, ValueError):
            pass
        self._stop.set()
        self._thread.join(timeout=2)

    def cpu_between(self, start: float, end: float) -> float | None:
        """CPU seconds used between two Unix times, linearly interpolated between samples."""
        if len(self.samples) < 2:
            return None

        def at(t: float) -> float:
            samples = self.samples
            if t <= samples[0][0]:
                return samples[0][1]
            for (t0, c0, _), (t1, c1, _) in zip(samples, samples[1:]):
                if t0 <= t <= t1:
                    return c0 + (c1 - c0) * ((t - t0) / (t1 - t0) if t1 > t0 else 0.0)
            return samples[-1][1]

        return max(0.0, at(end) - at(start))

    def peak_memory(self) -> int | None:
        """The highest memory sample (bytes)."""
        return max((m for _, _, m in self.samples), default=None)


class ServerSampler(Protocol):
    """What the runner reads about a running server's resources (a :class:`Sampler`, or a test's fake)."""

    def cpu_between(self, start: float, end: float) -> float | None:
        """CPU seconds the server used between two Unix times; ``None`` if not measured."""

    def peak_memory(self) -> int | None:
        """The highest memory use seen (bytes); ``None`` if not measured."""

    def stop(self) -> None:
        """Stop sampling (the figures stay readable)."""


@dataclass
class RunningServer:
    """A started server variant, with the sampler of its CPU seconds and memory.

    :param variant: the effective variant (overrides applied).
    :param url_for_loadgen: its base URL as the load generator sees it.
    :param url_for_host: its base URL from this machine (127.0.0.1), for verification;
        ``""`` when it is not reachable from here (the runner then skips its hang check).
    :param handle: backend-specific (container id or ``subprocess.Popen``).
    :param sampler: samples the server's CPU seconds and memory from its start until
        the backend stops it; ``None`` where they cannot be read.
    """

    variant: Variant
    url_for_loadgen: str
    url_for_host: str
    handle: object
    sampler: ServerSampler | None = field(default=None, repr=False)


@dataclass(frozen=True)
class LocustPaths:
    """Where Locust finds its inputs and puts its outputs, as the load generator sees them.

    :param locustfile: path of the lab's locustfile.
    :param host: the server's base URL (``--host``).
    :param out_dir: folder for Locust's CSV/HTML and the ``hdr-*.json`` files.
    """

    locustfile: str
    host: str
    out_dir: str


@dataclass
class CommandResult:
    """A finished load-generator command: exit status and combined output."""

    returncode: int
    output: str


@runtime_checkable
class Backend(Protocol):
    """Where servers and load generators run; what the runner needs of a backend.

    A backend is built with the experiment's :class:`serverlab.budget.Budget`
    (see :func:`serverlab.backends.make_backend`). The runner calls :meth:`prepare`
    once per run, then per cell :meth:`start`, :meth:`run_locust` (and :meth:`run_wrk`
    to calibrate), :meth:`exit_status` and :meth:`stop`, and :meth:`close` at the end,
    also when a signal stops the run.

    :attr name: ``"docker"``, ``"local"`` (or a test's name), recorded in each cell's config.
    """

    name: str

    def describe(self) -> dict[str, object]:
        """Facts for the results header (``"backend"``, ``"limits_enforced"`` ...)."""

    def prepare(self, variants: Sequence[str] | None = None, progress: Callable[[str], None] = print,
                run_id: str | None = None) -> None:
        """Check what the backend needs and build what it runs, once per run.

        :param variants: the variant names the run will start (``None``: every declared one).
        :param progress: where to say what takes long (an image build).
        :param run_id: the run this backend serves (names what it creates, so that two runs
            never share or remove each other's servers); ``None`` keeps its own name.
        :raises BackendError: naming what is missing and how to get it.
        """

    def start(self, variant: Variant) -> RunningServer:
        """Start ``variant`` under the budget and wait until it answers ``/healthz``.

        :raises BackendError: if it exits or does not become healthy in time.
        """

    def exit_status(self, server: RunningServer) -> str | None:
        """``None`` while ``server`` runs, else why it is gone (one line)."""

    def locust_paths(self, server: RunningServer, out_dir: Path) -> LocustPaths:
        """The locustfile, ``server``'s URL and ``out_dir`` as the load generator sees them."""

    def run_locust(self, args: list[str], env: dict[str, str], out_dir: Path, timeout: float) -> CommandResult:
        """Run Locust (``args`` from :meth:`serverlab.loadgen.LoadPlan.locust_args`) on the load-generator CPUs.

        :param env: extra environment variables for Locust; :param out_dir: this machine's
            folder behind :attr:`LocustPaths.out_dir`; :param timeout: seconds before it is killed.
        :return: its exit status and output (status 124 on the timeout).
        """

    def run_wrk(self, args: list[str], timeout: float) -> CommandResult:
        """Run wrk (``args`` from :func:`serverlab.loadgen.wrk_args`) on the load-generator CPUs; 127 if absent."""

    def stop(self, server: RunningServer) -> None:
        """Stop ``server`` and its sampler (whatever state it is in)."""

    def kill(self, server: RunningServer) -> None:
        """Kill ``server`` abruptly (for failure tests)."""

    def close(self) -> list[str]:
        """Stop and remove everything this backend started that is still there.

        :return: the names of what it had to stop (empty after a clean run).
        """


def wait_healthy(url: str, timeout: float, alive: Callable[[], bool]) -> None:
    """Poll ``url + "/healthz"`` until it answers 200.

    :raises BackendError: if ``alive()`` turns false or ``timeout`` seconds pass.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise BackendError("the server exited while starting")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise BackendError(f"the server did not answer {url}/healthz within {timeout:.0f} s")


#: ANSI escape sequences (colours, cursor moves) as docker and compose print them.
_ANSI = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])")


def strip_ansi(text: str) -> str:
    """``text`` without ANSI escape sequences (colour codes a tool printed)."""
    return _ANSI.sub("", text)


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL ``proc``'s whole process group (it leads one) and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def run_command(argv: list[str], timeout: float, env: dict[str, str] | None = None, cwd: Path | None = None) -> CommandResult:
    """Run ``argv`` in a process group of its own and return its exit status and output (ANSI stripped).

    On a timeout, or any exception here (a signal stopping the run), the whole group is
    killed first: no Locust process (or ``--processes`` child) outlives its command.

    :param timeout: seconds before the group is killed (the result then has status 124).
    :param env: the whole environment (``None``: this process's); :param cwd: its folder.
    :return: status 127 with a message when ``argv[0]`` is not installed; never raises for
        the command's own failure.
    :raises KeyboardInterrupt: (and any other exception while waiting) after killing the group.
    """
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                                env=env, cwd=cwd, stdin=subprocess.DEVNULL, start_new_session=True)
    except FileNotFoundError as err:
        return CommandResult(127, f"{argv[0]}: not found ({err})")
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, _ = proc.communicate()
        return CommandResult(124, strip_ansi(out or "") + f"\n[serverlab] timed out after {timeout:.0f} s")
    except BaseException:
        _kill_group(proc)
        raise
    return CommandResult(proc.returncode, strip_ansi(out))

