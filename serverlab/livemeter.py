"""The server's CPU and bottleneck while an ordinary Locust test runs, as ``make report`` would class it.

Every few seconds the web UI reads the target server's ``GET /lab/cpu`` (one request
per interval: it does not load the server) and, with the requests Locust counted and
the Locust processes' CPU in between, builds a :class:`serverlab.results.Cell` of that
interval and classifies it with :func:`serverlab.bottleneck.classify`, the interference
figures coming from :func:`serverlab.interference.interference_figures`: the same rules,
not a copy.

No Locust import here. Units: seconds, RPS, fractions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from serverlab.bottleneck import classify
from serverlab.budget import Budget
from serverlab.interference import interference_figures
from serverlab.results import Cell
from serverlab.selfreport import SelfReport, SelfReportError, read_self_report
from serverlab.terms import CellStatus, Mode

#: Seconds between two readings of the server's counters while a test runs.
LIVE_INTERVAL_S = 5.0


@dataclass(frozen=True)
class LoadTotals:
    """What Locust counted so far, at one moment.

    :param requests: responses counted since the test (or its stats) started.
    :param failures: of them, failed.
    :param busiest_share: the busiest Locust process's CPU share of one core now (``None``: unknown).
    :param loadgen_cpu_rate: all Locust processes' CPU, in cores, now (``None``: unknown).
    """

    requests: int
    failures: int
    busiest_share: float | None = None
    loadgen_cpu_rate: float | None = None


class LiveMeter:
    """Classifies the last interval of a running test from two self-reports of its server.

    :param url_for: server name -> its base URL from here.
    :param loadgen_cpus: the Locust processes' CPUs (the interference rules' generator side).
    :param read: reads one report (default :func:`serverlab.selfreport.read_self_report`).
    """

    def __init__(self, url_for: Callable[[str], str], loadgen_cpus: Sequence[int],
                 read: Callable[[str], SelfReport] = read_self_report) -> None:
        self.url_for = url_for
        self.loadgen_cpus = list(loadgen_cpus)
        self.read = read
        self._last: tuple[str, SelfReport, LoadTotals] | None = None
        self.latest: dict[str, Any] | None = None

    def reset(self) -> None:
        """Forget the previous reading (a test stopped, or the target changed)."""
        self._last = None
        self.latest = None

    def update(self, server: str, totals: LoadTotals) -> dict[str, Any] | None:
        """Read ``server``'s counters now; classify the interval since the previous reading.

        :return: :meth:`figures` of the interval, or ``None`` on the first reading for this
            server, when the counters went backwards (its stats were reset) or it did not answer.
        """
        try:
            report = self.read(self.url_for(server))
        except SelfReportError as err:
            self.latest = {"server": server, "error": str(err)}
            return None
        last, self._last = self._last, (server, report, totals)
        if last is None or last[0] != server or totals.requests < last[2].requests or report.at <= last[1].at:
            return None
        self.latest = self.figures(server, last[1], report, last[2], totals)
        return self.latest

    def figures(self, server: str, before: SelfReport, after: SelfReport, start: LoadTotals, end: LoadTotals) -> dict[str, Any]:
        """The interval's cell, classified.

        :return: ``{"server", "window_s", "rps", "cpu_ms_per_request", "server_utilization",
            "generator_utilization", "bottleneck", "reason", "other_share", "interference_flagged"}``
            (fractions; ``None`` where not measured).
        """
        window = after.at - before.at
        requests = end.requests - start.requests
        server_cpu = (after.usage_s - before.usage_s) if after.usage_s is not None and before.usage_s is not None else None
        loadgen_cpu = end.loadgen_cpu_rate * window if end.loadgen_cpu_rate is not None else None
        interference = interference_figures(before.sample(), after.sample(), after.cpuset, self.loadgen_cpus,
                                            server_cpu, loadgen_cpu)
        cell = Cell(run_id="live", cell_id=f"{server}/live", variant=server, workload="live",
                    mode=Mode.CLOSED, level=0, users=0, repetition=1, order=0, status=CellStatus.OK,
                    duration_s=window, requests=requests, failures=min(requests, max(0, end.failures - start.failures)),
                    rps=requests / window if window > 0 else 0.0, server_cpu_s=server_cpu,
                    cpu_ms_per_request=server_cpu * 1000 / requests if server_cpu is not None and requests else None,
                    loadgen_cpu_s=loadgen_cpu, loadgen_busiest_share=end.busiest_share, interference=interference)
        bottleneck = classify(cell, Budget(server_cpus=after.quota_cpus or float(len(after.cpuset) or 1)))
        return {"server": server, "window_s": round(window, 3), "rps": round(cell.rps, 1),
                "cpu_ms_per_request": None if cell.cpu_ms_per_request is None else round(cell.cpu_ms_per_request, 4),
                "server_utilization": bottleneck.server_utilization if bottleneck else None,
                "generator_utilization": bottleneck.generator_utilization if bottleneck else None,
                "bottleneck": bottleneck.kind if bottleneck else None, "reason": bottleneck.reason if bottleneck else None,
                "other_share": cell.interference.server_share if cell.interference else None,
                "interference_flagged": bool(cell.interference and cell.interference.flagged)}
