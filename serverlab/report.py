"""Reports: a pure function of results files.

:func:`aggregate` turns the :class:`~serverlab.results.Cell` rows of a run into one
:class:`Row` per (variant, workload, mode, level) over its repetitions; every
format (``summary.md``, ``index.html``, ``report.json``) and every chart is
rendered from those rows, so they always agree. :func:`write_report` does all of
it for results files; :func:`compare` compares two runs.

Units: rows keep latency in microseconds (``_us``), times in seconds (``_s``), CPU
per request in milliseconds (``_ms``), memory in bytes, rates in RPS; tables show
latency in milliseconds.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import statistics
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import matplotlib

matplotlib.use("Agg")

import jinja2  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator  # noqa: E402

from serverlab import LabError, __version__  # noqa: E402
from serverlab import bottleneck as _bottleneck  # noqa: E402
from serverlab import verdict as _verdict  # noqa: E402
from serverlab.findings import (  # noqa: E402
    CalibrationFailed,
    CalibrationLow,
    FailedRequests,
    FellBehind,
    Finding,
    FindingKind,
    GeneratorSaturated,
    HistogramsUnmerged,
    Interference,
    Note,
    UIMeasured,
    Unanswered,
    Unstable,
    WarmupTrend,
)
from serverlab.interference import describe_probe  # noqa: E402
from serverlab.results import MODES, Cell, RunHeader, read_results  # noqa: E402
from serverlab.stats import (  # noqa: E402
    NO_CI_NOTE,
    NO_DIFFERENCE,
    INSTABILITY_THRESHOLD,
    Estimate,
    StatsError,
    compare_samples,
    format_estimate,
    format_rps,
    latency_summary,
    median_ci,
    merge_histograms,
    percentile_distribution,
    spread,
)

#: Default latency bound of open-mode "sustainable throughput" (ms); an experiment may set ``p99_bound_ms``.
DEFAULT_P99_BOUND_MS = 100.0
#: Locust/wrk RPS ratio below which Locust, not the server, may be the limit.
CALIBRATION_MIN_RATIO = 0.9
#: Which mode decides a workload's verdict when it was measured in several.
VERDICT_MODE_PREFERENCE = ("closed", "requests", "open")
#: File names :func:`write_report` writes.
REPORT_FILES = {"html": "index.html", "markdown": "summary.md", "json": "report.json"}
#: Percentiles shown from the merged HDR histograms in tables.
TABLE_PERCENTILES = ("p50", "p99", "p99.9")

_TEMPLATES = Path(__file__).parent / "templates"
_LEVEL_NAMES = {"closed": "users", "open": "target RPS", "requests": "requests"}
_WORKLOAD_PRINCIPLES = {
    "io": "Concurrency slots matter: an I/O wait releases the GIL, so threads and greenlets help.",
    "cpu": ("CPU-bound work holds the GIL: threads in one process add no throughput; extra processes "
            "help only as far as the CPU budget allows (server_cpus={cpus})."),
    "hello": ("Each request does almost no work, so per-request overhead dominates: HTTP parsing in the "
              "server and, without keep-alive, a new TCP connection per request."),
    "json": ("Each request does little work (serializing a small JSON document), so per-request overhead "
             "dominates: HTTP parsing and, without keep-alive, a new TCP connection per request."),
    "mixed": ("A mix of CPU and I/O work: concurrency slots (threads, greenlets) help with the I/O share, "
              "extra processes with the CPU share, within the CPU budget (server_cpus={cpus})."),
}


class ReportError(LabError):
    """Results cannot be reported: no cells, or files of different experiments or schemas."""


# --------------------------------------------------------------------------- rows


@dataclass(frozen=True)
class FailedCell:
    """A cell that was not measured (status ``failed`` or ``unverified``).

    :param cell_id: ``"<variant>/<workload>/<level>/r<repetition>"``.
    :param status: ``"failed"`` or ``"unverified"``.
    :param error: why, as the runner recorded it.
    """

    cell_id: str
    status: str
    error: str


@dataclass(frozen=True)
class RowFinding:
    """A finding about a row: one repetition's (``repetition`` set) or the row's own (``None``).

    :param finding: the finding (:mod:`serverlab.findings`).
    :param repetition: the repetition whose cell recorded it; ``None`` for a finding about
        all repetitions (instability, saturation, calibration, interference).
    """

    finding: Finding
    repetition: int | None = None


@dataclass(frozen=True)
class Row:
    """One (variant, workload, mode, level) over its repetitions: what every report shows.

    Only cells with status ``ok`` are aggregated; the others are listed in
    :attr:`failed_cells` with their error.

    :param variant: server variant name.
    :param workload: workload name.
    :param mode: ``closed``, ``open`` or ``requests``.
    :param level: users (closed), target RPS (open) or request count (requests).
    :param users: concurrent users (open mode: max in flight).
    :param workload_params: the workload's request parameters.
    :param config: the variant's effective configuration (``model``, ``workers``,
        ``threads``, ``keep_alive``, ``server_cpus``, ...).
    :param repetitions: cells seen for this key (ok or not).
    :param repetitions_ok: cells with status ``ok``.
    :param rps: median RPS over ok repetitions with its 95% CI; ``None`` if none ok.
    :param p50_us: median over repetitions of each repetition's p50 (µs), with CI.
    :param p99_us: median over repetitions of each repetition's p99 (µs), with CI.
    :param hdr_us: percentiles of the merged HDR histogram of all ok repetitions
        (µs): ``p50``, ``p90``, ``p95``, ``p99``, ``p99.9``, ``max``, ``mean``.
    :param hdr_count: responses recorded in the merged histogram.
    :param latency_distribution: ``((percentile, µs), ...)`` of the merged histogram
        for the percentile-distribution plot.
    :param requests: responses in the measured periods, summed over ok repetitions.
    :param failures: failed requests, summed over ok repetitions.
    :param failure_ratio: ``failures / requests`` (0.0 when nothing was measured).
    :param cpu_ms_per_request: median server CPU milliseconds per request, with CI.
    :param peak_memory_bytes: highest server peak memory over repetitions (bytes).
    :param loadgen_saturated: any repetition's load generator was saturated.
    :param calibration: ``{"locust_rps", "wrk_rps", "ratio"}`` (medians) when calibrated with wrk.
    :param total_time_s: requests mode: median time to complete all requests (s), with CI.
    :param open_load: open mode: ``{"target_rps", "achieved_rps", "sent", "late_sends",
        "max_lag_ms", "fell_behind"}`` (sums, maxima, any) over repetitions.
    :param findings: the repetitions' findings (each with its repetition) and the row's own
        (instability, saturation, calibration, interference), as data; :attr:`warnings` words them.
    :param failed_cells: the cells of this key that were not measured, with why.
    :param bottleneck: what limited the repetitions (:func:`serverlab.bottleneck.summarize`):
        ``{"class", "counts", "server_utilization", "generator_utilization", "interference_share"}``.
    :param cost_capacity_rps: capacity implied by CPU cost, ``server_cpus ÷ CPU s per request``
        per repetition (RPS), median with 95% CI (:func:`serverlab.verdict.cost_capacity`).
    :param timelines: the ok repetitions' per-second timelines (see
        :attr:`serverlab.results.Cell.timeline`), in repetition order.
    """

    variant: str
    workload: str
    mode: str
    level: int
    users: int
    workload_params: dict[str, Any]
    config: dict[str, Any]
    repetitions: int
    repetitions_ok: int
    rps: Estimate | None
    p50_us: Estimate | None
    p99_us: Estimate | None
    hdr_us: dict[str, float]
    hdr_count: int
    latency_distribution: tuple[tuple[float, float], ...]
    requests: int
    failures: int
    failure_ratio: float
    cpu_ms_per_request: Estimate | None
    peak_memory_bytes: int | None
    loadgen_saturated: bool
    calibration: dict[str, float] | None
    total_time_s: Estimate | None
    open_load: dict[str, Any] | None
    findings: tuple[RowFinding, ...] = ()
    failed_cells: tuple[FailedCell, ...] = ()
    bottleneck: dict[str, Any] | None = None
    cost_capacity_rps: Estimate | None = None
    timelines: tuple[dict[str, Any], ...] = ()

    @property
    def key(self) -> tuple[str, str, str, int]:
        """(variant, workload, mode, level), as :attr:`serverlab.results.Cell.key`."""
        return (self.variant, self.workload, self.mode, self.level)

    @property
    def warnings(self) -> tuple[str, ...]:
        """The findings as plain-language warnings, each naming this row (and repetition), without repeats."""
        return tuple(dict.fromkeys(warning(self.label, f) for f in self.findings))

    @property
    def failed(self) -> bool:
        """No repetition of this key was measured."""
        return self.repetitions_ok == 0

    @property
    def clean(self) -> bool:
        """Measured, with no failed request and no failed repetition."""
        return not self.failed and self.failures == 0 and not self.failed_cells

    @property
    def label(self) -> str:
        """E.g. ``"gunicorn-sync / hello / closed / 64 users"``."""
        return f"{self.variant} / {self.workload} / {self.mode} / {_level_text(self.mode, self.level)}"


def _level_text(mode: str, level: int) -> str:
    return f"{level} {_LEVEL_NAMES.get(mode, 'level')}"


def _estimate(values: Sequence[float]) -> Estimate | None:
    return median_ci(values) if values else None


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def _aggregate_key(cells: list[Cell]) -> Row:
    cells = sorted(cells, key=lambda c: (c.repetition, c.run_id))
    ok = [c for c in cells if c.status == "ok"]
    first = ok[0] if ok else cells[0]
    variant, workload, mode, level = first.key
    found: list[RowFinding] = [RowFinding(f, cell.repetition) for cell in ok for f in cell.findings]

    rps_values = [c.rps for c in ok]
    try:
        hist = merge_histograms(c.hdr for c in ok)
        hdr_us = latency_summary(hist)
        hdr_count = int(hist.get_total_count())
        distribution = tuple(percentile_distribution(hist))
    except StatsError as err:
        found.append(RowFinding(HistogramsUnmerged(str(err))))
        hdr_us, hdr_count, distribution = {}, 0, ()
    requests = sum(c.requests for c in ok)
    failures = sum(c.failures for c in ok)

    value = spread(rps_values)
    if value is not None and value > INSTABILITY_THRESHOLD:
        found.append(RowFinding(Unstable(value, len(rps_values), INSTABILITY_THRESHOLD)))
    saturated = any(c.loadgen_saturated for c in ok)
    if saturated:
        shares = [c.loadgen_busiest_share for c in ok if c.loadgen_saturated and c.loadgen_busiest_share is not None]
        found.append(RowFinding(GeneratorSaturated(max(shares) if shares else None)))

    calibration = None
    for cell in ok:
        if cell.calibration and cell.calibration.note:
            found.append(RowFinding(CalibrationFailed(cell.calibration.note)))
    calibrated = [c for c in ok if c.calibration and c.calibration.measured]
    if calibrated:
        calibration = {
            "locust_rps": _median([c.rps for c in calibrated]),
            "wrk_rps": _median([float(c.calibration.wrk_rps) for c in calibrated]),  # type: ignore[union-attr,arg-type]
            "ratio": _median([float(c.calibration.ratio) for c in calibrated]),  # type: ignore[union-attr,arg-type]
        }
        if calibration["ratio"] < CALIBRATION_MIN_RATIO:
            found.append(RowFinding(CalibrationLow(calibration["ratio"], CALIBRATION_MIN_RATIO)))

    open_load = None
    opened = [c for c in ok if c.open_load]
    if opened:
        loads = [c.open_load or {} for c in opened]
        open_load = {
            "target_rps": loads[0].get("target_rps", level),
            "achieved_rps": _median([c.rps for c in opened]),
            "sent": sum(int(d.get("sent", 0)) for d in loads),
            "late_sends": sum(int(d.get("late_sends", 0)) for d in loads),
            "max_lag_ms": max(float(d.get("max_lag_ms", 0.0)) for d in loads),
            "fell_behind": any(bool(d.get("fell_behind")) for d in loads),
        }

    summary = _bottleneck.summarize(ok)
    if summary and summary["class"] == "interference":
        found.append(RowFinding(Interference(summary["interference_share"] or 0)))
    try:
        server_cpus = float(first.config.get("server_cpus") or 0)
    except (TypeError, ValueError):
        server_cpus = 0.0
    capacity = _verdict.cost_capacity([c.cpu_ms_per_request for c in ok if c.cpu_ms_per_request], server_cpus) \
        if server_cpus > 0 else None
    memory = [c.server_peak_memory_bytes for c in ok if c.server_peak_memory_bytes is not None]
    return Row(
        variant=variant, workload=workload, mode=mode, level=level, users=first.users,
        workload_params=dict(first.workload_params), config=dict(first.config),
        repetitions=len(cells), repetitions_ok=len(ok),
        rps=_estimate(rps_values),
        p50_us=_estimate([c.latency_us["p50"] for c in ok if "p50" in c.latency_us]),
        p99_us=_estimate([c.latency_us["p99"] for c in ok if "p99" in c.latency_us]),
        hdr_us=hdr_us, hdr_count=hdr_count, latency_distribution=distribution,
        requests=requests, failures=failures,
        failure_ratio=failures / requests if requests else 0.0,
        cpu_ms_per_request=_estimate([c.cpu_ms_per_request for c in ok if c.cpu_ms_per_request is not None]),
        peak_memory_bytes=max(memory) if memory else None,
        loadgen_saturated=saturated, calibration=calibration,
        total_time_s=_estimate([c.total_time_s for c in ok if c.total_time_s is not None]),
        open_load=open_load, findings=tuple(found),
        failed_cells=tuple(FailedCell(c.cell_id, c.status, c.error or "") for c in cells if c.status != "ok"),
        bottleneck=summary, cost_capacity_rps=capacity,
        timelines=tuple(c.timeline for c in ok if c.timeline),
    )


def _names(value: Any) -> list[str]:
    """Names from an experiment field: a list of strings or of dicts with ``name``."""
    if not isinstance(value, (list, tuple)):
        return []
    out = []
    for item in value:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict) and isinstance(item.get("name"), str):
            out.append(item["name"])
    return out


def _order(preferred: list[str], name: str) -> tuple[int, str]:
    return (preferred.index(name), "") if name in preferred else (len(preferred), name)


def aggregate(header: RunHeader, cells: Iterable[Cell]) -> list[Row]:
    """Aggregate cells into one :class:`Row` per (variant, workload, mode, level).

    Repetitions are combined by their median with a 95% bootstrap CI (see
    :func:`serverlab.stats.median_ci`); latency percentiles additionally come from
    the merged HDR histograms of all ok repetitions. Cells whose status is not
    ``ok`` are not averaged in; they are kept in :attr:`Row.failed_cells`, and a
    key whose every repetition failed still gets a row (:attr:`Row.failed`).

    :param header: the run header (its experiment's ``servers`` (or ``variants``) and
        ``workloads`` lists, if present, give the row order; otherwise alphabetical).
    :param cells: the run's cells; the same (run_id, cell_id) twice counts once.
    :return: rows ordered by workload, mode, variant, level.
    """
    unique: dict[tuple[str, str], Cell] = {}
    for cell in cells:
        unique[(cell.run_id, cell.cell_id)] = cell
    groups: dict[tuple[str, str, str, int], list[Cell]] = defaultdict(list)
    for cell in unique.values():
        groups[cell.key].append(cell)
    variants = _names(header.experiment.get("servers")) or _names(header.experiment.get("variants"))
    workloads = _names(header.experiment.get("workloads"))
    rows = [_aggregate_key(group) for group in groups.values()]
    rows.sort(key=lambda r: (_order(workloads, r.workload), MODES.index(r.mode),
                             _order(variants, r.variant), r.level))
    return rows


# --------------------------------------------------------------------------- sentences

#: The sentence of a :class:`~serverlab.findings.UIMeasured` finding.
UI_MEASURED_SENTENCE = ("measured from the web UI: server CPU and memory are not recorded there, so a "
                        "'below-saturation' class only says Locust was not the limit")


def _saturated(f: GeneratorSaturated, cell: bool) -> str:
    if not cell:
        return ("the load generator was saturated (CPU at its budget), so this figure may measure Locust rather "
                "than the server; give the load generator more CPUs or more processes.")
    return (f"load generator saturated ({f.busiest_share or 0:.0%} of a core"
            f"{', Locust warned of high CPU' if f.cpu_warning else ''}): this figure measures Locust, not the server; "
            "raise budget.loadgen_processes or give the generator more CPUs")


def _interference(f: Interference, cell: bool) -> str:
    if not cell or f.threshold is None:
        return (f"other programs used up to {f.share:.0%} of the lab's CPUs during this cell (interference); it is "
                f"left out of verdicts. Rerun on a quiet machine or with --retry-busy N.")
    return (f"other programs used {f.share:.0%} of the lab's CPUs during the window (interference; threshold "
            f"{f.threshold:.0%}): this figure is not the server's alone; rerun on a quiet machine or with --retry-busy N")


#: One sentence per finding kind: ``(finding, about_one_cell) -> text``.
SENTENCES: dict[FindingKind, Callable[[Any, bool], str]] = {
    FindingKind.NOTE: lambda f, _: f.text,
    FindingKind.GENERATOR_SATURATED: _saturated,
    FindingKind.WARMUP_TREND: lambda f, _: (
        f"throughput {'rose' if f.rps_trend > 0 else 'fell'} {abs(f.rps_trend):.0%} from the first to the last third "
        "of the measured period: a warm-up trend (or a degrading server); raise warmup or duration"),
    FindingKind.INTERFERENCE: _interference,
    FindingKind.UNANSWERED: lambda f, _: f"{f.count} request(s) sent but not answered when Locust stopped",
    FindingKind.FAILED_REQUESTS: lambda f, _: f"{f.failures} of {f.requests} requests failed",
    FindingKind.FELL_BEHIND: lambda f, _: (
        f"the generator fell behind its schedule: {f.late_sends} late sends, max lag {f.max_lag_ms:.1f} ms"),
    FindingKind.UI_MEASURED: lambda f, _: UI_MEASURED_SENTENCE,
    FindingKind.UNSTABLE: lambda f, _: (
        f"RPS of the {f.repetitions} repetitions spread by {f.spread:.1%} of the median (more than "
        f"{f.threshold:.0%}), so the result is unstable; run more repetitions or a longer duration; close other programs."),
    FindingKind.CALIBRATION_FAILED: lambda f, _: f"calibration: {f.note}",
    FindingKind.CALIBRATION_LOW: lambda f, _: (
        f"Locust reached only {f.ratio:.0%} of wrk's RPS (below {f.threshold:.0%}): Locust, not the server, "
        f"may be the limit."),
    FindingKind.HISTOGRAMS_UNMERGED: lambda f, _: (
        f"latency histograms could not be merged ({f.error}); HDR percentiles are missing."),
}

#: The short form of some kinds in a table's notes column (``None``: no note).
NOTES: dict[FindingKind, Callable[[Any, Row], str | None]] = {
    FindingKind.UNSTABLE: lambda f, row: f"unstable: repetitions spread {f.spread:.1%}",
    FindingKind.GENERATOR_SATURATED: lambda f, row: (
        "load generator saturated" if (row.bottleneck or {}).get("class") != "generator-bound" else None),
    FindingKind.CALIBRATION_LOW: lambda f, row: f"Locust/wrk {f.ratio:.2f}",
}


def sentence(finding: Finding, about_one_cell: bool = True) -> str:
    """A finding in words (without naming its row).

    :param finding: any finding of :mod:`serverlab.findings`.
    :param about_one_cell: it is one repetition's (``True``) or a whole row's; saturation
        and interference are worded differently for the two.
    :return: the sentence.
    :raises KeyError: a kind without a sentence (every :class:`~serverlab.findings.FindingKind` has one).
    """
    return SENTENCES[finding.kind](finding, about_one_cell)


def warning(label: str, item: RowFinding) -> str:
    """A row's finding as a warning naming the row: ``"<label> (repetition N): ..."`` or ``"<label>: ..."``.

    :param label: :attr:`Row.label`.
    :param item: the finding and its repetition (``None``: about the whole row).
    :return: the warning text.
    """
    if item.repetition is None:
        return f"{label}: {sentence(item.finding, about_one_cell=False)}"
    return f"{label} (repetition {item.repetition}): {sentence(item.finding)}"


# --------------------------------------------------------------------------- verdicts


def _model(row: Row) -> str:
    return str(row.config.get("model", "unknown"))


def _int(value: Any, default: int = 1) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _slots(config: dict[str, Any]) -> str:
    """Concurrent requests a variant can hold: ``config["slots"]`` or derived from its model."""
    if config.get("slots") is not None:
        return str(config["slots"])
    workers, threads = _int(config.get("workers")), _int(config.get("threads"))
    if config.get("model") == "gevent" and config.get("connections"):
        return str(workers * _int(config["connections"]))
    if threads == 0:
        return "unbounded"
    return str(workers * threads)


def _best(rows: list[Row], test: Callable[[Row], bool]) -> Row | None:
    chosen = [r for r in rows if test(r) and r.rps is not None]
    return max(chosen, key=lambda r: r.rps.median) if chosen else None  # type: ignore[union-attr]


def _reason(workload: str, rows: list[Row], left_out: Sequence[str] = ()) -> str:
    """A reason a person can check: the workload's principle plus facts from these rows.

    :param rows: the rows whose measured RPS is the server's (the ratios compare them).
    :param left_out: variants whose RPS is not the server's (generator-bound); the ratios
        say they are left out, so "best without keep-alive" never silently skips a faster one.
    """
    cpus = next((r.config.get("server_cpus") for r in rows if r.config.get("server_cpus") is not None), "?")
    principle = _WORKLOAD_PRINCIPLES.get(workload, "").format(cpus=cpus)
    facts: list[str] = []

    def ratio_fact(better: Row | None, base: Row | None, what: str) -> float | None:
        if better is None or base is None or better is base or not base.rps or not better.rps:
            return None
        ratio = better.rps.median / base.rps.median if base.rps.median else math.inf
        facts.append(f"{what}: {better.variant} ({format_rps(better.rps.median)} RPS) did {ratio:.2f}× "
                     f"{base.variant} ({format_rps(base.rps.median)} RPS)")
        return ratio

    one_process = lambda r: _int(r.config.get("workers")) <= 1  # noqa: E731
    single = _best(rows, lambda r: _model(r) == "single")
    concurrent = _best(rows, lambda r: one_process(r) and _model(r) in ("threaded", "gevent", "process-thread"))
    thread_ratio = ratio_fact(concurrent, single, "threads/greenlets in one process vs one thread")
    multi = _best(rows, lambda r: not one_process(r))
    best_one = _best(rows, one_process)
    process_ratio = ratio_fact(multi, best_one, "several processes vs the best single process")
    keep = _best(rows, lambda r: bool(r.config.get("keep_alive")))
    no_keep = _best(rows, lambda r: "keep_alive" in r.config and not r.config.get("keep_alive"))
    ratio_fact(keep, no_keep, "best with keep-alive vs best without")

    if workload == "io" and thread_ratio is not None and thread_ratio < 1.1:
        facts.append("here threads did not help much, so something else (the CPU budget, the load "
                     "generator) bounded throughput")
    if workload == "cpu" and thread_ratio is not None and thread_ratio > 1.1:
        facts.append("threads helped more than the GIL allows for pure CPU work; check the CPU limit "
                     "and whether the workload really is CPU-bound")
    if workload == "cpu" and process_ratio is not None and process_ratio < 1.1:
        facts.append(f"extra processes did not help: with server_cpus={cpus} there is no spare CPU for them")
    text = principle
    if facts:
        among = (f" (Locust RPS, among the variants Locust could load fully; left out, generator-bound: "
                 f"{', '.join(left_out)})" if left_out else "")
        text = (text + " " if text else "") + f"Check{among}: " + "; ".join(facts) + "."
    return text


def proxy_pairs(rows: Iterable[Row]) -> list[tuple[Row, Row]]:
    """Pair each proxied row with the direct row that runs the same app server the same way.

    Same workload, mode and level; same ``server``, ``model``, ``workers`` and ``threads``;
    the direct one has no ``proxy`` (e.g. nginx-gunicorn with gunicorn-gthread).

    :return: ``(proxied, direct)`` pairs; rows without RPS are left out.
    """
    rows = [r for r in rows if r.rps is not None]
    same = lambda r: (r.workload, r.mode, r.level, r.config.get("server"), r.config.get("model"),  # noqa: E731
                      r.config.get("workers"), r.config.get("threads"))
    direct = {same(r): r for r in rows if not r.config.get("proxy")}
    return [(r, direct[same(r)]) for r in rows if r.config.get("proxy") and same(r) in direct]


def proxy_sentence(rows: Sequence[Row]) -> str:
    """What the proxy did, per proxied/direct pair at the highest level both were measured.

    Server CPU per request is compared always (it is the server's cost whatever limited
    the cell); RPS and p99 only when neither row's RPS was Locust's or disturbed by
    other programs (bottleneck class ``generator-bound`` or ``interference``).

    :param rows: one workload's rows in one mode.
    :return: one sentence per pair, or ``""`` without pairs.
    """
    pairs = proxy_pairs(rows)
    if not pairs:
        return ""
    top: dict[str, tuple[Row, Row]] = {}
    for proxied, direct in pairs:
        if proxied.variant not in top or proxied.level > top[proxied.variant][0].level:
            top[proxied.variant] = (proxied, direct)
    parts = []
    for proxied, direct in top.values():
        name = f"{proxied.config.get('proxy')} in front of {direct.config.get('server')}"
        facts = []
        if proxied.cpu_ms_per_request and direct.cpu_ms_per_request and direct.cpu_ms_per_request.median:
            cpu = proxied.cpu_ms_per_request.median / direct.cpu_ms_per_request.median
            facts.append(f"used {cpu:.2f}× the CPU per request ({proxied.cpu_ms_per_request.median:.3f} vs "
                         f"{direct.cpu_ms_per_request.median:.3f} ms, nginx included)")
        unusable = [r.variant for r in (proxied, direct) if (r.bottleneck or {}).get("class") in ("generator-bound", "interference")]
        if unusable:
            facts.append(f"its RPS is not comparable here (Locust or other programs limited {', '.join(unusable)})")
        elif proxied.rps and direct.rps and direct.rps.median:
            ratio = proxied.rps.median / direct.rps.median
            facts.append(f"did {ratio:.2f}× the RPS ({format_rps(proxied.rps.median)} vs {format_rps(direct.rps.median)})"
                         + (f" at p99 {_fmt_ms(proxied.p99_us.median)} vs {_fmt_ms(direct.p99_us.median)} ms"
                            if proxied.p99_us and direct.p99_us else "")
                         + f", so the proxy {'cost' if ratio < 1 else 'gained'} {abs(1 - ratio):.0%} of throughput")
        if facts:
            parts.append(f"Proxy: {name} ({proxied.variant} vs {direct.variant}, {_level_text(proxied.mode, proxied.level)}) "
                         + " and ".join(facts) + ".")
    return " ".join(parts)


def _proxy_table(rows: Sequence[Row]) -> Table | None:
    pairs = proxy_pairs(rows)
    if not pairs:
        return None
    table = Table(["workload", "level", "proxied", "direct", "RPS proxied", "RPS direct", "p99 ms proxied",
                   "p99 ms direct", "CPU ms/req proxied", "CPU ms/req direct", "bottleneck proxied", "bottleneck direct"], [],
                  title="Proxied vs direct (same app-server settings, same CPU budget)")
    for proxied, direct in pairs:
        table.rows.append([
            proxied.workload, _level_text(proxied.mode, proxied.level), proxied.variant, direct.variant,
            format_estimate(proxied.rps, format_rps), format_estimate(direct.rps, format_rps),
            format_estimate(proxied.p99_us, _fmt_ms), format_estimate(direct.p99_us, _fmt_ms),
            format_estimate(proxied.cpu_ms_per_request, lambda v: f"{v:.3f}"),
            format_estimate(direct.cpu_ms_per_request, lambda v: f"{v:.3f}"),
            _bottleneck.describe(proxied.bottleneck), _bottleneck.describe(direct.bottleneck),
        ])
    return table


def _verdict_rate(workload: str, mode: str, rows: list[Row]) -> str:
    """Closed/requests mode: the physics-aware verdict of :func:`serverlab.verdict.rate_verdict`."""
    return _verdict.rate_verdict(workload, mode, rows, _reason, _level_text)


def sustainable_throughput(rows: Iterable[Row], p99_bound_ms: float = DEFAULT_P99_BOUND_MS) -> dict[tuple[str, str], int | None]:
    """Open mode: per (workload, variant), the highest target rate the server sustained.

    A target rate is sustained when the merged p99 is under ``p99_bound_ms``, the
    load generator did not fall behind its schedule (``open_load["fell_behind"]``
    false), and no request or repetition failed (a server answering errors
    quickly is not sustaining the rate).

    :param rows: rows of any modes; only ``open`` rows are used.
    :param p99_bound_ms: the latency bound in milliseconds.
    :return: ``{(workload, variant): target RPS or None when no rate was sustained}``.
    """
    result: dict[tuple[str, str], int | None] = {}
    for row in rows:
        if row.mode != "open":
            continue
        key = (row.workload, row.variant)
        result.setdefault(key, None)
        p99 = row.hdr_us.get("p99")
        fell_behind = bool(row.open_load and row.open_load.get("fell_behind"))
        if row.clean and p99 is not None and p99 / 1000.0 < p99_bound_ms and not fell_behind:
            best = result[key]
            result[key] = row.level if best is None else max(best, row.level)
    return result


def _verdict_open(workload: str, rows: list[Row], p99_bound_ms: float) -> str:
    sustained = {v: t for (w, v), t in sustainable_throughput(rows, p99_bound_ms).items() if w == workload}
    ranked = sorted(((t, v) for v, t in sustained.items() if t is not None), reverse=True)
    if not ranked:
        return (f"No winner (open mode): no variant sustained any target rate with p99 under "
                f"{p99_bound_ms:g} ms, without falling behind and without failures.")
    rate, winner = ranked[0]
    text = (f"{winner} wins (open mode): it sustained {rate} RPS with p99 under {p99_bound_ms:g} ms, "
            f"the highest target rate of any variant")
    if len(ranked) > 1:
        tied = [v for t, v in ranked[1:] if t == rate]
        if tied:
            text += f" (tied with {', '.join(tied)})"
        else:
            text += f"; the runner-up {ranked[1][1]} sustained {ranked[1][0]} RPS"
    text += " (target rates are discrete steps, so this has no confidence interval)."
    best_rows = [r for r in rows if sustained.get(r.variant) is not None and r.level == sustained[r.variant]]
    reason = _reason(workload, best_rows)
    return text + (" " + reason if reason else "")


def verdicts(rows: Sequence[Row], p99_bound_ms: float = DEFAULT_P99_BOUND_MS) -> dict[str, str]:
    """A plain-language verdict per workload.

    Closed and requests modes (:func:`serverlab.verdict.rate_verdict`): at the highest
    load level where some variant had no failed requests or repetitions, variants
    are ordered on the evidence valid for their bottleneck class — measured RPS only
    where Locust was not the limit, wrk's ceiling and CPU-cost capacity (with CIs)
    where it was; cells flagged for interference are left out. A winner is named only
    when it is ahead of every other variant; otherwise the verdict says it cannot
    tell on this machine and what would. A reason drawn from the variants'
    configuration (model, workers, threads, keep-alive) and measured ratios follows.
    When a workload ran in several modes, closed mode decides, then requests, then
    open (whose winner has the highest :func:`sustainable_throughput`).

    :param rows: rows from :func:`aggregate`.
    :param p99_bound_ms: latency bound for open mode (ms).
    :return: ``{workload: verdict}`` in row order.
    """
    by_workload: dict[str, list[Row]] = {}
    for row in rows:
        by_workload.setdefault(row.workload, []).append(row)
    out: dict[str, str] = {}
    for workload, wrows in by_workload.items():
        modes = {r.mode for r in wrows}
        mode = next(m for m in VERDICT_MODE_PREFERENCE if m in modes)
        mrows = [r for r in wrows if r.mode == mode]
        if mode == "open":
            disturbed = [r.variant for r in mrows if (r.bottleneck or {}).get("class") == "interference"]
            out[workload] = _verdict_open(workload, [r for r in mrows if r.variant not in disturbed], p99_bound_ms)
            if disturbed:
                out[workload] += (f" Left out (other programs used the lab's CPUs while they ran: interference): "
                                  f"{', '.join(dict.fromkeys(disturbed))}.")
        else:
            out[workload] = _verdict_rate(workload, mode, mrows)
        proxy = proxy_sentence(mrows)
        if proxy:
            out[workload] += " " + proxy
    return out


# --------------------------------------------------------------------------- formatting


def _fmt_ms(us: float | None) -> str:
    if us is None:
        return "—"
    ms = us / 1000.0
    if ms >= 100:
        return f"{ms:,.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    if ms >= 1:
        return f"{ms:.2f}"
    return f"{ms:.3f}"


def _fmt_s(seconds: float) -> str:
    return f"{seconds:.3g}" if seconds < 100 else f"{seconds:,.0f}"


def _fmt_bytes(value: int | None) -> str:
    if value is None:
        return "—"
    return f"{value / 2**20:,.0f} MiB"


def _fmt_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items())) or "no parameters"


def _workers_threads(config: dict[str, Any]) -> str:
    workers = config.get("workers", "?")
    if config.get("model") == "gevent":
        return f"{workers}×{config.get('connections', '?')} greenlets"
    threads = config.get("threads", "?")
    if threads == 0:
        return f"{workers}×(thread per conn.)"
    return f"{workers}×{threads}"


def _yes_no(value: Any) -> str:
    return "—" if value is None else ("yes" if value else "no")


def _row_notes(row: Row) -> str:
    notes: list[str] = []
    if row.failed:
        errors = "; ".join(f"{f.cell_id}: {f.error}" for f in row.failed_cells)
        notes.append(f"FAILED ({row.failed_cells[0].status}): {errors}")
    elif row.failed_cells:
        errors = "; ".join(f"{f.cell_id}: {f.error}" for f in row.failed_cells)
        notes.append(f"{len(row.failed_cells)} of {row.repetitions} repetitions failed: {errors}")
    if row.rps is not None and row.rps.note:
        notes.append(row.rps.note)
    if row.failures:
        notes.append(f"{row.failure_ratio:.1%} of requests failed")
    for item in row.findings:
        short = NOTES.get(item.finding.kind) if item.repetition is None else None
        note = short(item.finding, row) if short else None
        if note:
            notes.append(note)
    if row.open_load and row.open_load.get("fell_behind"):
        notes.append("load generator fell behind schedule")
    return "; ".join(notes)


# --------------------------------------------------------------------------- document model


@dataclass
class Table:
    """A table every format renders the same way.

    :param headers: column titles.
    :param rows: cell texts (plain text; each renderer escapes for its format).
    :param title: a heading above the table, or ``None``.
    :param intro: paragraphs before the table.
    :param failed_rows: indexes of rows to mark as failed (HTML highlights them).
    """

    headers: list[str]
    rows: list[list[str]]
    title: str | None = None
    intro: list[str] = field(default_factory=list)
    failed_rows: set[int] = field(default_factory=set)


@dataclass
class Chart:
    """A rendered chart.

    :param title: what it shows.
    :param svg: a self-contained ``<svg>`` element generated by matplotlib.
    """

    title: str
    svg: str


@dataclass
class Section:
    """A part of the report: a heading, paragraphs, tables and (HTML only) charts.

    :param title: the heading.
    :param anchor: the HTML id of the section.
    :param paragraphs: plain-text paragraphs under the heading.
    :param tables: the section's tables, in order.
    :param charts: the section's charts (rendered only for HTML).
    """

    title: str
    anchor: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)


@dataclass
class Document:
    """Everything a report shows, already formatted as text, in order.

    :param title: the report's title.
    :param metadata: (label, value) pairs about the run: experiment, backend, machine, limits.
    :param verdicts: (workload, verdict) pairs from :func:`verdicts`.
    :param sections: one per (workload, mode), then the configuration.
    :param warnings: every warning, deduplicated, in row order.
    :param failed: every cell that was not measured, with its error.
    """

    title: str
    metadata: list[tuple[str, str]]
    verdicts: list[tuple[str, str]]
    sections: list[Section]
    warnings: list[str]
    failed: list[FailedCell]


def _metadata(header: RunHeader) -> list[tuple[str, str]]:
    exp, meta = header.experiment, header.metadata
    out: list[tuple[str, str]] = []
    name = exp.get("name", "?")
    out.append(("experiment", f"{name}" + (f": {exp['description']}" if exp.get("description") else "")))
    out.append(("run", header.run_id))
    if meta.get("started_at") is not None:
        try:
            out.append(("started", time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(meta["started_at"])))))
        except (TypeError, ValueError, OverflowError):
            out.append(("started", str(meta["started_at"])))
    for key, label in (("backend", "backend"), ("image", "image"), ("host_cores", "host cores"),
                       ("cpu_model", "CPU model"), ("git_commit", "git commit")):
        if meta.get(key) is not None:
            out.append((label, str(meta[key])))
    unenforced = ("server_cpus", "server_memory") if meta.get("limits_enforced") is False else ()
    limits = [f"{k}={meta[k]}" + (" (not enforced by the local backend)" if k in unenforced else "")
              for k in ("server_cpus", "server_memory", "server_cpuset", "loadgen_cpuset") if meta.get(k) is not None]
    if limits:
        out.append(("limits", ", ".join(limits)))
    if meta.get("loadgen_processes_chosen"):
        out.append(("load generator", str(meta["loadgen_processes_chosen"])))
    if isinstance(meta.get("quietness_probe"), dict):
        out.append(("quietness", describe_probe(meta["quietness_probe"])))
    packages = meta.get("packages")
    if isinstance(packages, dict) and packages:
        out.append(("packages", ", ".join(f"{k} {v}" for k, v in sorted(packages.items()))))
    def scalar(value: Any) -> bool:
        return isinstance(value, (int, float, str, bool))

    def text(value: Any) -> str:
        return f"[{', '.join(map(str, value))}]" if isinstance(value, (list, tuple)) else str(value)

    settings = [f"{k}={text(v)}" for k, v in sorted(exp.items())
                if k not in ("name", "description")
                and (scalar(v) or (isinstance(v, (list, tuple)) and all(scalar(x) for x in v)))]
    if settings:
        out.append(("settings", ", ".join(settings)))
    out.append(("report", f"serverlab {__version__}; medians over repetitions with 95% percentile-bootstrap "
                          f"confidence intervals; latency percentiles from merged HDR histograms"))
    return out


def _main_table(rows: list[Row], mode: str) -> Table:
    level_name = {"closed": "users", "open": "target RPS", "requests": "requests (users)"}[mode]
    headers = ["server", "model", "workers×threads", "keep-alive", level_name, "RPS [95% CI]",
               "p50 ms", "p99 ms", "p99.9 ms", "failures", "CPU ms/req", "bottleneck", "notes"]
    table = Table(headers, [])
    for row in rows:
        level = f"{row.level} ({row.users})" if mode == "requests" else str(row.level)
        if row.failed:
            rps, failures = "failed", "—"
        else:
            rps = format_estimate(row.rps, format_rps)
            failures = f"{row.failures} ({row.failure_ratio:.1%})" if row.failures else "0"
        cpu = f"{row.cpu_ms_per_request.median:.3g}" if row.cpu_ms_per_request else "—"
        if row.failed:
            table.failed_rows.add(len(table.rows))
        table.rows.append([
            row.variant, _model(row), _workers_threads(row.config), _yes_no(row.config.get("keep_alive")),
            level, rps, *(_fmt_ms(row.hdr_us.get(p)) for p in TABLE_PERCENTILES), failures, cpu,
            _bottleneck.describe(row.bottleneck), _row_notes(row),
        ])
    return table


def _requests_table(rows: list[Row], header: RunHeader) -> Table:
    variants = list(dict.fromkeys(r.variant for r in rows))
    levels = sorted({r.level for r in rows})
    by_key = {(r.variant, r.level): r for r in rows}
    table = Table(["requests"] + [f"{v} (s)" for v in variants], [], title="Total time to complete the requests")
    for level in levels:
        line = [str(level)]
        for variant in variants:
            row = by_key.get((variant, level))
            if row is None:
                line.append("—")
            elif row.failed or row.total_time_s is None:
                line.append("failed" if row.failed else "—")
            else:
                line.append(format_estimate(row.total_time_s, _fmt_s))
        table.rows.append(line)
    first = rows[0]
    users = sorted({r.users for r in rows})
    reps = max(r.repetitions for r in rows)
    cpus = first.config.get("server_cpus", header.metadata.get("server_cpus", "?"))
    memory = first.config.get("server_memory", header.metadata.get("server_memory", "?"))
    if header.metadata.get("limits_enforced") is False:
        cpus = memory = "not enforced"
    table.intro.append(
        f"Each cell is the median wall time in seconds to complete that many requests to the "
        f"{first.workload} endpoint ({_fmt_params(first.workload_params)}) with "
        f"{'/'.join(map(str, users))} concurrent Locust users, over {reps} repetition(s), with its 95% "
        f"bootstrap confidence interval in brackets. Server limits: server_cpus={cpus}, "
        f"server_memory={memory}; backend {header.metadata.get('backend', '?')}.")
    top = levels[-1]
    finished = [by_key[(v, top)] for v in variants if (v, top) in by_key and by_key[(v, top)].total_time_s]
    if finished:
        pieces = [f"{r.variant} took {_fmt_s(r.total_time_s.median)} s" for r in finished]  # type: ignore[union-attr]
        table.intro.append(f"For {top} requests: " + ", ".join(pieces) + ".")
    return table


#: The figures Flask threading articles quote: total seconds for N requests to "an app that
#: generated a Fibonacci sequence of 1000 numbers", non-threaded Flask vs Gunicorn
#: "multi-threaded" (no hardware, concurrency or server settings given).
#: Source: the widely copied article summarized in shared/notes/servers-and-load.md.
ARTICLE_TOTAL_TIME_S = {10: (3.25, 2.52), 100: (35.89, 11.61), 1000: (343.74, 96.02)}
_SINGLE_MODELS = ("single",)
_THREAD_MODELS = ("threaded", "gevent")
_PROCESS_MODELS = ("multi-process", "process-thread")


def _article_table(rows: list[Row]) -> Table | None:
    """The Flask-threading-article claims next to this run's measurements (requests mode, cpu)."""
    by_key = {(r.variant, r.level): r for r in rows if not r.failed and r.total_time_s}
    singles = sorted({r.variant for r in rows if r.config.get("model") in _SINGLE_MODELS})
    if rows[0].workload != "cpu" or not singles:
        return None
    baseline = singles[0]
    table = Table(["requests", "article: non-threaded (s)", "article: multi-threaded (s)", "article speed-up",
                   f"{baseline} (s)", "best threaded: speed-up", "best multi-process: speed-up"], [],
                  title="The Flask threading articles' claim, checked")
    verdict_parts: list[str] = []
    for level in sorted({r.level for r in rows}):
        base = by_key.get((baseline, level))
        article = ARTICLE_TOTAL_TIME_S.get(level)
        line = [str(level)]
        line += [f"{article[0]:.2f}", f"{article[1]:.2f}", f"{article[0] / article[1]:.2f}×"] if article else ["—"] * 3
        line.append(_fmt_s(base.total_time_s.median) if base else "—")  # type: ignore[union-attr]
        for models, label in ((_THREAD_MODELS, "threads"), (_PROCESS_MODELS, "processes")):
            candidates = [r for (v, lvl), r in by_key.items() if lvl == level and r.config.get("model") in models]
            best = min(candidates, key=lambda r: r.total_time_s.median, default=None)  # type: ignore[union-attr]
            if best is None or base is None:
                line.append("—")
                continue
            speedup = base.total_time_s.median / best.total_time_s.median  # type: ignore[union-attr]
            line.append(f"{best.variant}: {speedup:.2f}×")
            if article and level == max(ARTICLE_TOTAL_TIME_S):
                verdict_parts.append(f"{label} ({best.variant}) {speedup:.2f}×")
        table.rows.append(line)
    table.intro.append(
        "The articles report total times in seconds for N requests of a 1000-number Fibonacci endpoint, "
        "non-threaded Flask against a 'multi-threaded' Gunicorn, with no hardware, concurrency or settings "
        "given. Their per-request cost (~0.34 s) is ~200× this app's, so compare speed-ups, not seconds.")
    if verdict_parts:
        table.intro.append(
            f"At 1000 requests the articles claim 3.58× from threading; here, against {baseline}: "
            + ", ".join(verdict_parts) + ". Under the GIL a CPU-bound request cannot run on two threads at "
            "once, so a threaded server can only win by overlapping the network and parsing work around the "
            "computation; extra processes can only win up to the CPU budget (server_cpus). A speed-up near "
            "1× for threads disagrees with the articles' claim; one well above 1× means this endpoint's cost "
            "is dominated by per-request overhead rather than by the computation.")
    return table


def _open_tables(rows: list[Row], bound_ms: float) -> list[Table]:
    table = Table(["server", "target RPS", "achieved RPS [95% CI]", "p99 ms", "late sends", "max lag ms",
                   "fell behind", "failures"], [], title="Target vs achieved rate")
    for row in rows:
        load = row.open_load or {}
        if row.failed:
            table.failed_rows.add(len(table.rows))
        table.rows.append([
            row.variant, str(row.level), "failed" if row.failed else format_estimate(row.rps, format_rps),
            _fmt_ms(row.hdr_us.get("p99")), str(load.get("late_sends", "—")),
            f"{load['max_lag_ms']:.1f}" if "max_lag_ms" in load else "—",
            _yes_no(load.get("fell_behind")) if load else "—", str(row.failures),
        ])
    sustained = sustainable_throughput(rows, bound_ms)
    summary = Table(["server", "sustainable RPS"], [], title="Sustainable throughput")
    summary.intro.append(f"The highest target rate whose merged p99 stayed under {bound_ms:g} ms, with the "
                         f"load generator keeping to its schedule and no failed requests.")
    for (workload, variant), rate in sustained.items():
        summary.rows.append([variant, "none sustained" if rate is None else str(rate)])
    return [table, summary]


def _calibration_table(rows: list[Row]) -> Table | None:
    calibrated = [r for r in rows if r.calibration]
    if not calibrated:
        return None
    table = Table(["server", "workload", "level", "Locust RPS", "wrk RPS", "Locust/wrk",
                   "CPU-cost capacity RPS [95% CI]", "bottleneck", ""], [],
                  title="Calibration against wrk")
    table.intro.append(f"wrk, a C load generator, measured each calibrated variant as well. A ratio below "
                       f"{CALIBRATION_MIN_RATIO:g} (marked ⚠) means Locust could not generate the load "
                       f"the server can take, so Locust's figure understates the server. CPU-cost capacity is "
                       f"server_cpus ÷ CPU seconds per request (a second estimate of the ceiling).")
    for row in calibrated:
        cal = row.calibration or {}
        low = cal["ratio"] < CALIBRATION_MIN_RATIO
        table.rows.append([row.variant, row.workload, _level_text(row.mode, row.level),
                           format_rps(cal["locust_rps"]), format_rps(cal["wrk_rps"]), f"{cal['ratio']:.2f}",
                           format_estimate(row.cost_capacity_rps, format_rps), _bottleneck.describe(row.bottleneck),
                           "⚠ below 0.9" if low else ""])
    return table


def _config_table(rows: list[Row]) -> Table:
    seen: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row.variant not in seen or (not seen[row.variant] and row.config):
            seen[row.variant] = row.config
    optional = [key for key in ("proxy", "settings", "description", "command") if any(c.get(key) for c in seen.values())]
    table = Table(["variant", "server", "model", "workers", "threads", "slots", "keep-alive", "server CPUs",
                   "server memory", *optional], [])
    for variant, config in seen.items():
        line = [
            variant, str(config.get("server", "—")), str(config.get("model", "—")),
            str(config.get("workers", "—")), str(config.get("threads", "—")), _slots(config),
            _yes_no(config.get("keep_alive")),
            *(["not enforced", "not enforced"] if config.get("backend") == "local"  # no cgroup: pinning only
              else [str(config.get("server_cpus", "—")), str(config.get("server_memory", "—"))]),
        ]
        for key in optional:
            value = config.get(key)
            if key == "proxy" and value:
                value = f"{value} ({config.get('proxy_protocol')}, {config.get('proxy_workers')} worker(s), same CPU budget)"
            elif key == "settings":
                value = ", ".join(f"{k}={v}" for k, v in (value or {}).items())
            line.append(" ".join(map(str, value)) if isinstance(value, list) else str(value or ""))
        table.rows.append(line)
    return table


def build_document(header: RunHeader, rows: Sequence[Row], verdict_texts: dict[str, str] | None = None,
                   *, charts: bool = False, extra_warnings: Sequence[str] = ()) -> Document:
    """Lay out a report: the text every format shows, in order.

    :param header: the run header (metadata, experiment settings).
    :param rows: rows from :func:`aggregate`.
    :param verdict_texts: from :func:`verdicts`; computed when ``None``.
    :param charts: also render the SVG charts (HTML only; slower).
    :param extra_warnings: warnings about the inputs (e.g. merged files).
    :return: a :class:`Document`.
    """
    rows = list(rows)
    bound = _p99_bound(header)
    if verdict_texts is None:
        verdict_texts = verdicts(rows, bound)
    sections: list[Section] = []
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.workload, row.mode), []).append(row)
    for (workload, mode), grows in groups.items():
        section = Section(f"Workload {workload}: {mode} mode", f"{workload}-{mode}")
        section.paragraphs.append(
            f"Parameters: {_fmt_params(grows[0].workload_params)}. RPS is the median over repetitions with its "
            f"95% bootstrap CI; p50/p99/p99.9 come from the HDR histograms of all repetitions merged; CPU ms/req "
            f"is the median server CPU time per request.")
        section.tables.append(_main_table(grows, mode))
        if mode == "requests":
            section.tables.append(_requests_table(grows, header))
            article = _article_table(grows)
            if article:
                section.tables.append(article)
        if mode == "open":
            section.tables.extend(_open_tables(grows, bound))
        calibration = _calibration_table(grows)
        if calibration:
            section.tables.append(calibration)
        if charts:
            from serverlab.charts import ranking_charts, timeline_charts

            section.charts.extend(ranking_charts(grows))
            section.charts.extend(render_charts(grows))
            section.charts.extend(timeline_charts(grows))
        sections.append(section)
    proxy_table = _proxy_table(rows)
    if proxy_table:
        sections.append(Section("Proxied vs direct", "proxy", tables=[proxy_table], paragraphs=[
            "Each proxied variant runs nginx and the app server in one container (one CPU budget); its direct twin "
            "runs the same app server with the same workers and threads alone. CPU per request includes nginx."]))
    sections.append(Section("Configuration", "configuration", tables=[_config_table(rows)],
                            paragraphs=["The effective configuration of every variant as it ran."]))
    warnings: list[str] = list(dict.fromkeys([*extra_warnings, *(w for r in rows for w in r.warnings)]))
    failed = [f for r in rows for f in r.failed_cells]
    title = f"serverlab report: {header.experiment.get('name', header.run_id)}"
    return Document(title, _metadata(header), list(verdict_texts.items()), sections, warnings, failed)


def _p99_bound(header: RunHeader) -> float:
    try:
        return float(header.experiment.get("p99_bound_ms", DEFAULT_P99_BOUND_MS))
    except (TypeError, ValueError):
        return DEFAULT_P99_BOUND_MS


# --------------------------------------------------------------------------- charts

_PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
            "#7f7f7f", "#bcbd22"]


def _svg(fig: Figure, salt: str) -> str:
    """Render a figure to an inline ``<svg>`` element (text as SVG text in a local sans-serif font, deterministic ids)."""
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": salt, "svg.fonttype": "none"}):
        fig.savefig(buffer, format="svg",
                    metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    text = buffer.getvalue()
    text = text[text.index("<svg"):].strip()
    # matplotlib names every group ("figure_1", "axes_1", ...): keep only the ids something
    # refers to (clip paths, markers; unique per chart through the salt), so that several
    # SVGs in one page do not repeat ids
    referenced = set(re.findall(r"url\(#([^)]+)\)", text)) | set(re.findall(r'href="#([^"]+)"', text))
    return re.sub(r'\sid="([^"]+)"', lambda m: m.group(0) if m.group(1) in referenced else "", text)


def _level_axis(ax: Any, levels: list[int], mode: str) -> None:
    name = {"closed": "concurrent users", "open": "target RPS", "requests": "requests"}[mode]
    ax.set_xlabel(name + (" (log₂ scale)" if len(levels) > 1 else ""))
    if len(levels) > 1 and min(levels) > 0:
        ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(levels))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([str(v) for v in levels])
    ax.grid(True, alpha=0.3)


def _errorbar(ax: Any, points: list[tuple[int, Estimate]], scale: float, **style: Any) -> None:
    xs = [x for x, _ in points]
    ys = [e.median * scale for _, e in points]
    lower = [max(0.0, (e.median - e.low) * scale) if e.low is not None else 0.0 for _, e in points]
    upper = [max(0.0, (e.high - e.median) * scale) if e.high is not None else 0.0 for _, e in points]
    ax.errorbar(xs, ys, yerr=[lower, upper], capsize=3, marker="o", markersize=4, linewidth=1.5, **style)


def _new_figure() -> tuple[Figure, Any]:
    # fixed margins (no tight bbox: that draws twice); the legend sits right of the axes
    fig = Figure(figsize=(7.2, 3.6), dpi=100)
    fig.subplots_adjust(left=0.1, right=0.7, bottom=0.15, top=0.9)
    ax = fig.add_subplot()
    return fig, ax


def _log_y(ax: Any) -> None:
    """A log y axis labelled with plain numbers (1, 10, 100) rather than powers of ten."""
    ax.set_yscale("log")
    plain = FuncFormatter(lambda value, _pos: f"{value:,.4g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(NullFormatter())


def _legend(ax: Any) -> None:
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False, borderaxespad=0.0)


def render_charts(rows: Sequence[Row]) -> list[Chart]:
    """Charts for the rows of one (workload, mode): RPS, p50/p99 latency and CPU ms per
    request against the load level (when there are several levels), and the latency
    percentile distribution at the highest level. One line per variant; error bars are 95% CIs where available.

    :param rows: rows of a single workload and mode.
    :return: :class:`Chart` objects holding inline SVG.
    """
    rows = [r for r in rows if not r.failed]
    if not rows:
        return []
    workload, mode = rows[0].workload, rows[0].mode
    variants = list(dict.fromkeys(r.variant for r in rows))
    colors = {v: _PALETTE[i % len(_PALETTE)] for i, v in enumerate(variants)}
    levels = sorted({r.level for r in rows})
    salt = f"{workload}-{mode}"
    charts: list[Chart] = []

    def series(variant: str, get: Callable[[Row], Estimate | None]) -> list[tuple[int, Estimate]]:
        return [(r.level, e) for r in rows if r.variant == variant and (e := get(r)) is not None]

    def per_variant_chart(get: Callable[[Row], Estimate | None], ylabel: str, title: str, caption: str,
                          suffix: str) -> None:
        """One line per variant of ``get(row)`` against the load level, y from 0."""
        fig, ax = _new_figure()
        for variant in variants:
            points = series(variant, get)
            if points:
                _errorbar(ax, points, 1.0, color=colors[variant], label=variant)
        _level_axis(ax, levels, mode)
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.set_title(f"{workload} ({mode}): {title}")
        _legend(ax)
        charts.append(Chart(f"{workload} ({mode}): {caption}", _svg(fig, f"{salt}-{suffix}")))

    # one load level: lines against the level would be a column of dots; the ranking chart shows it
    if len(levels) > 1:
        per_variant_chart(lambda r: r.rps, "RPS (median, 95% CI)", "throughput", "RPS vs load", "rps")

        fig, ax = _new_figure()
        latencies: list[float] = []
        for variant in variants:
            for key, style in (("p99_us", "-"), ("p50_us", "--")):
                points = series(variant, lambda r, key=key: getattr(r, key))
                if points:
                    _errorbar(ax, points, 1e-3, color=colors[variant], linestyle=style,
                              label=variant if key == "p99_us" else "_nolegend_")
                    latencies.extend(e.median * 1e-3 for _, e in points)
        ax.plot([], [], color="#555", linestyle="-", label="p99 (solid)")
        ax.plot([], [], color="#555", linestyle="--", label="p50 (dashed)")
        _level_axis(ax, levels, mode)
        positive = [v for v in latencies if v > 0]
        if positive and max(positive) / min(positive) > 20:
            _log_y(ax)
        ax.set_ylabel("latency ms (median of repetitions)")
        ax.set_title(f"{workload} ({mode}): p99 solid, p50 dashed")
        _legend(ax)
        charts.append(Chart(f"{workload} ({mode}): p50 and p99 latency vs load", _svg(fig, salt + "-latency")))

        if any(r.cpu_ms_per_request for r in rows):
            per_variant_chart(lambda r: r.cpu_ms_per_request, "server CPU ms per request", "CPU cost per request",
                              "CPU ms per request vs load", "cpu")

    top = max(r.level for r in rows)
    top_rows = [r for r in rows if r.level == top and r.latency_distribution]
    if top_rows:
        fig, ax = _new_figure()
        largest = 10.0
        for row in top_rows:
            xs, ys = [], []
            for p, us in row.latency_distribution:
                x = 1.0 / (1.0 - p / 100.0) if p < 100.0 else max(float(row.hdr_count), 2.0)
                xs.append(x)
                ys.append(us / 1000.0)
            largest = max(largest, xs[-1])
            ax.plot(xs, ys, color=colors[row.variant], label=row.variant, linewidth=1.5)
        ax.set_xscale("log")
        ticks = [t for t in (2, 10, 100, 1000, 10_000, 100_000, 1_000_000) if t <= largest * 1.01]
        labels = {2: "50%", 10: "90%", 100: "99%", 1000: "99.9%", 10_000: "99.99%",
                  100_000: "99.999%", 1_000_000: "99.9999%"}
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([labels[t] for t in ticks])
        ax.set_xlabel("percentile (1/(1−p) scale); last point: max")
        ax.set_ylabel("latency ms")
        _log_y(ax)
        ax.grid(True, alpha=0.3, which="both")
        ax.set_title(f"{workload} ({mode}): latency distribution at {_level_text(mode, top)}")
        _legend(ax)
        charts.append(Chart(f"{workload} ({mode}): latency percentile distribution at {_level_text(mode, top)}",
                            _svg(fig, salt + "-distribution")))
    return charts


# --------------------------------------------------------------------------- renderers


def _md_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def _md_table(table: Table) -> list[str]:
    lines: list[str] = []
    if table.title:
        lines += [f"### {table.title}", ""]
    for paragraph in table.intro:
        lines += [paragraph, ""]
    lines.append("| " + " | ".join(_md_escape(h) for h in table.headers) + " |")
    lines.append("|" + "|".join("---" for _ in table.headers) + "|")
    for row in table.rows:
        lines.append("| " + " | ".join(_md_escape(c) for c in row) + " |")
    lines.append("")
    return lines


def render_markdown(header: RunHeader, rows: Sequence[Row], verdict_texts: dict[str, str] | None = None,
                    *, extra_warnings: Sequence[str] = ()) -> str:
    """Render ``summary.md``: metadata, verdicts, one table per workload and mode,
    requests/open/calibration tables where applicable, configuration, warnings and
    failed cells.

    :param header: the run header.
    :param rows: rows from :func:`aggregate`.
    :param verdict_texts: from :func:`verdicts`; computed when ``None``.
    :param extra_warnings: warnings about the inputs.
    :return: Markdown text.
    """
    doc = build_document(header, rows, verdict_texts, extra_warnings=extra_warnings)
    lines = [f"# {doc.title}", "", "## Run", ""]
    lines += [f"- **{label}**: {_md_escape(value)}" for label, value in doc.metadata]
    lines += ["", "## Verdicts", ""]
    lines += [f"- **{w}**: {_md_escape(v)}" for w, v in doc.verdicts] or ["- no measured workloads"]
    lines.append("")
    for section in doc.sections:
        lines += [f"## {section.title}", ""]
        for paragraph in section.paragraphs:
            lines += [paragraph, ""]
        for table in section.tables:
            lines += _md_table(table)
    lines += ["## Warnings", ""]
    lines += [f"- {_md_escape(w)}" for w in doc.warnings] or ["- none"]
    lines += ["", "## Failed cells", ""]
    lines += [f"- {f.cell_id} ({f.status}): {_md_escape(f.error)}" for f in doc.failed] or ["- none"]
    lines += ["", "Charts are in index.html.", ""]
    return "\n".join(lines)


def render_html(header: RunHeader, rows: Sequence[Row], verdict_texts: dict[str, str] | None = None,
                *, extra_warnings: Sequence[str] = ()) -> str:
    """Render ``index.html``: the Markdown report's content plus inline SVG charts.

    Self-contained (inline CSS and SVG, no scripts, no external resources); rendered
    with Jinja2 from ``serverlab/templates/report.html.j2`` with autoescaping on.

    :param header: the run header.
    :param rows: rows from :func:`aggregate`.
    :param verdict_texts: from :func:`verdicts`; computed when ``None``.
    :param extra_warnings: warnings about the inputs.
    :return: HTML text.
    """
    doc = build_document(header, rows, verdict_texts, charts=True, extra_warnings=extra_warnings)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(_TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.get_template("report.html.j2").render(doc=doc)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    return value


def _row_dict(row: Row) -> dict[str, Any]:
    """A row as report.json holds it: its fields, the findings as their warnings."""
    data = asdict(row)
    del data["findings"]
    data["warnings"] = list(row.warnings)
    return data


def render_json(header: RunHeader, rows: Sequence[Row], verdict_texts: dict[str, str] | None = None,
                *, extra_warnings: Sequence[str] = ()) -> str:
    """Render ``report.json``: ``{"kind": "report", "version": 1, "run_id", "experiment",
    "metadata", "verdicts", "sustainable_throughput", "warnings", "rows": [Row as dict]}``.

    Units as in :class:`Row` (µs, s, ms, bytes, RPS); non-finite numbers become ``null``.

    :param header: the run header.
    :param rows: rows from :func:`aggregate`.
    :param verdict_texts: from :func:`verdicts`; computed when ``None``.
    :param extra_warnings: warnings about the inputs.
    :return: JSON text (sorted keys, indented).
    """
    rows = list(rows)
    if verdict_texts is None:
        verdict_texts = verdicts(rows, _p99_bound(header))
    sustained = sustainable_throughput(rows, _p99_bound(header))
    data = {
        "kind": "report", "version": 1, "serverlab": __version__, "run_id": header.run_id,
        "experiment": header.experiment, "metadata": header.metadata, "verdicts": verdict_texts,
        "sustainable_throughput": [{"workload": w, "variant": v, "rps": t} for (w, v), t in sustained.items()],
        "warnings": list(dict.fromkeys([*extra_warnings, *(w for r in rows for w in r.warnings)])),
        "rows": [_row_dict(r) for r in rows],
    }
    return json.dumps(_jsonable(data), indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


# --------------------------------------------------------------------------- files


def planned_cell_count(experiment: dict[str, Any]) -> int | None:
    """Cells a run of this experiment record plans (servers × workloads × levels × repetitions), or ``None``."""
    try:
        return (len(experiment["servers"]) * len(experiment["workloads"]) * len(experiment["levels"])
                * int(experiment["repetitions"]))
    except (KeyError, TypeError, ValueError):
        return None


def load_results(results_paths: Sequence[Path]) -> tuple[RunHeader, list[Cell], list[str]]:
    """Read one or more results files of the same experiment and concatenate their cells.

    :param results_paths: ``results.jsonl`` paths.
    :return: (a header for all of them, cells, warnings about differences between files).
        With several runs the header's ``run_id`` joins their ids with ``" + "``.
    :raises ReportError: no paths, files of different experiments or schema
        versions, or no cells at all.
    :raises serverlab.results.ResultsError: a file is missing or malformed.
    """
    paths = [Path(p) for p in results_paths]
    if not paths:
        raise ReportError("no results files given")
    loaded = [read_results(p) for p in paths]
    headers = [h for h, _ in loaded]
    first = headers[0]
    extra: list[str] = []
    for path, h in zip(paths[1:], headers[1:]):
        if h.version != first.version:
            raise ReportError(f"{path}: schema version {h.version}, but {paths[0]} has {first.version}; "
                              f"report them separately")
        if h.experiment.get("name") != first.experiment.get("name"):
            raise ReportError(f"{path}: experiment {h.experiment.get('name')!r}, but {paths[0]} has "
                              f"{first.experiment.get('name')!r}; a report covers one experiment "
                              f"(use 'compare' for two runs)")
        if h.experiment != first.experiment:
            extra.append(f"{path}: the experiment's settings differ from {paths[0]}'s; the cells were merged anyway.")
        for key in ("backend", "cpu_model", "host_cores", "server_cpus", "server_memory"):
            if h.metadata.get(key) != first.metadata.get(key):
                extra.append(f"{path}: {key} {h.metadata.get(key)!r} differs from {first.metadata.get(key)!r} "
                             f"in {paths[0]}; figures from the two may not be comparable.")
    for path, (h, cs) in zip(paths, loaded):
        planned = planned_cell_count(h.experiment)
        if planned and len({c.cell_id for c in cs}) < planned:
            missing = planned - len({c.cell_id for c in cs})
            extra.append(f"{path}: {missing} of {planned} planned cells are missing (the run was stopped, or a "
                         f"results line was lost); continue it with: serverlab run {h.experiment.get('name')} "
                         f"--resume {h.run_id}")
    cells = [c for _, cs in loaded for c in cs]
    if not cells:
        raise ReportError(f"no cells in {', '.join(map(str, paths))}: nothing was measured yet")
    run_ids = list(dict.fromkeys(h.run_id for h in headers))
    header = first if len(run_ids) == 1 else RunHeader(" + ".join(run_ids), first.experiment, first.metadata)
    return header, cells, extra


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_report(results_paths: Sequence[Path], out_dir: Path) -> dict[str, Path]:
    """Write ``index.html``, ``summary.md`` and ``report.json`` for results files.

    Results files are only read. Several files of the same experiment are
    concatenated (see :func:`load_results`).

    :param results_paths: one or more ``results.jsonl`` paths.
    :param out_dir: the report folder (created if needed).
    :return: ``{"html": .../index.html, "markdown": .../summary.md, "json": .../report.json}``.
    :raises ReportError: see :func:`load_results`, or an output path is a results file.
    :raises serverlab.results.ResultsError: a results file is missing or malformed.
    """
    out_dir = Path(out_dir)
    targets = {kind: out_dir / name for kind, name in REPORT_FILES.items()}
    inputs = {Path(p).resolve() for p in results_paths}
    for target in targets.values():
        if target.resolve() in inputs:
            raise ReportError(f"{target}: is a results file; choose another report folder")
    header, cells, extra = load_results(results_paths)
    rows = aggregate(header, cells)
    verdict_texts = verdicts(rows, _p99_bound(header))
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(targets["markdown"], render_markdown(header, rows, verdict_texts, extra_warnings=extra))
    _write_atomic(targets["html"], render_html(header, rows, verdict_texts, extra_warnings=extra))
    _write_atomic(targets["json"], render_json(header, rows, verdict_texts, extra_warnings=extra))
    return targets


def compare(old_path: Path, new_path: Path) -> str:
    """Compare two runs: a Markdown table per matching (variant, workload, mode, level).

    Columns: old RPS, new RPS, change (from :func:`serverlab.stats.compare_samples`,
    e.g. ``"1.05× faster [0.98–1.12]"`` or ``"no significant difference"``), old/new
    p99 (merged HDR, ms); then the cells only in one run, and notes where the runs'
    machines or limits differ.

    :param old_path: the baseline ``results.jsonl``.
    :param new_path: the ``results.jsonl`` to compare with it.
    :return: Markdown text.
    :raises ReportError: a run has no cells.
    :raises serverlab.results.ResultsError: a file is missing or malformed.
    """
    old_header, old_cells = read_results(Path(old_path))
    new_header, new_cells = read_results(Path(new_path))
    for path, cells in ((old_path, old_cells), (new_path, new_cells)):
        if not cells:
            raise ReportError(f"no cells in {path}: nothing to compare")
    old_rows = {r.key: r for r in aggregate(old_header, old_cells)}
    new_rows = {r.key: r for r in aggregate(new_header, new_cells)}
    lines = [f"# Comparison: {old_header.run_id} → {new_header.run_id}", "",
             f"Old: {old_path}; new: {new_path}. RPS are medians over repetitions with 95% bootstrap CIs; "
             f"change is new vs old (ratio of medians with a bootstrap CI); p99 from merged HDR histograms. "
             f"Bottleneck: what limited each side (server-bound, generator-bound, below-saturation, "
             f"interference); a change where a side is generator-bound or interference is marked, since it "
             f"measures Locust or the machine rather than the server.", ""]
    for key in ("backend", "cpu_model", "host_cores", "server_cpus", "server_memory", "git_commit"):
        a, b = old_header.metadata.get(key), new_header.metadata.get(key)
        if a != b:
            lines.append(f"- note: {key} differs: {a!r} → {b!r}")
    if old_header.experiment.get("name") != new_header.experiment.get("name"):
        lines.append(f"- note: different experiments: {old_header.experiment.get('name')!r} → "
                     f"{new_header.experiment.get('name')!r}")
    if lines[-1].startswith("- note"):
        lines.append("")
    lines += ["| variant | workload | mode | level | old RPS | new RPS | change | old p99 ms | new p99 ms "
              "| old bottleneck | new bottleneck |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    common = [k for k in new_rows if k in old_rows]
    for key in common:
        old, new = old_rows[key], new_rows[key]
        if old.rps is None or new.rps is None:
            change = "comparison could not be made: " + ("failed in both runs" if old.rps is None and new.rps is None
                                                         else "failed in the old run" if old.rps is None
                                                         else "failed in the new run")
        else:
            change = compare_samples(old.rps.samples, new.rps.samples, higher_is_better=True).text
            suspect = sorted({(r.bottleneck or {}).get("class") for r in (old, new)} & {"generator-bound", "interference"})
            if suspect:
                change += f" (not the server's: {' and '.join(suspect)})"
        cells = [key[0], key[1], key[2], str(key[3]),
                 "failed" if old.failed else format_estimate(old.rps, format_rps),
                 "failed" if new.failed else format_estimate(new.rps, format_rps), change,
                 _fmt_ms(old.hdr_us.get("p99")), _fmt_ms(new.hdr_us.get("p99")),
                 _bottleneck.describe(old.bottleneck), _bottleneck.describe(new.bottleneck)]
        lines.append("| " + " | ".join(_md_escape(c) for c in cells) + " |")
    if not common:
        lines.append("| (no cells in common) | | | | | | | | | | |")
    lines.append("")
    for title, mine, other in (("Only in the old run", old_rows, new_rows), ("Only in the new run", new_rows, old_rows)):
        only = [r for k, r in mine.items() if k not in other]
        lines += [f"## {title}", ""]
        lines += [f"- {r.label}" + (" (failed)" if r.failed else "") for r in only] or ["- none"]
        lines.append("")
    return "\n".join(lines)


__all__ = [
    "CALIBRATION_MIN_RATIO", "DEFAULT_P99_BOUND_MS", "NO_CI_NOTE", "Chart", "Document", "FailedCell",
    "ReportError", "Row", "Section", "Table", "aggregate", "build_document", "compare", "load_results",
    "render_charts", "render_html", "render_json", "render_markdown", "sustainable_throughput", "verdicts",
    "write_report",
]
