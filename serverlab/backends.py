"""Where servers and load generators run: Docker containers or local processes.

Both backends read the same variant declarations (``servers/*.toml``) and offer
the same operations to the runner: start a variant under a CPU/memory budget,
sample its CPU and memory, run Locust or wrk against it from other CPUs, notice
if it died, and stop it.

* :class:`DockerBackend` — the compose file's services, one project per run, the
  server's cgroup read for CPU seconds and peak memory (cgroup v1 or v2).
* :class:`LocalBackend` — ``python -m labapp.serve`` on a 127.0.0.1 port, pinned
  with ``taskset`` when available; CPU and memory from the process tree (psutil).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import psutil

from labapp.variants import Variant
from serverlab import LabError
from serverlab.experiment import Budget

ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = ROOT / "locustfiles" / "locustfile.py"


#: Prints the versions of the packages that matter, as a JSON object (run inside the image).
_VERSIONS_PROBE = (
    "import json, platform; from labapp import package_versions; "
    "print(json.dumps({'python': platform.python_version(), 'packages': package_versions()}))"
)


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


@dataclass
class RunningServer:
    """A started server variant.

    :param variant: the effective variant (overrides applied).
    :param url_for_loadgen: its base URL as the load generator sees it.
    :param url_for_host: its base URL from this machine (127.0.0.1), for verification.
    :param handle: backend-specific (container id or ``subprocess.Popen``).
    """

    variant: Variant
    url_for_loadgen: str
    url_for_host: str
    handle: object


@dataclass
class CommandResult:
    """A finished load-generator command: exit status and combined output."""

    returncode: int
    output: str


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


def _run(argv: list[str], timeout: float, env: dict[str, str] | None = None, cwd: Path | None = None) -> CommandResult:
    """Run ``argv`` in a process group of its own and return its exit status and output (ANSI stripped).

    On a timeout, or any exception here (a signal stopping the run), the whole group is
    killed first: no Locust process (or ``--processes`` child) outlives its command.
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


class LocalBackend:
    """Runs variants as local processes on 127.0.0.1 (no Docker needed).

    :param budget: cpusets for ``taskset`` pinning (no CPU quota or memory limit
        can be enforced without cgroups; both are recorded as not enforced).
    :param python: interpreter whose environment has the servers and Locust.
    """

    name = "local"

    def __init__(self, budget: Budget, python: str | None = None) -> None:
        self.budget = budget
        self.python = python or sys.executable
        self.taskset = shutil.which("taskset")
        self._sampler: Sampler | None = None
        self._running: list[RunningServer] = []

    def describe(self) -> dict[str, object]:
        """Facts for the results header."""
        return {"backend": "local", "pinning": "taskset" if self.taskset else "none",
                "limits_enforced": False, "python": self.python}

    def prepare(self) -> None:
        """Nothing to build; checks the locustfile exists."""
        if not LOCUSTFILE.is_file():
            raise BackendError(f"{LOCUSTFILE}: missing")

    def _pin(self, cpuset: str, argv: list[str]) -> list[str]:
        return [self.taskset, "-c", cpuset, *argv] if self.taskset else argv

    def start(self, variant: Variant, timeout: float = 60.0) -> RunningServer:
        """Start ``variant`` on a free port and wait until it is healthy.

        :raises BackendError: if it exits or does not answer within ``timeout`` seconds.
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
        env = {**os.environ, **variant.environment(), "PYTHONPATH": str(ROOT / "app")}
        argv = ["127.0.0.1" if arg == "0.0.0.0" else arg.replace("0.0.0.0:", "127.0.0.1:")
                for arg in variant.argv(port=port, python=self.python)]
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

        self._sampler = Sampler(read)
        server = RunningServer(variant, url, url, proc)
        self._running.append(server)
        return server

    @staticmethod
    def _log_tail(proc: subprocess.Popen) -> str:
        log = getattr(proc, "log", None)
        if log is None:
            return ""
        log.seek(0)
        return " | ".join(log.read().decode(errors="replace").strip().splitlines()[-3:])

    def sampler(self) -> Sampler | None:
        """The running server's CPU/memory sampler."""
        return self._sampler

    def exit_status(self, server: RunningServer) -> str | None:
        """``None`` while the server runs, else why it is gone."""
        proc: subprocess.Popen = server.handle  # type: ignore[assignment]
        code = proc.poll()
        return None if code is None else f"server process exited with status {code}: {self._log_tail(proc)}"

    def run_locust(self, args: list[str], env: dict[str, str], out_dir: Path, timeout: float) -> CommandResult:
        """Run Locust (``args`` as built by :class:`serverlab.loadgen.LoadPlan`) on the load-generator CPUs."""
        locust = str(Path(self.python).parent / "locust")
        return _run(self._pin(self.budget.loadgen_cpuset, [locust, *args[1:]]), timeout,
                    env={**os.environ, **env}, cwd=out_dir)

    def locust_paths(self, server: RunningServer, out_dir: Path) -> tuple[str, str, str]:
        """(locustfile, host URL, output folder) as Locust sees them."""
        return str(LOCUSTFILE), server.url_for_loadgen, str(out_dir)

    def run_wrk(self, args: list[str], timeout: float) -> CommandResult:
        """Run wrk on the load-generator CPUs."""
        if not shutil.which("wrk"):
            return CommandResult(127, "wrk is not installed on this machine (apt-get install wrk)")
        return _run(self._pin(self.budget.loadgen_cpuset, args), timeout)

    def stop(self, server: RunningServer) -> None:
        """SIGTERM the server's process group (and SIGCONT it, should it be stopped); SIGKILL after 10 s."""
        if self._sampler:
            self._sampler.stop()
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


class DockerBackend:
    """Runs variants as the compose file's services, in a compose project of their own.

    Published ports are replaced by ephemeral ones on 127.0.0.1 (so a running
    ``docker compose up`` lab does not collide), and the budget is passed as the
    compose file's ``SERVER_*``/``LOADGEN_*`` variables.

    :param budget: CPU quota, memory limit and cpusets.
    :param project: compose project name.
    """

    name = "docker"

    def __init__(self, budget: Budget, project: str = "serverlab-run") -> None:
        self.budget = budget
        self.project = project
        self._override = Path(tempfile.mkdtemp(prefix="serverlab-compose-")) / "run.yml"
        self._sampler: Sampler | None = None
        self.image_id: str | None = None
        self.image_facts: dict[str, object] | None = None

    def _compose(self, *args: str) -> list[str]:
        return ["docker", "compose", "-p", self.project, "-f", str(ROOT / "docker-compose.yml"),
                "-f", str(self._override), *args]

    def _env(self, variant: Variant | None = None) -> dict[str, str]:
        env = {
            **os.environ,
            "SERVER_CPUS": f"{self.budget.server_cpus:g}",
            "SERVER_CPUSET": self.budget.server_cpuset,
            "SERVER_MEMORY": self.budget.server_memory,
            "LOADGEN_CPUSET": self.budget.loadgen_cpuset,
            "LOADGEN_CPUS": str(self.budget.loadgen_cores),  # a quota as wide as the cpuset: one Locust process per CPU
        }
        if variant is not None:
            prefix = variant.name.upper().replace("-", "_")
            env[f"{prefix}_WORKERS"] = str(variant.workers)
            env[f"{prefix}_THREADS"] = str(variant.threads)
        return env

    def describe(self) -> dict[str, object]:
        """Facts for the results header."""
        facts: dict[str, object] = {"backend": "docker", "project": self.project, "image": self.image_id,
                                    "limits_enforced": True}
        if self.image_facts:
            facts.update(self.image_facts)  # packages and Python as installed in the image the servers run
        return facts

    def prepare(self, variants: list[str] | None = None, progress: Callable[[str], None] = print) -> None:
        """Check Docker and Compose, write the port override, build the image once.

        :raises BackendError: naming what is missing and how to get it.
        """
        if not shutil.which("docker"):
            raise BackendError("docker is not installed; see README (make offline) or use --backend local")
        check = _run(["docker", "info", "--format", "{{.ServerVersion}}"], 30)
        if check.returncode != 0:
            raise BackendError(f"the Docker engine is not reachable: {check.output.strip()[-200:]}")
        check = _run(["docker", "compose", "version", "--short"], 30)
        if check.returncode != 0:
            raise BackendError("the docker compose plugin is missing; see README (make offline)")
        from labapp.variants import load_variants

        lines = ["services:"]
        for name in variants or list(load_variants()):
            # restart "no": a crashed server must fail its cell, not come back mid-run.
            lines += [f"  {name}:", '    ports: !override ["127.0.0.1::8000"]', '    restart: "no"']
        self._override.write_text("\n".join(lines) + "\n")
        progress("building the lab image (cached after the first time)...")
        build = _run(self._compose("build", "loadgen"), 1800, env=self._env(), cwd=ROOT)
        if build.returncode != 0:
            raise BackendError(f"docker compose build failed:\n{build.output.strip()[-2000:]}")
        inspect = _run(["docker", "image", "inspect", "--format", "{{.Id}}", "serverlab:" + os.environ.get("SERVERLAB_TAG", "latest")], 30)
        self.image_id = inspect.output.strip() if inspect.returncode == 0 else None
        probe = _run(self._compose("run", "--rm", "-T", "--no-deps", "loadgen", "python", "-c", _VERSIONS_PROBE),
                     120, env=self._env(), cwd=ROOT)
        try:
            self.image_facts = json.loads(probe.output.strip().splitlines()[-1])
        except (ValueError, IndexError):
            self.image_facts = None

    def start(self, variant: Variant, timeout: float = 90.0) -> RunningServer:
        """(Re)create the variant's container and wait until it is healthy.

        :raises BackendError: if it exits or does not become healthy within ``timeout`` seconds.
        """
        up = _run(self._compose("up", "-d", "--force-recreate", "--no-deps", "--wait",
                                "--wait-timeout", str(int(timeout)), variant.name), timeout + 30, env=self._env(variant), cwd=ROOT)
        if up.returncode != 0:
            logs = _run(self._compose("logs", "--tail", "5", variant.name), 30, env=self._env(), cwd=ROOT)
            raise BackendError(f"{variant.name} did not become healthy: {up.output.strip()[-400:]} {logs.output.strip()[-400:]}")
        cid = _run(self._compose("ps", "-q", variant.name), 30, env=self._env(), cwd=ROOT).output.strip()
        port = _run(self._compose("port", variant.name, "8000"), 30, env=self._env(), cwd=ROOT).output.strip()
        host_url = f"http://{port}" if port else ""
        server = RunningServer(variant, f"http://{variant.name}:8000", host_url, cid)
        if host_url:
            wait_healthy(host_url, 30, lambda: True)
        self._sampler = Sampler(self._cgroup_reader(cid))
        return server

    @staticmethod
    def _cgroup_reader(cid: str) -> Callable[[], tuple[float, int]]:
        v1_cpu = Path(f"/sys/fs/cgroup/cpuacct/docker/{cid}/cpuacct.usage")
        v1_mem = Path(f"/sys/fs/cgroup/memory/docker/{cid}/memory.max_usage_in_bytes")
        v2 = Path(f"/sys/fs/cgroup/system.slice/docker-{cid}.scope")

        def read() -> tuple[float, int]:
            if v1_cpu.exists():
                return int(v1_cpu.read_text()) / 1e9, int(v1_mem.read_text())
            stat = dict(line.split() for line in (v2 / "cpu.stat").read_text().splitlines())
            peak = v2 / "memory.peak"
            memory = int((peak if peak.exists() else v2 / "memory.current").read_text())
            return int(stat["usage_usec"]) / 1e6, memory

        return read

    def sampler(self) -> Sampler | None:
        """The running server's CPU/memory sampler."""
        return self._sampler

    def exit_status(self, server: RunningServer) -> str | None:
        """``None`` while the container runs, else its state and exit code."""
        out = _run(["docker", "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}} {{.State.OOMKilled}}", str(server.handle)], 30)
        if out.returncode != 0:
            return "server container is gone"
        status, code, oom = (out.output.split() + ["", "", ""])[:3]
        if status == "running":
            return None
        return f"server container {status} with exit code {code}" + (" (out of memory)" if oom == "true" else "")

    def locust_paths(self, server: RunningServer, out_dir: Path) -> tuple[str, str, str]:
        """(locustfile, host URL, output folder) as the loadgen container sees them."""
        return "/srv/locustfiles/locustfile.py", server.url_for_loadgen, "/out"

    def run_locust(self, args: list[str], env: dict[str, str], out_dir: Path, timeout: float) -> CommandResult:
        """Run Locust in a one-off loadgen container on the load-generator cpuset."""
        out_dir.mkdir(parents=True, exist_ok=True)
        out_dir.chmod(0o777)  # the container runs as an unprivileged user
        env_args = [item for key, value in env.items() for item in ("-e", f"{key}={value}")]
        argv = self._compose("run", "--rm", "-T", "--no-deps", "-v", f"{out_dir}:/out", *env_args, "loadgen", *args)
        return _run(argv, timeout, env=self._env(), cwd=ROOT)

    def run_wrk(self, args: list[str], timeout: float) -> CommandResult:
        """Run wrk in a one-off loadgen container."""
        return _run(self._compose("run", "--rm", "-T", "--no-deps", "loadgen", *args), timeout, env=self._env(), cwd=ROOT)

    def stop(self, server: RunningServer) -> None:
        """Stop and remove the variant's container."""
        if self._sampler:
            self._sampler.stop()
        _run(self._compose("rm", "-f", "-s", "-v", server.variant.name), 60, env=self._env(), cwd=ROOT)

    def kill(self, server: RunningServer) -> None:
        """Kill the server container abruptly (for failure tests)."""
        _run(["docker", "kill", str(server.handle)], 30)

    def close(self) -> list[str]:
        """Remove the run's compose project: its containers (one-off loadgen ones too) and network.

        :return: the names of the containers that were still there.
        """
        listed = _run(["docker", "ps", "-a", "--format", "{{.Names}}", "--filter",
                       f"label=com.docker.compose.project={self.project}"], 30)
        names = listed.output.split() if listed.returncode == 0 else []
        _run(self._compose("down", "--remove-orphans", "-t", "5"), 120, env=self._env(), cwd=ROOT)
        left = _run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={self.project}"], 30)
        if left.returncode == 0 and left.output.split():  # `compose run` containers whose client was killed
            _run(["docker", "rm", "-f", "-v", *left.output.split()], 60)
        return names


def compose_project(run_id: str) -> str:
    """The compose project name of a run: ``serverlab-<run id>``, lower case, compose's characters only."""
    return re.sub(r"[^a-z0-9_-]", "-", f"serverlab-{run_id}".lower())


def make_backend(name: str, budget: Budget, run_id: str | None = None) -> LocalBackend | DockerBackend:
    """Return the backend called ``name`` (``"docker"`` or ``"local"``).

    :param run_id: names the Docker backend's compose project (see :func:`compose_project`),
        so two runs never share (and remove) each other's containers.
    :raises BackendError: naming the valid backends for any other name.
    """
    if name == "docker":
        return DockerBackend(budget, compose_project(run_id) if run_id else "serverlab-run")
    if name == "local":
        return LocalBackend(budget)
    raise BackendError(f"unknown backend {name!r}; valid: docker, local")
