"""Aggregation: one :class:`Row` per (variant, workload, mode, level) over its repetitions.

Every report format and chart is drawn from these rows. Only cells with status
``ok`` are combined (median with a 95% bootstrap CI; latency percentiles also from
the merged HDR histograms); the others are kept as :class:`FailedCell`. A row's
findings — its cells' (with their repetition) and its own (instability, saturation,
calibration, interference) — are data (:class:`RowFinding`);
:func:`serverlab.report.sentences.row_warnings` words them (this module holds no words, so
the sentences can import the rows and not the other way round).

Units: latency in microseconds (``_us``), times in seconds (``_s``), CPU per request
in milliseconds (``_ms``), memory in bytes, rates in RPS.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from serverlab import LabError
from serverlab import bottleneck as _bottleneck
from serverlab.findings import (
    CalibrationFailed,
    CalibrationLow,
    Finding,
    GeneratorSaturated,
    HistogramsUnmerged,
    InterferenceFlagged,
    RepetitionsLeftOut,
    Unstable,
)
from serverlab.report.formatting import level_text
from serverlab.records import BottleneckSummary, Timeline, VariantRecord
from serverlab.results import Calibration, Cell, RunHeader
from serverlab.histograms import latency_summary, merge_histograms, percentile_distribution
from serverlab.stats import (
    INSTABILITY_THRESHOLD,
    Estimate,
    StatsError,
    median_ci,
    spread,
)
from serverlab.terms import MODES, BottleneckClass, CellStatus

#: Locust/wrk RPS ratio below which Locust, not the server, may be the limit.
CALIBRATION_MIN_RATIO = 0.9
#: A row whose repetitions were partly disturbed (interference, or the host-speed probe flagged
#: them) is built from the undisturbed ones when at least this many remain (a median and a CI
#: need two); with fewer it stays whole and is classed ``interference`` (left out of verdicts).
MIN_CLEAN_REPETITIONS = 2


class ReportError(LabError):
    """Results cannot be reported: no cells, or files of different experiments or schemas."""




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
    :param workload_params: the workload's request parameters (the run header's).
    :param declared: the variant's declaration as measured (:meth:`serverlab.results.RunHeader.variant`).
    :param server_cpus: the budget's CPUs per server (cores; :attr:`serverlab.results.RunHeader.budget`),
        ``None`` when not recorded.
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
    :param bottleneck: what limited the repetitions (:class:`~serverlab.records.BottleneckSummary`,
        from :func:`serverlab.bottleneck.summarize`).
    :param cost_capacity_rps: capacity implied by CPU cost, ``server_cpus ÷ CPU s per request``
        per repetition (RPS), median with 95% CI (:func:`cost_capacity`).
    :param wrk_rps: wrk's hello ceiling over the repetitions, median with 95% CI (one sample,
        no interval, in results from before wrk ran in every repetition); ``None`` when not calibrated.
    :param wrk_cpu_ms_per_request: server CPU milliseconds per request under wrk, with CI; ``None``
        when not measured.
    :param timelines: the ok repetitions' per-second timelines (:class:`~serverlab.records.Timeline`),
        in repetition order.
    """

    variant: str
    workload: str
    mode: str
    level: int
    users: int
    workload_params: dict[str, int]
    declared: VariantRecord
    server_cpus: float | None
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
    bottleneck: BottleneckSummary | None = None
    cost_capacity_rps: Estimate | None = None
    timelines: tuple[Timeline, ...] = ()
    wrk_rps: Estimate | None = None
    wrk_cpu_ms_per_request: Estimate | None = None

    @property
    def key(self) -> tuple[str, str, str, int]:
        """(variant, workload, mode, level), as :attr:`serverlab.results.Cell.key`."""
        return (self.variant, self.workload, self.mode, self.level)

    @property
    def bottleneck_class(self) -> BottleneckClass | None:
        """The class of :attr:`bottleneck`, ``None`` when unclassified."""
        return self.bottleneck.kind if self.bottleneck is not None else None

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
        return f"{self.variant} / {self.workload} / {self.mode} / {level_text(self.mode, self.level)}"


def cost_capacity(cpu_ms_per_request: Sequence[float], server_cpus: float) -> Estimate | None:
    """Capacity implied by CPU cost: ``server_cpus × 1000 ÷ CPU ms per request`` per repetition.

    :param cpu_ms_per_request: the repetitions' server CPU milliseconds per request.
    :param server_cpus: the server's CPU budget (cores).
    :return: the median capacity (RPS) with its 95% bootstrap CI, or ``None`` without data.
    """
    values = [server_cpus * 1000.0 / ms for ms in cpu_ms_per_request if ms and ms > 0]
    return median_ci(values) if values else None


def _estimate(values: Sequence[float]) -> Estimate | None:
    return median_ci(values) if values else None


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def _aggregate_key(header: RunHeader, cells: list[Cell]) -> Row:
    cells = sorted(cells, key=lambda c: (c.repetition, c.run_id))
    ok = [c for c in cells if c.status == CellStatus.OK]
    first = ok[0] if ok else cells[0]
    variant, workload, mode, level = first.key
    found: list[RowFinding] = [RowFinding(f, cell.repetition) for cell in ok for f in cell.findings]
    ok_count = len(ok)
    budget = header.budget
    clean = [c for c in ok if (b := _bottleneck.cell_bottleneck(c, budget)) is None or b.kind != BottleneckClass.INTERFERENCE]
    if len(clean) < len(ok) and len(clean) >= MIN_CLEAN_REPETITIONS:  # the disturbed ones are left out
        found.append(RowFinding(RepetitionsLeftOut(len(ok) - len(clean), len(clean))))
        ok = clean

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
    calibrated = [(c.rps, c.calibration) for c in ok if c.calibration is not None and c.calibration.measured]
    wrk_rps = wrk_cpu = None
    if calibrated:
        calibration = {
            "locust_rps": _median([rps for rps, _ in calibrated]),
            "wrk_rps": _median([float(cal.wrk_rps or 0.0) for _, cal in calibrated]),
            "ratio": _median([float(cal.ratio or 0.0) for _, cal in calibrated]),
        }
        calibrated_on = next((cal.workload for _, cal in calibrated if cal.workload), None)
        if calibrated_on:  # an app's first GET request (hello when not recorded)
            calibration["workload"] = calibrated_on
        wrk_rps, wrk_cpu = _wrk_estimates([cal for _, cal in calibrated])
        if calibration["ratio"] < CALIBRATION_MIN_RATIO:
            found.append(RowFinding(CalibrationLow(calibration["ratio"], CALIBRATION_MIN_RATIO)))

    open_load = None
    loads = [c.open_load for c in ok if c.open_load is not None]
    if loads:
        open_load = {
            "target_rps": loads[0].target_rps,
            "achieved_rps": _median([c.rps for c in ok if c.open_load is not None]),
            "sent": sum(d.sent for d in loads),
            "late_sends": sum(d.late_sends for d in loads),
            "max_lag_ms": max(d.max_lag_ms for d in loads),
            "fell_behind": any(d.fell_behind for d in loads),
        }

    summary = _bottleneck.summarize(ok, budget)
    if summary is not None and summary.kind == BottleneckClass.INTERFERENCE and any(
            c.interference is not None and c.interference.flagged for c in ok):
        found.append(RowFinding(InterferenceFlagged(summary.interference_share or 0)))  # (host speed: each repetition's own)
    server_cpus = budget.server_cpus if budget is not None else None
    capacity = cost_capacity([c.cpu_ms_per_request for c in ok if c.cpu_ms_per_request], float(server_cpus)) \
        if server_cpus else None
    memory = [c.server_peak_memory_bytes for c in ok if c.server_peak_memory_bytes is not None]
    return Row(
        variant=variant, workload=workload, mode=mode, level=level, users=first.users,
        workload_params=header.workload_params(workload), declared=header.variant(variant), server_cpus=server_cpus,
        repetitions=len(cells), repetitions_ok=ok_count,
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
        failed_cells=tuple(FailedCell(c.cell_id, c.status, c.error or "") for c in cells if c.status != CellStatus.OK),
        bottleneck=summary, cost_capacity_rps=capacity,
        timelines=tuple(c.timeline for c in ok if c.timeline is not None),
        wrk_rps=wrk_rps, wrk_cpu_ms_per_request=wrk_cpu,
    )


def _wrk_estimates(calibrations: list[Calibration]) -> tuple[Estimate | None, Estimate | None]:
    """wrk's RPS and its server CPU ms per request over repetitions, each with its interval.

    A calibration with its ``repetition`` is one sample per repetition; older results copied
    one calibration per variant into every cell, so those count once (no interval).
    """
    per_repetition = {c.repetition: c for c in calibrations if c.repetition is not None}
    if per_repetition:
        samples = list(per_repetition.values())
        rps = median_ci([float(c.wrk_rps or 0.0) for c in samples])
    else:
        samples = []
        rps = median_ci([_median([float(c.wrk_rps or 0.0) for c in calibrations])])
    cpu = [c.wrk_cpu_ms_per_request for c in samples if c.wrk_cpu_ms_per_request is not None]
    return rps, (median_ci(cpu) if cpu else None)


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
    Disturbed ``ok`` repetitions (classed ``interference``: other programs on the lab's
    CPUs, or the host-speed probe flagged them) are left out of the figures too when at
    least :data:`MIN_CLEAN_REPETITIONS` undisturbed ones remain (a
    :class:`~serverlab.findings.RepetitionsLeftOut` finding says so); otherwise the row
    keeps them all and is classed ``interference``.

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
    rows = [_aggregate_key(header, group) for group in groups.values()]
    rows.sort(key=lambda r: (_order(workloads, r.workload), MODES.index(r.mode),
                             _order(variants, r.variant), r.level))
    return rows

