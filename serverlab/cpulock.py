"""One run per CPU: a run holds an exclusive lock on every CPU its cpusets name.

Two runs on the same CPUs skew each other (both slower, both ``ok``), so a run
takes ``fcntl.flock`` locks on ``<lock dir>/cpu<N>.lock`` for each CPU of its
server and load-generator cpusets before anything starts, and writes who holds
them (pid, run id, experiment, backend, start time) into each file. A second run
needing any of those CPUs is refused with that holder named. The kernel drops a
flock when its process ends, however it ends, so there are no stale locks.

The lock folder is ``$SERVERLAB_LOCK_DIR``, else ``<tmp>/serverlab-cpu-locks``
(created world-writable with the sticky bit, as ``/tmp`` is, so runs of different
users on one machine see each other).
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from pathlib import Path
from typing import Iterable

from serverlab import LabError

#: Environment variable naming the lock folder (tests give each run set its own).
LOCK_DIR_ENV = "SERVERLAB_LOCK_DIR"


class CpusBusyError(LabError):
    """Another run holds a CPU this run needs."""


def lock_dir() -> Path:
    """The folder of the per-CPU lock files (see the module docstring)."""
    configured = os.environ.get(LOCK_DIR_ENV)
    return Path(configured) if configured else Path(tempfile.gettempdir()) / "serverlab-cpu-locks"


class CpuLock:
    """Exclusive locks on a set of CPUs for the lifetime of one run (a context manager).

    :param cpus: CPU numbers (the union of the run's cpusets).
    :param holder: who holds them, as written into the lock files and named to a
        refused run, e.g. ``"run 20261121-050000-quick (experiment quick, backend local)"``.
    :param directory: the lock folder (default :func:`lock_dir`).
    """

    def __init__(self, cpus: Iterable[int], holder: str, directory: Path | None = None) -> None:
        self.cpus = sorted(set(cpus))
        self.holder = holder
        self.directory = Path(directory) if directory else lock_dir()
        self._fds: list[int] = []

    def acquire(self) -> None:
        """Take every CPU's lock at once, or none.

        :raises CpusBusyError: naming the CPU and its holder (pid, run) when one is taken.
        :raises LabError: when the lock folder cannot be used.
        """
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            if self.directory.stat().st_uid == os.geteuid():
                os.chmod(self.directory, 0o1777)
        except OSError as err:
            raise LabError(f"cannot use the CPU lock folder {self.directory}: {err.strerror}") from None
        line = f"pid {os.getpid()}, {self.holder}, since {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}\n"
        for cpu in self.cpus:
            path = self.directory / f"cpu{cpu}.lock"
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
            except OSError as err:
                self.release()
                raise LabError(f"cannot open the CPU lock {path}: {err.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "a run that is just starting"
                os.close(fd)
                self.release()
                raise CpusBusyError(
                    f"CPU {cpu} is in use by another serverlab run ({holder}); two runs on the same CPUs "
                    f"skew each other. Wait for it to finish (or stop it), or give this run other CPUs "
                    f"(budget.server_cpuset / budget.loadgen_cpuset). Lock file: {path}") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, line.encode(), 0)
            if os.fstat(fd).st_uid == os.geteuid():
                os.fchmod(fd, 0o666)
            self._fds.append(fd)

    def release(self) -> None:
        """Drop every lock held (clearing the holder line first)."""
        for fd in self._fds:
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
            os.close(fd)  # closing the only descriptor releases the flock
        self._fds.clear()

    def __enter__(self) -> "CpuLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
