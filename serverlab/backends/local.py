"""The local backend: variants as processes on 127.0.0.1, no Docker needed.

``python -m labapp.serve`` (or the variant's own command) on a free 127.0.0.1 port,
pinned with ``taskset`` to the budget's cpusets when available; CPU seconds and memory
from the process tree (psutil). No CPU quota or memory limit can be enforced without
cgroups; the results header says so.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import psutil

from labapp.appshim import run_setup, wsgi_target
from labapp.variants import Variant
from serverlab.appspec import AppSpec
from serverlab.backends.base import (
    LOCUSTFILE,
    ROOT,
    BackendError,
    CommandResult,
    LocustPaths,
    RunningServer,
    Sampler,
    run_command,
    wait_healthy,
)
from serverlab.budget import Budget


class LocalBackend:
    """Runs variants as local processes on 127.0.0.1 (no Docker needed).

    :param budget: cpusets for ``taskset`` pinning (no CPU quota or memory limit
        can be enforced without cgroups; both are recorded as not enforced).
    :param python: interpreter whose environment has the servers and Locust.
    :param app: the user's app every variant serves, from its own folder (its
        dependencies must be installed in ``python``'s environment; setup commands run
        there, and its ``writable`` paths are the folder's own); ``None``: the demo app.
    """

    name = "local"

    def __init__(self, budget: Budget, python: str | None = None, app: AppSpec | None = None) -> None:
        self.budget = budget
        self.app = app
        self.python = python or sys.executable
        self.taskset = shutil.which("taskset")
        self._running: list[RunningServer] = []

    def describe(self) -> dict[str, object]:
        """Facts for the results header."""
        return {"backend": "local", "pinning": "taskset" if self.taskset else "none",
                "limits_enforced": False, "python": self.python}

    def prepare(self, variants: Sequence[str] | None = None, progress: Callable[[str], None] = print,
                run_id: str | None = None) -> None:
        """Nothing to build; checks the locustfile exists and the user's app (if any) imports.

        :raises BackendError: if the locustfile is missing or the app does not import (its error's last line).
        """
        if not LOCUSTFILE.is_file():
            raise BackendError(f"{LOCUSTFILE}: missing")
        if self.app is not None:
            check = run_command([self.python, "-m", "labapp.appshim", "--check"], 120, env=self._env())
            if check.returncode != 0:
                lines = [line for line in check.output.splitlines() if line.startswith("error: ")]
                raise BackendError(f"the app {self.app.wsgi!r} from {self.app.path} does not load: "
                                   f"{lines[-1][len('error: '):] if lines else check.output.strip()[-300:]}")

    def _env(self, variant: Variant | None = None) -> dict[str, str]:
        """The server's environment: this one's, the variant's facts, and the user's app's."""
        env = {**os.environ, **(variant.environment() if variant else {}), "PYTHONPATH": str(ROOT / "app")}
        if self.app is not None:
            from labapp.appshim import APP_DIR_ENV

            env.update({**self.app.environment(), APP_DIR_ENV: self.app.path,
                        "PYTHONPATH": os.pathsep.join([str(ROOT / "app"), str(ROOT), self.app.path])})
        return env

    def _pin(self, cpuset: str, argv: list[str]) -> list[str]:
        return [self.taskset, "-c", cpuset, *argv] if self.taskset else argv

    def start(self, variant: Variant, timeout: float = 60.0) -> RunningServer:
        """Run the user's app's setup commands (if any), start ``variant`` on a free port and
        wait until it is healthy.

        :raises BackendError: if a setup command fails (with its output), or the server exits
            or does not answer within ``timeout`` seconds.
        """
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if variant.proxy == "nginx":
            from labapp.proxy import ProxyError, find_nginx

            try:
                find_nginx()
            except ProxyError as err:
                raise BackendError(f"{variant.name}: {err}") from None
        env = self._env(variant)
        if self.app is not None:  # the container's launcher (labapp.serve) runs them there
            failed = run_setup(env)
            if failed:
                raise BackendError(f"{variant.name}: {failed}")
        argv = ["127.0.0.1" if arg == "0.0.0.0" else arg.replace("0.0.0.0:", "127.0.0.1:")
                for arg in variant.argv(port=port, python=self.python, app=wsgi_target(env))]
        if variant.server == "werkzeug" or variant.proxy:
            argv += ["--host", "127.0.0.1"]
        log = tempfile.TemporaryFile()
        proc = subprocess.Popen(self._pin(self.budget.server_cpuset, argv), env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        proc.log = log  # type: ignore[attr-defined]
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(url, timeout, lambda: proc.poll() is None)
        except BackendError as err:
            self.stop(RunningServer(variant, url, url, proc))
            raise BackendError(f"{variant.name}: {err}: {self._log_tail(proc)}") from None
        tree = psutil.Process(proc.pid)

        def read() -> tuple[float, int]:
            procs = [tree, *tree.children(recursive=True)]
            cpu = memory = 0
            for p in procs:
                try:
                    times = p.cpu_times()
                    cpu += times.user + times.system
                    memory += p.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
            return float(cpu), int(memory)

        server = RunningServer(variant, url, url, proc, sampler=Sampler(read))
        self._running.append(server)
        return server

    @staticmethod
    def _log_tail(proc: subprocess.Popen) -> str:
        log = getattr(proc, "log", None)
        if log is None:
            return ""
        log.seek(0)
        return " | ".join(log.read().decode(errors="replace").strip().splitlines()[-3:])

    def exit_status(self, server: RunningServer) -> str | None:
        """``None`` while the server runs, else why it is gone."""
        proc: subprocess.Popen = server.handle  # type: ignore[assignment]
        code = proc.poll()
        return None if code is None else f"server process exited with status {code}: {self._log_tail(proc)}"

    def run_locust(self, args: list[str], env: dict[str, str], out_dir: Path, timeout: float) -> CommandResult:
        """Run Locust (``args`` as built by :class:`serverlab.loadgen.LoadPlan`) on the load-generator CPUs."""
        locust = str(Path(self.python).parent / "locust")
        return run_command(self._pin(self.budget.loadgen_cpuset, [locust, *args[1:]]), timeout,
                    env={**os.environ, **env}, cwd=out_dir)

    def locust_paths(self, server: RunningServer, out_dir: Path) -> LocustPaths:
        """The locustfile, host URL and output folder as Locust sees them (this machine's)."""
        return LocustPaths(str(LOCUSTFILE), server.url_for_loadgen, str(out_dir))

    def run_wrk(self, args: list[str], timeout: float) -> CommandResult:
        """Run wrk on the load-generator CPUs."""
        if not shutil.which("wrk"):
            return CommandResult(127, "wrk is not installed on this machine (apt-get install wrk)")
        return run_command(self._pin(self.budget.loadgen_cpuset, args), timeout)

    def probe_host_speed(self, probes: int = 1) -> list[float]:
        """Time :func:`serverlab.hostspeed.probe` in a process of its own pinned to the server cpuset
        (no CPU quota here, as for the servers).

        :param probes: how many, back to back in one process.
        :return: each probe's total milliseconds.
        :raises BackendError: if the probe's output cannot be read.
        """
        from serverlab.hostspeed import HostSpeedError, parse_probes

        argv = [self.python, "-m", "serverlab.hostspeed", "--probes", str(probes)]
        done = run_command(self._pin(self.budget.server_cpuset, argv), 60 + 10 * probes,
                           env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
        try:
            return parse_probes(done.output)
        except HostSpeedError as err:
            raise BackendError(f"host-speed probe (exit status {done.returncode}): {err}") from None

    def stop(self, server: RunningServer) -> None:
        """SIGTERM the server's process group (and SIGCONT it, should it be stopped); SIGKILL after 10 s."""
        if server.sampler:
            server.sampler.stop()
        proc: subprocess.Popen = server.handle  # type: ignore[assignment]
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                os.killpg(proc.pid, signal.SIGCONT)  # a stopped (SIGSTOP) group would never see the SIGTERM
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
            except ProcessLookupError:
                pass

    def kill(self, server: RunningServer) -> None:
        """Kill the server abruptly (for failure tests)."""
        os.killpg(server.handle.pid, 9)  # type: ignore[attr-defined]

    def close(self) -> list[str]:
        """Stop every server this backend started that still runs (a run stopped mid-cell).

        :return: the names of the variants it had to stop.
        """
        stopped = []
        for server in self._running:
            if server.handle.poll() is None:  # type: ignore[attr-defined]
                self.stop(server)
                stopped.append(server.variant.name)
        self._running.clear()
        return stopped

