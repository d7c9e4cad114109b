"""The resources every server variant gets, and where the load generator runs.

An experiment's ``[budget]`` table becomes a :class:`Budget`; the helpers here parse
its cpusets (``"0-3,5"``) and Docker-style memory sizes (``"512m"``) and resolve
``loadgen_processes = "auto"`` for this machine. Units: CPUs (cores), bytes.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, fields, replace
from typing import Mapping

from serverlab.terms import Mode

_CPUSET = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")
_MEMORY = re.compile(r"^\d+[kmg]?$")
#: The smallest server memory limit accepted (bytes): below it no variant starts.
MIN_SERVER_MEMORY = 32 * 2**20


@dataclass(frozen=True)
class Budget:
    """The resources every server variant gets, and where the load generator runs.

    :param server_cpus: CPU quota of a server (cores, e.g. ``1.0``).
    :param server_memory: memory limit of a server, Docker syntax (``"512m"``).
    :param server_cpuset: CPUs the server may run on (``"0"``).
    :param loadgen_cpuset: CPUs the load generator runs on (``"1"``); must not overlap the server's.
    :param loadgen_processes: Locust processes (``--processes``); 1 = a single process.
        An experiment's ``"auto"`` (the default) is resolved when it is loaded, by
        :func:`auto_loadgen_processes`; :attr:`loadgen_auto` then records that.
    :param loadgen_auto: ``loadgen_processes`` was chosen automatically for this machine.
    :param remote_workers: Locust worker processes on other hosts to wait for before each cell
        (``docker-compose.loadgen.yml`` there); 0: the generator is this machine's only.
    :param master_bind: the address of this machine the Locust master's port and the servers'
        ports are published on for those workers (only used with ``remote_workers``).
    :param remote_wait_s: seconds to wait for them (Locust's ``--expect-workers-max-wait``).
    """

    server_cpus: float = 1.0
    server_memory: str = "512m"
    server_cpuset: str = "0"
    loadgen_cpuset: str = "1"
    loadgen_processes: int = 1
    loadgen_auto: bool = False
    remote_workers: int = 0
    master_bind: str = "127.0.0.1"
    remote_wait_s: float = 60.0

    @property
    def loadgen_cores(self) -> int:
        """How many CPUs the load generator's cpuset holds."""
        return len(parse_cpuset(self.loadgen_cpuset))

    def to_dict(self) -> dict[str, object]:
        """``{"server_cpus", "server_memory", "server_cpuset", "loadgen_cpuset", "loadgen_processes",
        "loadgen_auto"}`` (JSON-ready; an experiment record's ``budget``)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        if not self.remote_workers:  # an experiment without remote workers keeps its record and digest
            for key in REMOTE_FIELDS:
                data.pop(key, None)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Budget:
        """The budget of :meth:`to_dict`'s mapping; keys it lacks take the defaults, unknown keys are ignored.

        :raises ValueError: naming a CPU count or process count that is not a number.
        """
        values = {f.name: data[f.name] for f in fields(cls) if data.get(f.name) is not None}
        for key in ("server_cpus", "loadgen_processes"):
            if key in values and (isinstance(values[key], bool) or not isinstance(values[key], (int, float))):
                raise ValueError(f"budget {key} must be a number, got {values[key]!r}")
        return cls(**values)  # type: ignore[arg-type]


#: ``[budget]`` keys of remote workers -> :class:`Budget` fields.
REMOTE_KEYS = {"remote_workers": "remote_workers", "master_bind": "master_bind", "remote_wait": "remote_wait_s"}
#: The :class:`Budget` fields of remote workers (left out of an experiment's record while unused).
REMOTE_FIELDS = tuple(REMOTE_KEYS.values())
#: Most remote Locust worker processes a run waits for; longest wait for them (seconds).
MAX_REMOTE_WORKERS, MAX_REMOTE_WAIT_S = 256, 600.0


def with_remote_workers(budget: Budget, mode: str = Mode.CLOSED, remote_workers: object = None,
                        master_bind: object = None, remote_wait_s: object = None) -> Budget:
    """``budget`` with its remote-worker settings checked and set (``None``: keep the budget's).

    :param remote_workers: Locust worker processes on other hosts, an integer in 0..256.
    :param master_bind: an IP address of this machine (``"0.0.0.0"`` for every interface), where
        the master's port and the servers' ports are published for them.
    :param remote_wait_s: seconds to wait for them before each cell, 5..600.
    :raises ValueError: naming the key, the bad value and the valid ones (closed model only: the
        open and requests models count sends per process and are not split across hosts).
    """
    workers = budget.remote_workers if remote_workers is None else remote_workers
    bind = budget.master_bind if master_bind is None else master_bind
    wait = budget.remote_wait_s if remote_wait_s is None else remote_wait_s
    if isinstance(workers, bool) or not isinstance(workers, int) or not 0 <= workers <= MAX_REMOTE_WORKERS:
        raise ValueError(f"key 'budget.remote_workers' = {workers!r} is invalid; expected an integer in "
                         f"0..{MAX_REMOTE_WORKERS} (Locust worker processes on other hosts)")
    try:
        ipaddress.ip_address(bind if isinstance(bind, str) else "")
    except ValueError:
        raise ValueError(f"key 'budget.master_bind' = {bind!r} is invalid; expected an IP address of this machine "
                         "that the worker hosts reach (e.g. '10.0.0.5', or '0.0.0.0' for every interface)") from None
    if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 5 <= wait <= MAX_REMOTE_WAIT_S:
        raise ValueError(f"key 'budget.remote_wait' = {wait!r} is invalid; expected seconds in 5..{MAX_REMOTE_WAIT_S:g}")
    if workers and mode != Mode.CLOSED:
        raise ValueError(f"key 'budget.remote_workers' = {workers!r} is invalid with mode {str(mode)!r}; remote "
                         "workers take the closed model only (0 otherwise)")
    return replace(budget, remote_workers=workers, master_bind=bind, remote_wait_s=float(wait))


def auto_loadgen_processes(loadgen_cpuset: str, mode: str = Mode.CLOSED) -> int:
    """Locust processes for ``loadgen_processes = "auto"``: one per CPU the generator may use.

    The CPUs are those of ``loadgen_cpuset`` (never the servers': the cpusets may not
    overlap) that this machine has and this process may run on. Locust runs one
    single-threaded event loop per process, so one process per free CPU is the most
    load it can offer without two processes sharing a core. Requests mode needs one
    process (one process counts the requests).

    :param loadgen_cpuset: the generator's cpuset, e.g. ``"1"`` or ``"1-3"``.
    :param mode: the experiment's load model.
    :return: at least 1.
    """
    if mode == Mode.REQUESTS:
        return 1
    try:
        available = set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        available = set(range(os.cpu_count() or 1))
    return max(1, len(set(parse_cpuset(loadgen_cpuset)) & available))


def parse_cpuset(text: str) -> list[int]:
    """Parse a cpuset like ``"0"``, ``"0-3"`` or ``"0,2"`` into CPU numbers.

    :raises ValueError: if the text is not a cpuset.
    """
    if not _CPUSET.match(text):
        raise ValueError(f"not a cpuset: {text!r} (examples: '0', '0-3', '0,2')")
    cpus: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        if int(high or low) < int(low):
            raise ValueError(f"not a cpuset: {text!r} (range {part!r} runs backwards)")
        cpus.extend(range(int(low), int(high or low) + 1))
    return cpus


def format_cpuset(cpus: list[int]) -> str:
    """CPU numbers as a cpuset string: ``[0, 1, 2, 5] -> "0-2,5"``."""
    runs: list[list[int]] = []
    for cpu in sorted(set(cpus)):
        if runs and runs[-1][1] == cpu - 1:
            runs[-1][1] = cpu
        else:
            runs.append([cpu, cpu])
    return ",".join(str(low) if low == high else f"{low}-{high}" for low, high in runs)


def memory_bytes(size: str) -> int:
    """Bytes of a Docker-style size: ``"512m" -> 536870912``; ``"0" -> 0``.

    :raises ValueError: if it is not ``<digits>[k|m|g]``.
    """
    if not _MEMORY.match(size.lower()):
        raise ValueError(f"not a size: {size!r} (examples: '512m', '1g')")
    unit = size[-1].lower()
    scale = {"k": 2**10, "m": 2**20, "g": 2**30}.get(unit, 1)
    return int(size[:-1] if unit in "kmg" else size) * scale


def is_size(text: str) -> bool:
    """Whether ``text`` is a Docker-style size that :func:`memory_bytes` reads."""
    return bool(_MEMORY.match(text.lower()))


def usable_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity mask), sorted."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))
