"""What a server says about its own CPU use: ``GET /lab/cpu`` (the interactive lab's meter).

The web UI's Locust master has no Docker socket and no view of the servers' cgroups.
Each server container, though, sees its own cgroup (Docker mounts it at
``/sys/fs/cgroup``) and the kernel's per-CPU counters (``/proc/stat`` is not
namespaced). ``GET /lab/cpu`` returns both, raw, plus the time they were read; the
master reads it twice per measured window (at the end of the warm-up and at the end
of the window) and turns the two answers into the same figures ``make report``
records, with :mod:`serverlab.selfreport` (server CPU seconds, utilisation of the
budget, other programs' share of the CPUs).

The endpoint takes no parameters and reads a handful of small files: its cost is
constant and tiny (well under a millisecond of CPU), so two requests per window do
not load the server it measures.

Units: CPU times as the kernel gives them (``usage_usec`` µs, ``cpuacct.usage`` ns,
``/proc/stat`` clock ticks); Unix seconds for ``at``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

#: Where the container's own cgroup is mounted.
CGROUP_ROOT = Path("/sys/fs/cgroup")
#: The kernel's per-CPU counters (host-wide, also inside a container).
PROC_STAT = Path("/proc/stat")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None


def cgroup_figures(root: Path = CGROUP_ROOT) -> dict[str, Any]:
    """The CPU usage, CPU quota, cpuset and peak memory of the cgroup mounted at ``root``.

    Reads cgroup v2 (``cpu.stat``, ``cpu.max``, ``cpuset.cpus.effective``,
    ``memory.peak``, ``memory.max``) or, failing that, v1 (``cpuacct/cpuacct.usage``,
    ``cpu/cpu.cfs_quota_us`` and ``cfs_period_us``, ``cpuset/cpuset.effective_cpus``,
    ``memory/memory.max_usage_in_bytes`` and ``memory.limit_in_bytes``).

    :param root: the cgroup mount (``/sys/fs/cgroup`` inside a container is its own cgroup).
    :return: ``{"version": 2 | 1 | None, "usage_s": float | None, "quota_cpus": float | None,
        "cpuset": str | None, "memory_peak_bytes": int | None, "memory_limit_bytes": int | None}``;
        ``None`` values where a
        file is absent (``quota_cpus`` ``None`` also when no quota is set).
    """
    stat = _read(root / "cpu.stat")
    if stat is not None:
        fields = dict(line.split(None, 1) for line in stat.splitlines() if " " in line)
        quota = (_read(root / "cpu.max") or "max").split()
        peak = _read(root / "memory.peak") or _read(root / "memory.current")
        return {
            "version": 2,
            "usage_s": int(fields["usage_usec"]) / 1e6 if fields.get("usage_usec", "").isdigit() else None,
            "quota_cpus": int(quota[0]) / int(quota[1]) if len(quota) == 2 and quota[0].isdigit() and quota[1].isdigit() and int(quota[1]) else None,
            "cpuset": _read(root / "cpuset.cpus.effective"),
            "memory_peak_bytes": int(peak) if peak and peak.isdigit() else None,
            "memory_limit_bytes": _limit(_read(root / "memory.max")),
        }
    usage = _read(root / "cpuacct" / "cpuacct.usage") or _read(root / "cpu,cpuacct" / "cpuacct.usage")
    if usage is None:
        return {"version": None, "usage_s": None, "quota_cpus": None, "cpuset": None, "memory_peak_bytes": None,
                "memory_limit_bytes": None}
    cpu_dir = root / "cpu" if (root / "cpu" / "cpu.cfs_quota_us").exists() else root / "cpu,cpuacct"
    quota_us, period_us = _read(cpu_dir / "cpu.cfs_quota_us"), _read(cpu_dir / "cpu.cfs_period_us")
    peak = _read(root / "memory" / "memory.max_usage_in_bytes")
    return {
        "version": 1,
        "usage_s": int(usage) / 1e9 if usage.isdigit() else None,
        "quota_cpus": (int(quota_us) / int(period_us)
                       if quota_us and period_us and quota_us.isdigit() and period_us.isdigit() and int(period_us) else None),
        "cpuset": _read(root / "cpuset" / "cpuset.effective_cpus") or _read(root / "cpuset" / "cpuset.cpus"),
        "memory_peak_bytes": int(peak) if peak and peak.isdigit() else None,
        "memory_limit_bytes": _limit(_read(root / "memory" / "memory.limit_in_bytes")),
    }


def _limit(text: str | None) -> int | None:
    """A memory limit in bytes; ``None`` for "max", unreadable, or v1's "unlimited" (near 2**63)."""
    if not text or not text.isdigit() or int(text) >= 2**60:
        return None
    return int(text)


def cpu_report(root: Path = CGROUP_ROOT, proc_stat: Path = PROC_STAT) -> dict[str, Any]:
    """The body of ``GET /lab/cpu``: this server's cgroup figures and the per-CPU counters, now.

    :return: ``{"at": Unix seconds, "cgroup": cgroup_figures(), "proc_stat": the
        ``cpuN`` lines of /proc/stat (text), "clock_ticks": ticks per second,
        "affinity": CPU numbers this process may run on}``.
    """
    text = _read(proc_stat) or ""
    lines = [line for line in text.splitlines() if line.startswith("cpu") and not line.startswith("cpu ")]
    try:
        affinity = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = []
    return {
        "at": time.time(),
        "cgroup": cgroup_figures(root),
        "proc_stat": "\n".join(lines),
        "clock_ticks": os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100,
        "affinity": affinity,
    }
