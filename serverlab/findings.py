"""Findings: what a measurement says about its own trustworthiness, as data.

A finding has a :class:`FindingKind` and its figures (a frozen dataclass per kind);
it is produced once — by the runner for a cell (:func:`cell_findings`), or by the
report's aggregation for a row — and stored as data in ``results.jsonl``
(``{"kind": "warm-up-trend", "rps_trend": 0.14, "threshold": 0.1}``). Its words
are written once, in :mod:`serverlab.report.sentences`, so adding a warning is:
a kind and its figures here, a sentence there.

Results files of schema versions 1 and 2 stored cell warnings as sentences; each
is read back as a :class:`Note` carrying the text, so their reports are unchanged.

Stdlib only (results files are read where numpy may be absent). Units: shares
are fractions (0.99 = 99%), lags in milliseconds, rates in RPS.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

from serverlab.terms import Mode

if TYPE_CHECKING:  # loadgen imports stats, which imports results, which imports this module
    from serverlab.loadgen import LoadOutcome
    from serverlab.records import Interference

#: Relative change of throughput from the first to the last third of the measured
#: period above which a cell is reported as still warming up (or degrading).
WARMUP_TREND_THRESHOLD = 0.10


def _present_fields(record: Any) -> dict[str, Any]:
    """A dataclass instance's fields by name, those that are ``None`` left out."""
    return {f.name: getattr(record, f.name) for f in fields(record) if getattr(record, f.name) is not None}


class FindingKind(StrEnum):
    """What a finding is about; its value is the ``kind`` stored in results files."""

    NOTE = "note"                                  # a sentence from an older results file
    GENERATOR_SATURATED = "generator-saturated"    # Locust at its CPU limit: the RPS is Locust's
    WARMUP_TREND = "warm-up-trend"                 # throughput still rising (or falling) in the window
    INTERFERENCE = "interference"                  # other programs used the lab's CPUs
    UNANSWERED = "unanswered"                      # open model: requests sent, never answered
    FAILED_REQUESTS = "failed-requests"            # errors or non-200 answers
    FELL_BEHIND = "fell-behind"                    # open model: the generator missed its schedule
    UI_MEASURED = "ui-measured"                    # measured from the web UI (no server CPU/memory)
    UNSTABLE = "unstable"                          # repetitions disagree
    CALIBRATION_FAILED = "calibration-failed"      # wrk or Locust failed in the calibration
    CALIBRATION_LOW = "calibration-low"            # Locust reached too little of wrk's RPS
    HISTOGRAMS_UNMERGED = "histograms-unmerged"    # HDR histograms could not be merged
    HOST_SPEED_CHANGED = "host-speed-changed"      # the CPU probe around the cell left the run's median
    REPETITIONS_LEFT_OUT = "repetitions-left-out"  # a row's disturbed repetitions, left out of its figures


@dataclass(frozen=True)
class Finding:
    """Base of every finding: subclasses name their :attr:`kind` and hold its figures as fields."""

    kind: ClassVar[FindingKind]

    def to_dict(self) -> dict[str, Any]:
        """``{"kind": ..., <figure>: value, ...}``, JSON-ready (figures that are ``None`` left out)."""
        return {"kind": str(self.kind), **_present_fields(self)}


@dataclass(frozen=True)
class Note(Finding):
    """A warning sentence from a results file of schema version 1 or 2, kept verbatim.

    :param text: the sentence as the runner wrote it.
    """

    kind: ClassVar[FindingKind] = FindingKind.NOTE
    text: str


@dataclass(frozen=True)
class GeneratorSaturated(Finding):
    """The load generator was at its CPU limit, so the figure measures Locust, not the server.

    :param busiest_share: the busiest Locust process's share of one core (0.99 = 99%);
        ``None`` for a row (any repetition saturated).
    :param cpu_warning: Locust itself warned of high CPU.
    """

    kind: ClassVar[FindingKind] = FindingKind.GENERATOR_SATURATED
    busiest_share: float | None = None
    cpu_warning: bool = False


@dataclass(frozen=True)
class WarmupTrend(Finding):
    """Throughput changed from the first to the last third of the measured period.

    :param rps_trend: relative change (+0.14 = rose 14%).
    :param threshold: the largest change accepted (:data:`WARMUP_TREND_THRESHOLD`).
    """

    kind: ClassVar[FindingKind] = FindingKind.WARMUP_TREND
    rps_trend: float
    threshold: float = WARMUP_TREND_THRESHOLD


@dataclass(frozen=True)
class InterferenceFlagged(Finding):
    """Other programs used the lab's CPUs while the cell ran.

    :param share: the share of the lab's CPUs they used (a cell), or the largest over
        the repetitions (a row).
    :param threshold: the share above which a cell is flagged; ``None`` for a row.
    """

    kind: ClassVar[FindingKind] = FindingKind.INTERFERENCE
    share: float
    threshold: float | None = None


@dataclass(frozen=True)
class Unanswered(Finding):
    """Open model: requests sent but not answered when Locust stopped.

    :param count: how many.
    """

    kind: ClassVar[FindingKind] = FindingKind.UNANSWERED
    count: int


@dataclass(frozen=True)
class FailedRequests(Finding):
    """Requests failed (errors, non-200 answers) in the measured period.

    :param failures: failed requests; :param requests: all responses.
    """

    kind: ClassVar[FindingKind] = FindingKind.FAILED_REQUESTS
    failures: int
    requests: int


@dataclass(frozen=True)
class FellBehind(Finding):
    """Open model: the generator could not keep to its schedule.

    :param late_sends: requests sent late; :param max_lag_ms: the largest lag (ms).
    """

    kind: ClassVar[FindingKind] = FindingKind.FELL_BEHIND
    late_sends: int
    max_lag_ms: float


@dataclass(frozen=True)
class UIMeasured(Finding):
    """Measured by an older web UI Compare tab, which could not read the server's CPU and memory.

    Comparisons are runs now (:mod:`serverlab.uiruns`) with the server's own CPU; the kind stays
    so that results files written before still read.
    """

    kind: ClassVar[FindingKind] = FindingKind.UI_MEASURED


@dataclass(frozen=True)
class Unstable(Finding):
    """The repetitions' RPS disagree by more than the threshold.

    :param spread: ``(max - min) / median`` of the repetitions (0.12 = 12%).
    :param repetitions: how many repetitions; :param threshold: the largest spread accepted.
    """

    kind: ClassVar[FindingKind] = FindingKind.UNSTABLE
    spread: float
    repetitions: int
    threshold: float


@dataclass(frozen=True)
class CalibrationFailed(Finding):
    """The calibration against wrk did not produce a ratio.

    :param note: which tool failed and why, as :class:`serverlab.results.Calibration` recorded it.
    """

    kind: ClassVar[FindingKind] = FindingKind.CALIBRATION_FAILED
    note: str


@dataclass(frozen=True)
class CalibrationLow(Finding):
    """Locust reached less than ``threshold`` of wrk's RPS: Locust may be the limit.

    :param ratio: Locust RPS ÷ wrk RPS (median over repetitions); :param threshold: the lowest ratio accepted.
    """

    kind: ClassVar[FindingKind] = FindingKind.CALIBRATION_LOW
    ratio: float
    threshold: float


@dataclass(frozen=True)
class HistogramsUnmerged(Finding):
    """The repetitions' HDR histograms could not be merged, so HDR percentiles are missing.

    :param error: why, from :func:`serverlab.histograms.merge_histograms`.
    """

    kind: ClassVar[FindingKind] = FindingKind.HISTOGRAMS_UNMERGED
    error: str


@dataclass(frozen=True)
class HostSpeedChanged(Finding):
    """The host-speed probe right before or after the cell deviated from the run's median
    (see :mod:`serverlab.hostspeed`): the host itself ran slower (or faster), so the figure
    cannot be set beside the run's others. The cell is classed ``interference``.

    :param deviation: the larger relative deviation of the two probes (+0.12 = 12% slower).
    :param threshold: the run's threshold (a share).
    :param before_ms: the probe before the cell (ms); :param after_ms: after it (ms);
    :param median_ms: the run's median probe (ms).
    """

    kind: ClassVar[FindingKind] = FindingKind.HOST_SPEED_CHANGED
    deviation: float
    threshold: float
    before_ms: float | None = None
    after_ms: float | None = None
    median_ms: float | None = None


#: The figures class of every kind.
@dataclass(frozen=True)
class RepetitionsLeftOut(Finding):
    """Some repetitions of a row were disturbed (interference or a host-speed change) and the row's
    figures come from the others (at least ``MIN_CLEAN_REPETITIONS`` of :mod:`serverlab.report.rows`).

    :param left_out: how many disturbed repetitions were left out; :param kept: how many undisturbed ones remain.
    """

    kind: ClassVar[FindingKind] = FindingKind.REPETITIONS_LEFT_OUT
    left_out: int
    kept: int


FINDING_TYPES: dict[FindingKind, type[Finding]] = {
    cls.kind: cls for cls in (Note, GeneratorSaturated, WarmupTrend, InterferenceFlagged, Unanswered, FailedRequests,
                              FellBehind, UIMeasured, Unstable, CalibrationFailed, CalibrationLow, HistogramsUnmerged,
                              HostSpeedChanged, RepetitionsLeftOut)
}


def finding_from_dict(data: Mapping[str, Any]) -> Finding:
    """Rebuild a finding from :meth:`Finding.to_dict` output.

    :param data: ``{"kind": ..., <figures>}``.
    :return: the finding.
    :raises ValueError: an unknown kind, or figures that do not fit it.
    """
    try:
        cls = FINDING_TYPES[FindingKind(data.get("kind"))]
    except ValueError:
        raise ValueError(f"unknown finding kind {data.get('kind')!r}") from None
    try:
        return cls(**{k: v for k, v in data.items() if k != "kind"})
    except TypeError as err:
        raise ValueError(f"finding {data.get('kind')!r}: {err}") from None


def cell_findings(outcome: LoadOutcome, *, saturated: bool, interference: Interference | None,
                  mode: str) -> list[Finding]:
    """What a measured window says about itself, in the order a report lists it.

    :param outcome: the load generator's outcome (:class:`serverlab.loadgen.LoadOutcome`).
    :param saturated: the generator was at its CPU limit (the runner's judgement, also
        stored as :attr:`serverlab.results.Cell.loadgen_saturated`).
    :param interference: the window's :class:`serverlab.records.Interference`, or ``None``.
    :param mode: the load mode (``closed``, ``open``, ``requests``); unanswered requests are
        a finding in open mode (elsewhere they fail the cell).
    :return: findings: saturation, warm-up trend, interference, unanswered, failed requests, fell behind.
    """
    found: list[Finding] = []
    if saturated:
        found.append(GeneratorSaturated(outcome.busiest_process_share, bool(outcome.cpu_warning)))
    if outcome.rps_trend is not None and abs(outcome.rps_trend) > WARMUP_TREND_THRESHOLD:
        found.append(WarmupTrend(outcome.rps_trend))
    if interference is not None and interference.flagged:
        found.append(InterferenceFlagged(interference.share, interference.threshold))
    if outcome.unanswered and mode == Mode.OPEN:
        found.append(Unanswered(int(outcome.unanswered)))
    if outcome.failures:
        found.append(FailedRequests(int(outcome.failures), int(outcome.requests)))
    if outcome.open_load is not None and outcome.open_load.fell_behind:
        found.append(FellBehind(outcome.open_load.late_sends, outcome.open_load.max_lag_ms))
    return found
