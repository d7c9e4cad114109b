"""Reading a server's own report of its CPU (``GET /lab/cpu``) into the runner's figures.

Inside the interactive lab the Locust master has no Docker socket: it cannot read a
server's cgroup the way ``make report``'s Docker backend does. Each server reports
it itself (:mod:`labapp.selfreport`): its cgroup's cumulative CPU seconds and quota,
its cpuset, its peak memory, and the kernel's per-CPU counters (``/proc/stat``).
This module turns those answers into the objects the runner already uses:

* :class:`SelfReport` — one answer, parsed; :meth:`SelfReport.sample` gives the
  :class:`serverlab.interference.Sample` that :func:`serverlab.interference.interference_figures` reads;
* :class:`SelfReportSampler` — a :class:`serverlab.backends.ServerSampler` holding the
  answers taken at a window's edges, with :class:`serverlab.backends.Sampler`'s own
  interpolation (:meth:`cpu_between`) and peak.

Units: seconds (CPU and wall), bytes, CPU numbers.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from typing import Any

from serverlab import LabError
from serverlab.backends.base import Sampler
from serverlab.budget import parse_cpuset
from serverlab.interference import CpuTimes, Sample, own_cpu_seconds, parse_proc_stat

#: The endpoint every server serves (no parameters).
SELF_REPORT_PATH = "/lab/cpu"
#: Seconds to wait for a server's answer.
SELF_REPORT_TIMEOUT_S = 5.0


class SelfReportError(LabError):
    """A server's ``/lab/cpu`` could not be read, or did not say what is needed."""


@dataclass(frozen=True)
class SelfReport:
    """One ``GET /lab/cpu`` answer.

    :param at: Unix seconds the server read its counters.
    :param usage_s: its cgroup's cumulative CPU seconds (``None``: not readable there).
    :param quota_cpus: its CPU quota in cores (``None``: no quota).
    :param cpuset: the CPUs it may run on.
    :param memory_peak_bytes: its cgroup's peak memory (``None``: not readable).
    :param memory_limit_bytes: its cgroup's memory limit (``None``: none or not readable).
    :param cpus: the per-CPU cumulative times it saw (``/proc/stat``), seconds.
    :param own_s: the reading process's own CPU seconds when the answer arrived (the
        runner's share, credited by :func:`serverlab.interference.interference_figures`).
    """

    at: float
    usage_s: float | None
    quota_cpus: float | None
    cpuset: tuple[int, ...]
    memory_peak_bytes: int | None
    memory_limit_bytes: int | None
    cpus: dict[int, CpuTimes]
    own_s: float

    @classmethod
    def from_json(cls, data: Any, own_s: float = 0.0) -> SelfReport:
        """Parse the JSON object of ``GET /lab/cpu``.

        :raises SelfReportError: naming what is missing when it is not such an answer.
        """
        if not isinstance(data, dict) or not isinstance(data.get("cgroup"), dict):
            raise SelfReportError(f"not a /lab/cpu answer: {str(data)[:120]!r}")
        cgroup = data["cgroup"]
        ticks = data.get("clock_ticks") or 100
        cpuset: list[int] = []
        text = str(cgroup.get("cpuset") or "").strip()
        try:
            cpuset = parse_cpuset(text) if text else [int(c) for c in data.get("affinity") or []]
        except (TypeError, ValueError):
            cpuset = []

        def number(value: Any) -> float | None:
            return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

        peak, limit = number(cgroup.get("memory_peak_bytes")), number(cgroup.get("memory_limit_bytes"))
        return cls(at=float(data.get("at") or 0.0), usage_s=number(cgroup.get("usage_s")),
                   quota_cpus=number(cgroup.get("quota_cpus")), cpuset=tuple(cpuset),
                   memory_peak_bytes=None if peak is None else int(peak),
                   memory_limit_bytes=None if limit is None else int(limit),
                   cpus=parse_proc_stat(str(data.get("proc_stat") or ""), 1.0 / float(ticks)), own_s=own_s)

    def sample(self) -> Sample:
        """The per-CPU counters as an interference :class:`~serverlab.interference.Sample`."""
        return Sample(self.at, self.cpus, self.own_s)


def read_self_report(base_url: str, timeout: float = SELF_REPORT_TIMEOUT_S) -> SelfReport:
    """``GET <base_url>/lab/cpu`` and parse it.

    :param base_url: the server's base URL, e.g. ``http://gunicorn-sync:8000``.
    :raises SelfReportError: when it does not answer 200 with such a report in ``timeout`` seconds.
    """
    try:
        with urllib.request.urlopen(base_url + SELF_REPORT_PATH, timeout=timeout) as response:
            body = response.read(1 << 20)
    except OSError as err:
        raise SelfReportError(f"{base_url}{SELF_REPORT_PATH} did not answer: {getattr(err, 'reason', err)}") from None
    try:
        data = json.loads(body)
    except ValueError:
        raise SelfReportError(f"{base_url}{SELF_REPORT_PATH} answered something that is not JSON: {body[:80]!r}") from None
    return SelfReport.from_json(data, own_s=own_cpu_seconds())


class SelfReportSampler:
    """A server's CPU seconds and memory from its own reports, taken when the runner asks.

    Satisfies :class:`serverlab.backends.ServerSampler`; :meth:`cpu_between` and
    :meth:`cpu_between` is :class:`serverlab.backends.Sampler`'s own interpolation, over
    the ``(at, usage_s, memory)`` of the reports added with :meth:`add`.
    """

    cpu_between = Sampler.cpu_between

    def __init__(self) -> None:
        self.samples: list[tuple[float, float, int]] = []
        self.reports: list[SelfReport] = []

    def add(self, report: SelfReport) -> None:
        """Keep one report (one whose cgroup CPU is unreadable adds no CPU sample)."""
        self.reports.append(report)
        if report.usage_s is not None:
            self.samples.append((report.at, report.usage_s, report.memory_peak_bytes or 0))

    def peak_memory(self) -> int | None:
        """The highest peak memory any report gave (bytes); ``None`` when none could read it."""
        return max((r.memory_peak_bytes for r in self.reports if r.memory_peak_bytes is not None), default=None)

    def stop(self) -> None:
        """Nothing runs in the background: the reports stay readable."""
