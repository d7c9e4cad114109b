"""Where servers and load generators run: Docker containers or local processes.

Both backends read the same variant declarations (``servers/*.toml``) and satisfy the
same interface, :class:`Backend` (:mod:`serverlab.backends.base`): start a variant
under a CPU/memory budget (the :class:`RunningServer` samples its CPU and memory), run
Locust or wrk against it from other CPUs, notice if it died, and stop it.

* :class:`DockerBackend` (:mod:`serverlab.backends.docker`) — the compose file's
  services, one project per run, the server's cgroup read for CPU seconds and peak
  memory (cgroup v1 or v2).
* :class:`LocalBackend` (:mod:`serverlab.backends.local`) — ``python -m labapp.serve``
  on a 127.0.0.1 port, pinned with ``taskset`` when available; CPU and memory from the
  process tree (psutil).

:func:`make_backend` builds one by name (the ``--backend`` option).
"""

from __future__ import annotations

from serverlab.backends.base import (
    LOCUSTFILE,
    ROOT,
    Backend,
    BackendError,
    CommandResult,
    LocustPaths,
    RunningServer,
    Sampler,
    ServerSampler,
    run_command,
    strip_ansi,
    wait_healthy,
)
from serverlab.backends.docker import DockerBackend, compose_project
from serverlab.backends.local import LocalBackend
from serverlab.appspec import AppSpec
from serverlab.budget import Budget

#: The backends ``--backend`` can name.
BACKENDS = ("docker", "local")

__all__ = [
    "BACKENDS", "LOCUSTFILE", "ROOT", "Backend", "BackendError", "CommandResult", "DockerBackend", "LocalBackend",
    "LocustPaths", "RunningServer", "Sampler", "ServerSampler", "compose_project", "make_backend", "run_command",
    "strip_ansi", "wait_healthy",
]


def make_backend(name: str, budget: Budget, app: AppSpec | None = None) -> Backend:
    """Return the backend called ``name`` (``"docker"`` or ``"local"``), built for ``budget``.

    :param app: the user's app every variant serves (``None``: the demo app).

    The Docker backend's compose project is named per run by :meth:`Backend.prepare`
    (see :func:`compose_project`), so two runs never share (and remove) each other's containers.

    :raises BackendError: naming the valid backends for any other name.
    """
    if name == "docker":
        return DockerBackend(budget, app=app)
    if name == "local":
        return LocalBackend(budget, app=app)
    raise BackendError(f"unknown backend {name!r}; valid: docker, local")
