"""Building load-generator command lines and reading what they leave behind.

Locust is run headless with the lab's locustfile; each Locust process writes an
``hdr-*.json`` file (see ``locustfiles/locustfile.py``) that this module merges
exactly. Locust's own ``*_stats.csv`` is parsed too and kept beside the lab's
figures for comparison (its percentiles are rounded to whole milliseconds below
100 ms). wrk is the reference generator for calibration.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from serverlab import LabError
from serverlab.hdrdump import DumpError, ProcessDump, read_dumps
from serverlab.histograms import latency_summary, merge_histograms
from serverlab.load import LOAD_ENV, Load
from serverlab.records import LocustFigures, OpenLoad, Timeline
from serverlab.requestmix import RequestWorkload
from serverlab.stats import StatsError
from serverlab.terms import (HDR_DIR_ENV, MAX_REQUESTS_OPTION, OPEN_RATE_OPTION, REQUEST_HEADERS,
                             SERVER_CLOSES_ENV, WARMUP_OPTION, Mode, WorkloadSpec)

#: Locust's own warning when a process is CPU-bound (its figures then measure Locust).
LOCUST_CPU_WARNING = re.compile(r"CPU usage above \d+%")
#: A load-generator process using this share of a core or more is saturated.
SATURATION_SHARE = 0.9
#: Open model: the generator "fell behind" when more than this share of its sends
#: left over :data:`serverlab.terms.LATE_SEND_S` after their scheduled time. Single
#: hiccups of tens of ms are normal on a shared core and are already inside the
#: latencies, which are measured from the intended send time.
FELL_BEHIND_LATE_SHARE = 0.05


class LoadError(LabError):
    """The load generator failed, or left no measurements behind."""


@dataclass(frozen=True)
class LoadPlan:
    """One Locust run: what to send, to where, for how long.

    :param workload: the workload (its user class and parameter options), or declared requests.
    :param params: the workload's parameters.
    :param load: the mode, level, users and Locust processes (:class:`~serverlab.load.Load`).
    :param duration_s: measured seconds (closed/open) or time cap (requests).
    :param warmup_s: discarded seconds before the measured period.
    :param server_closes: the server closes every connection after its response (no
        keep-alive): declared requests then send ``Connection: close`` (see
        :data:`serverlab.terms.SERVER_CLOSES_ENV`).
    """

    workload: WorkloadSpec | RequestWorkload
    params: dict[str, int]
    load: Load
    duration_s: float
    warmup_s: float
    server_closes: bool = False

    @property
    def mode(self) -> Mode:
        """The load model (the :attr:`load`'s)."""
        return self.load.mode

    @property
    def run_time_s(self) -> int:
        """Locust's ``--run-time`` in whole seconds (warm-up included, rounded up)."""
        return int(math.ceil(self.warmup_s + self.duration_s))

    def locust_args(self, locustfile: str, host: str, out_dir: str) -> list[str]:
        """Return the full ``locust ...`` argv for this plan.

        :param locustfile: path of the locustfile as the generator sees it.
        :param host: base URL of the server as the generator sees it.
        :param out_dir: folder (as the generator sees it) for CSV/HTML output.
        """
        load = self.load
        users = load.locust_users
        args = [
            "locust", "-f", locustfile, "--headless", "--only-summary",
            "-u", str(users), "-r", str(users), "--run-time", f"{self.run_time_s}s",
            "--stop-timeout", "5", "--host", host,
            "--csv", f"{out_dir}/locust", "--html", f"{out_dir}/locust.html",
        ]
        if load.processes > 1:
            args += ["--processes", str(load.processes)]
        if self.warmup_s > 0:
            args += [WARMUP_OPTION, str(self.warmup_s)]
        if load.max_requests:
            args += [MAX_REQUESTS_OPTION, str(load.max_requests)]
        if load.open_rate:
            args += [OPEN_RATE_OPTION, str(load.level)]
        return args + self.workload.locust_args(self.params)

    def environment(self, hdr_dir: str) -> dict[str, str]:
        """Environment variables for the Locust process(es): the dump folder, the load
        (:data:`~serverlab.load.LOAD_ENV`), and declared requests' settings."""
        env = {HDR_DIR_ENV: hdr_dir, LOAD_ENV: self.load.to_json()}
        if isinstance(self.workload, RequestWorkload):
            env.update(self.workload.environment())  # the declared requests this cell sends
            if self.server_closes:
                env[SERVER_CLOSES_ENV] = "1"
        return env


@dataclass(frozen=True)
class LoadOutcome:
    """What one Locust run measured, merged over its processes.

    :param requests: responses in the measured window; :param failures: of them, failed.
    :param duration_s: measured window (seconds): warm-up end to last response.
    :param window: ``(start, end)`` Unix seconds of the measured window.
    :param histogram: merged HDR histogram of latencies (µs), base64.
    :param latency_us: percentiles (keys from :func:`serverlab.terms.percentile_key`), max, mean (µs).
    :param loadgen_cpu_s: CPU seconds all Locust processes used in the window.
    :param busiest_process_share: the highest CPU share of one core any process used.
    :param cpu_warning: Locust printed its "CPU usage above 90%" warning.
    :param total_time_s: requests mode: first send to last response (seconds).
    :param open_load: open mode: sent, late sends, max lag (ms), whether it fell behind (:class:`~serverlab.records.OpenLoad`).
    :param locust: Locust's own aggregate row (:class:`~serverlab.records.LocustFigures`), ``None`` if absent.
    :param window_end: Unix seconds the last Locust process stopped recording (its test
        stop): well after the last response when the server stopped answering.
    :param unanswered: requests sent (warm-up included) that had no answer when Locust
        stopped, summed over processes: a server that hangs leaves them.
    :param rps_trend: relative change of throughput from the first to the last third
        of the measured period (``0.15`` = 15% higher at the end), ``None`` if under 6 s;
        a large value means the warm-up was too short (or the server degraded).
    :param timeline: per second from the start of the warm-up, merged over processes
        (:class:`~serverlab.records.Timeline`, see :func:`merge_timelines`), or ``None`` when no process recorded one.
    """

    requests: int
    failures: int
    duration_s: float
    window: tuple[float, float]
    histogram: str | None
    latency_us: dict[str, float]
    loadgen_cpu_s: float
    busiest_process_share: float
    cpu_warning: bool
    total_time_s: float | None
    open_load: OpenLoad | None
    locust: LocustFigures | None
    rps_trend: float | None = None
    unanswered: int = 0
    window_end: float = 0.0
    timeline: Timeline | None = None

    @property
    def rps(self) -> float:
        """Responses per second over the measured window."""
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0


def throughput_trend(per_second: list[int]) -> float | None:
    """Relative change of mean responses/s between the first and last thirds of a period.

    :param per_second: responses completed in each whole second of the measured
        period (the last, partial second is dropped).
    :return: ``(last - first) / first``, or ``None`` with fewer than 6 whole seconds.
    """
    whole = per_second[:-1]
    if len(whole) < 6:
        return None
    third = len(whole) // 3
    first, last = sum(whole[:third]) / third, sum(whole[-third:]) / third
    return (last - first) / first if first > 0 else None


def merge_timelines(dumps: Sequence[ProcessDump]) -> Timeline | None:
    """Merge the per-second timelines of several Locust processes.

    Each process counts responses and keeps a small HDR histogram per second from
    the start of its test (warm-up included). Processes are aligned on the earliest
    start (to the nearest second); counts add up and histograms merge exactly, so the
    p99 of a second is the p99 of every response that ended in it.

    :param dumps: the processes' dumps (their :attr:`~serverlab.hdrdump.ProcessDump.timeline`).
    :return: the merged :class:`~serverlab.records.Timeline` (1 s intervals, index 0 = the first
        second of the warm-up), or ``None`` when no process recorded a timeline.
    :raises LoadError: if a per-second histogram cannot be decoded.
    """
    from hdrh.histogram import HdrHistogram

    timelines = [d.timeline for d in dumps if d.timeline is not None and d.timeline.responses]
    if not timelines:
        return None
    t0 = min(t.start_at for t in timelines)
    length = max(int(round(t.start_at - t0)) + len(t.responses) for t in timelines)
    counts = [0] * length
    hists: list[Any] = [None] * length
    for t in timelines:
        offset = int(round(t.start_at - t0))
        for i, count in enumerate(t.responses):
            counts[offset + i] += count
        for i, text in enumerate(t.histograms):
            if not text or offset + i >= length:
                continue
            try:
                hist = HdrHistogram.decode(text)
            except Exception as err:  # hdrh raises bare ValueError/zlib.error
                raise LoadError(f"a per-second histogram cannot be decoded: {err}") from None
            if hists[offset + i] is None:
                hists[offset + i] = hist
            else:
                hists[offset + i].add(hist)
    ends = [t.warmup_end_at for t in timelines if t.warmup_end_at]
    return Timeline(
        interval_s=1.0, warmup_s=round(min(ends) - t0, 3) if ends else 0.0, rps=tuple(counts),
        p99_us=tuple(float(h.get_value_at_percentile(99.0)) if h is not None and h.get_total_count() else None
                     for h in hists))


def parse_locust_csv(path: Path) -> LocustFigures | None:
    """Read the ``Aggregated`` row of Locust's ``*_stats.csv``.

    :return: its :class:`~serverlab.records.LocustFigures` (counts, RPS, ms), or ``None`` when the
        file is missing or has no aggregated row.
    """
    try:
        with Path(path).open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except OSError:
        return None
    for row in rows:
        if row.get("Name") == "Aggregated":
            def num(key: str) -> float:
                try:
                    return float(row.get(key) or 0)
                except ValueError:
                    return 0.0
            return LocustFigures(
                requests=num("Request Count"), failures=num("Failure Count"), rps=num("Requests/s"),
                avg_ms=num("Average Response Time"), p50_ms=num("50%"), p95_ms=num("95%"), p99_ms=num("99%"),
                max_ms=num("Max Response Time"))
    return None


def read_outcome(out_dir: Path, plan: LoadPlan, log_text: str = "") -> LoadOutcome:
    """Merge the ``hdr-*.json`` files Locust left in ``out_dir`` (:func:`serverlab.hdrdump.read_dumps`) into one outcome.

    :raises LoadError: if no process recorded anything (the server never answered), or a dump is unreadable.
    """
    try:
        dumps = read_dumps(out_dir)
    except DumpError as err:
        raise LoadError(f"a Locust process left an unreadable dump: {err}") from None
    if not dumps:
        tail = "\n".join(log_text.strip().splitlines()[-5:])
        raise LoadError(f"Locust recorded no requests{': ' + tail if tail else ''}")
    try:
        merged = merge_histograms(dump.histogram for dump in dumps)
    except StatsError as err:
        raise LoadError(f"a Locust process left an unreadable histogram: {err}") from None
    requests = sum(d.requests for d in dumps)
    failures = sum(d.failures for d in dumps)
    start = min(d.window_start_at for d in dumps)
    end = max(d.last_response_at or d.window_end_at for d in dumps)
    duration = max(end - start, 1e-9)
    cpu = sum(d.cpu_seconds for d in dumps)
    share = max(d.cpu_seconds / max(d.window_end_at - d.window_start_at, 1e-9) for d in dumps)
    total_time = None
    if plan.mode == Mode.REQUESTS:
        first = min(d.first_send_at for d in dumps if d.first_send_at)
        total_time = end - first
    open_load = None
    if plan.mode == Mode.OPEN:
        sent = sum(d.sent for d in dumps)
        late = sum(d.late_sends for d in dumps)
        open_load = OpenLoad(
            target_rps=plan.load.level, sent=sent, late_sends=late, max_lag_ms=max(d.max_lag_ms for d in dumps),
            fell_behind=bool(sent and late / sent > FELL_BEHIND_LATE_SHARE), achieved_send_rps=sent / duration)
    seconds = max((len(d.responses_per_second) for d in dumps), default=0)
    per_second = [sum(d.responses_per_second[i] if i < len(d.responses_per_second) else 0 for d in dumps)
                  for i in range(seconds)]
    return LoadOutcome(
        rps_trend=throughput_trend(per_second), unanswered=sum(d.unanswered for d in dumps),
        window_end=max(d.window_end_at for d in dumps),
        timeline=merge_timelines(dumps),
        requests=requests, failures=failures, duration_s=duration, window=(start, end),
        histogram=merged.encode().decode("ascii") if requests else None,
        latency_us=latency_summary(merged), loadgen_cpu_s=cpu, busiest_process_share=share,
        cpu_warning=bool(LOCUST_CPU_WARNING.search(log_text)), total_time_s=total_time,
        open_load=open_load, locust=parse_locust_csv(Path(out_dir) / "locust_stats.csv"),
    )


_WRK_RPS = re.compile(r"Requests/sec:\s+([0-9.]+)")


def parse_wrk(output: str) -> float:
    """Return the ``Requests/sec`` figure of wrk's output.

    :raises LoadError: if wrk printed none (it failed to connect or was not installed).
    """
    match = _WRK_RPS.search(output)
    if not match:
        raise LoadError(f"wrk printed no Requests/sec: {output.strip()[-300:]!r}")
    return float(match.group(1))


def wrk_args(url: str, connections: int, duration_s: float, threads: int = 1, headers: Sequence[str] = ()) -> list[str]:
    """Return a ``wrk`` argv: ``threads`` threads, ``connections`` open connections, the lab's
    :data:`~serverlab.terms.REQUEST_HEADERS` (as the locustfile sends them).

    :param headers: more header arguments before the URL (a declared request's), e.g. ``["-H", "Accept: text/html"]``.
    """
    headers = [*(arg for name, value in REQUEST_HEADERS.items() for arg in ("-H", f"{name}: {value}")), *headers]
    return ["wrk", "-t", str(threads), "-c", str(max(connections, threads)), "-d", f"{int(duration_s)}s", *headers, url]
