"""The Docker backend: variants as the compose file's services, one compose project per run.

The server's cgroup is read for CPU seconds and peak memory (cgroup v1 or v2); the
budget's CPU quota, memory limit and cpusets are enforced by Docker.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

from labapp.variants import Variant
from typing import TYPE_CHECKING

from serverlab.appspec import AppSpec
from serverlab.backends.base import ROOT, BackendError, CommandResult, LocustPaths, RunningServer, Sampler, run_command, wait_healthy
from serverlab.budget import Budget
from serverlab.compose import BUILD_SERVICE

if TYPE_CHECKING:  # serverlab.appimage imports this package's base module
    from serverlab.appimage import AppImage

#: Prints the versions of the packages that matter, as a JSON object (run inside the image).
_VERSIONS_PROBE = (
    "import json, platform; from labapp import package_versions; "
    "print(json.dumps({'python': platform.python_version(), 'packages': package_versions()}))"
)


class DockerBackend:
    """Runs variants as the compose file's services, in a compose project of their own.

    Published ports are replaced by ephemeral ones on 127.0.0.1 (so a running
    ``docker compose up`` lab does not collide), and the budget is passed as the
    compose file's ``SERVER_*``/``LOADGEN_*`` variables.

    :param budget: CPU quota, memory limit and cpusets.
    :param project: compose project name.
    :param app: the user's app every server variant serves (its image is derived from the
        lab image by :func:`serverlab.appimage.build_app_image`); ``None``: the demo app.
    """

    name = "docker"

    def __init__(self, budget: Budget, project: str = "serverlab-run", app: AppSpec | None = None) -> None:
        self.budget = budget
        self.project = project
        self.app = app
        self.app_image: AppImage | None = None
        self._override = Path(tempfile.mkdtemp(prefix="serverlab-compose-")) / "run.yml"
        self.image_id: str | None = None
        self.image_facts: dict[str, object] | None = None
        self._hostspeed: str | None = None

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
        if self.app_image:
            facts.update(app_image=self.app_image.tag, app_image_built=self.app_image.built,
                         app_image_seconds=round(self.app_image.seconds, 2))
        if self.image_facts:
            facts.update(self.image_facts)  # packages and Python as installed in the image the servers run
        return facts

    def prepare(self, variants: Sequence[str] | None = None, progress: Callable[[str], None] = print,
                run_id: str | None = None) -> None:
        """Check Docker and Compose, write the port override, build the image once.

        :param variants: the services the run starts (``None``: every declared variant).
        :param progress: where to say that the image is being built.
        :param run_id: names the compose project (see :func:`compose_project`), so two runs
            never share (and remove) each other's containers; ``None`` keeps :attr:`project`.
        :raises BackendError: naming what is missing and how to get it.
        """
        if run_id:
            self.project = compose_project(run_id)
        if not shutil.which("docker"):
            raise BackendError("docker is not installed; see README (make offline) or use --backend local")
        check = run_command(["docker", "info", "--format", "{{.ServerVersion}}"], 30)
        if check.returncode != 0:
            raise BackendError(f"the Docker engine is not reachable: {check.output.strip()[-200:]}")
        check = run_command(["docker", "compose", "version", "--short"], 30)
        if check.returncode != 0:
            raise BackendError("the docker compose plugin is missing; see README (make offline)")
        from labapp.variants import load_variants

        names = list(variants or load_variants())
        self._write_override(names)
        progress("building the lab image (cached after the first time)...")
        build = run_command(self._compose("build", BUILD_SERVICE), 1800, env=self._env(), cwd=ROOT)
        if build.returncode != 0:
            raise BackendError(f"docker compose build failed:\n{build.output.strip()[-2000:]}")
        inspect = run_command(["docker", "image", "inspect", "--format", "{{.Id}}", "serverlab:" + os.environ.get("SERVERLAB_TAG", "latest")], 30)
        self.image_id = inspect.output.strip() if inspect.returncode == 0 else None
        self._hostspeed = None  # its container starts on the first probe
        probe = run_command(self._compose("run", "--rm", "-T", "--no-deps", "loadgen", "python", "-c", _VERSIONS_PROBE),
                     120, env=self._env(), cwd=ROOT)
        try:
            self.image_facts = json.loads(probe.output.strip().splitlines()[-1])
        except (ValueError, IndexError):
            self.image_facts = None
        if self.app is not None:
            self._prepare_app(names, progress)

    def _write_override(self, names: Sequence[str]) -> None:
        """The run's compose override: ephemeral ports, no restarts, and the app's image,
        environment and writable tmpfs paths when a user's app is served."""
        lines = ["services:"]
        from labapp.variants import load_variants

        declared = load_variants() if self.budget.remote_workers else {}
        for name in names:
            # restart "no": a crashed server must fail its cell, not come back mid-run.
            # No healthcheck: Docker would run it inside the server's cgroup, during the
            # measured window too; start() waits for /healthz from outside instead.
            # With remote workers: the variant's own host_port on master_bind, where they reach it.
            port = f"{self.budget.master_bind}:{declared[name].host_port}:8000" if declared else "127.0.0.1::8000"
            lines += [f"  {name}:", f'    ports: !override ["{port}"]', '    restart: "no"',
                      "    healthcheck: !override {disable: true}"]
            if self.app is not None and self.app_image is not None:
                tmpfs = ["/tmp:size=64m,mode=1777", *(f"{path}:size=64m,mode=1777" for path in self.app.writable)]
                lines += [f"    image: {json.dumps(self.app_image.tag)}", f"    tmpfs: !override {json.dumps(tmpfs)}",
                          "    environment:"]
                # JSON strings are YAML scalars; "$$" keeps compose from interpolating a "$" in a value
                lines += [f"      {key}: {json.dumps(value.replace('$', '$$'))}" for key, value in self.app.environment().items()]
        self._override.write_text("\n".join(lines) + "\n")

    def _prepare_app(self, names: Sequence[str], progress: Callable[[str], None]) -> None:
        """Find or build the app's image, check the app imports in it, and point the servers at it.

        :raises BackendError: if the lab image's Python version is unknown.
        :raises serverlab.appimage.AppBuildError: if the requirements do not install, the
            build fails or the app does not import (naming what failed).
        """
        from serverlab.appimage import build_app_image, check_app_imports

        assert self.app is not None
        python = str((self.image_facts or {}).get("python") or "")
        if not python:
            raise BackendError("could not read the lab image's Python version (the version probe failed)")
        base = "serverlab:" + os.environ.get("SERVERLAB_TAG", "latest")
        self.app_image = build_app_image(self.app, base, ".".join(python.split(".")[:2]),
                                         os.environ.get("SERVERLAB_TAG", "latest"), progress)
        check_app_imports(self.app, self.app_image.tag)
        self._write_override(names)

    def start(self, variant: Variant, timeout: float = 90.0) -> RunningServer:
        """(Re)create the variant's container and wait until it answers ``/healthz`` on its published port.

        The container has no Docker healthcheck (see :meth:`prepare`): nothing but the
        server runs in its cgroup; the wait polls from this machine.

        :raises BackendError: if it exits or does not become healthy within ``timeout`` seconds.
        """
        up = run_command(self._compose("up", "-d", "--force-recreate", "--no-deps", "--wait",
                                "--wait-timeout", str(int(timeout)), variant.name), timeout + 30, env=self._env(variant), cwd=ROOT)
        if up.returncode != 0:
            logs = run_command(self._compose("logs", "--tail", "25" if self.app else "5", variant.name), 30,
                               env=self._env(), cwd=ROOT)
            raise BackendError(f"{variant.name} did not become healthy: {up.output.strip()[-400:]} {logs.output.strip()[-400:]}")
        cid = run_command(self._compose("ps", "-q", variant.name), 30, env=self._env(), cwd=ROOT).output.strip()
        port = run_command(self._compose("port", variant.name, "8000"), 30, env=self._env(), cwd=ROOT).output.strip()
        host_url = f"http://{port}" if port else ""
        if host_url:
            try:
                wait_healthy(host_url, timeout, self._running_check(cid))
            except BackendError as err:
                logs = run_command(self._compose("logs", "--tail", "5", variant.name), 30, env=self._env(), cwd=ROOT)
                raise BackendError(f"{variant.name}: {err}: {logs.output.strip()[-400:]}") from None
        return RunningServer(variant, f"http://{variant.name}:8000", host_url, cid,
                             sampler=Sampler(self._cgroup_reader(cid)))

    def probe_host_speed(self, probes: int = 1) -> list[float]:
        """Time :func:`serverlab.hostspeed.probe` in the ``hostspeed`` container: the servers' CPU quota,
        cpuset and memory, its own cgroup (``docker exec``; the container sleeps between probes).

        :param probes: how many, back to back in one process.
        :return: each probe's total milliseconds.
        :raises BackendError: if the container does not start or the probe's output cannot be read.
        """
        from serverlab.hostspeed import HostSpeedError, parse_probes

        if self._hostspeed is None:
            up = run_command(self._compose("up", "-d", "--no-deps", "hostspeed"), 120, env=self._env(), cwd=ROOT)
            cid = run_command(self._compose("ps", "-q", "hostspeed"), 30, env=self._env(), cwd=ROOT).output.strip()
            if up.returncode != 0 or not cid:
                raise BackendError(f"the hostspeed container did not start: {up.output.strip()[-300:]}")
            self._hostspeed = cid
        done = run_command(["docker", "exec", self._hostspeed, "python", "-m", "serverlab.hostspeed",
                            "--probes", str(probes)], 60 + 10 * probes)
        try:
            return parse_probes(done.output)
        except HostSpeedError as err:
            raise BackendError(f"host-speed probe (exit status {done.returncode}): {err}") from None

    @staticmethod
    def _running_check(cid: str, every_s: float = 1.0) -> Callable[[], bool]:
        """A ``alive()`` for :func:`wait_healthy`: is container ``cid`` still running (asked at most every ``every_s`` s)?"""
        asked = [0.0, True]

        def alive() -> bool:
            if time.monotonic() - asked[0] >= every_s:
                state = run_command(["docker", "inspect", "-f", "{{.State.Running}}", cid], 30)
                asked[:] = [time.monotonic(), state.returncode == 0 and state.output.strip() == "true"]
            return bool(asked[1])

        return alive

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

    def exit_status(self, server: RunningServer) -> str | None:
        """``None`` while the container runs, else its state and exit code."""
        out = run_command(["docker", "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}} {{.State.OOMKilled}}", str(server.handle)], 30)
        if out.returncode != 0:
            return "server container is gone"
        status, code, oom = (out.output.split() + ["", "", ""])[:3]
        if status == "running":
            return None
        return f"server container {status} with exit code {code}" + (" (out of memory)" if oom == "true" else "")

    def locust_paths(self, server: RunningServer, out_dir: Path) -> LocustPaths:
        """The locustfile, host URL and output folder as the loadgen container sees them (``out_dir`` is mounted at ``/out``)."""
        return LocustPaths("/srv/locustfiles/locustfile.py", server.url_for_loadgen, "/out")

    def run_locust(self, args: list[str], env: dict[str, str], out_dir: Path, timeout: float) -> CommandResult:
        """Run Locust in a one-off loadgen container on the load-generator cpuset (with remote workers, its
        port 5557 published on the budget's ``master_bind``)."""
        out_dir.mkdir(parents=True, exist_ok=True)
        out_dir.chmod(0o777)  # the container runs as an unprivileged user
        env_args = [item for key, value in env.items() for item in ("-e", f"{key}={value}")]
        if self.budget.remote_workers:  # the master's port, for workers on other hosts
            from serverlab.workerhosts import MASTER_PORT

            env_args += ["-p", f"{self.budget.master_bind}:{MASTER_PORT}:{MASTER_PORT}"]
        argv = self._compose("run", "--rm", "-T", "--no-deps", "-v", f"{out_dir}:/out", *env_args, "loadgen", *args)
        return run_command(argv, timeout, env=self._env(), cwd=ROOT)

    def run_wrk(self, args: list[str], timeout: float) -> CommandResult:
        """Run wrk in a one-off loadgen container."""
        return run_command(self._compose("run", "--rm", "-T", "--no-deps", "loadgen", *args), timeout, env=self._env(), cwd=ROOT)

    def stop(self, server: RunningServer) -> None:
        """Stop and remove the variant's container."""
        if server.sampler:
            server.sampler.stop()
        run_command(self._compose("rm", "-f", "-s", "-v", server.variant.name), 60, env=self._env(), cwd=ROOT)

    def kill(self, server: RunningServer) -> None:
        """Kill the server container abruptly (for failure tests)."""
        run_command(["docker", "kill", str(server.handle)], 30)

    def close(self) -> list[str]:
        """Remove the run's compose project: its containers (one-off loadgen ones too) and network.

        A one-off ``compose run`` container whose client was killed by the stop signal is
        still attached to the project's network, and ``compose down`` then leaves the
        network behind ("has active endpoints"): such containers are removed first, and any
        network of the project still there after ``down`` is removed by name.

        :return: the names of the containers that were still there.
        """
        label = f"label=com.docker.compose.project={self.project}"
        listed = run_command(["docker", "ps", "-a", "--format", "{{.Names}}", "--filter", label], 30)
        names = listed.output.split() if listed.returncode == 0 else []
        left = run_command(["docker", "ps", "-aq", "--filter", label, "--filter",
                            "label=com.docker.compose.oneoff=True"], 30)
        if left.returncode == 0 and left.output.split():  # `compose run` containers whose client was killed
            run_command(["docker", "rm", "-f", "-v", *left.output.split()], 60)
        run_command(self._compose("down", "--remove-orphans", "-t", "5"), 120, env=self._env(), cwd=ROOT)
        self._hostspeed = None
        left = run_command(["docker", "ps", "-aq", "--filter", label], 30)
        if left.returncode == 0 and left.output.split():
            run_command(["docker", "rm", "-f", "-v", *left.output.split()], 60)
        networks = run_command(["docker", "network", "ls", "-q", "--filter", label], 30)
        if networks.returncode == 0 and networks.output.split():
            run_command(["docker", "network", "rm", *networks.output.split()], 60)
        return names



def compose_project(run_id: str) -> str:
    """The compose project name of a run: ``serverlab-<run id>``, lower case, compose's characters only."""
    return re.sub(r"[^a-z0-9_-]", "-", f"serverlab-{run_id}".lower())
