"""The words of every finding, written once: one sentence per :class:`~serverlab.findings.FindingKind`.

:func:`sentence` words a finding; :func:`warning` prefixes it with the row (and
repetition) it is about, as the reports' warnings list shows it; :data:`NOTES` holds the
short forms a table's notes column uses. A finding recorded by an older results file
(:class:`~serverlab.findings.Note`) is its own sentence.

Percentages are rounded as the runner always printed them (``99%``; spreads ``12.3%``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

from serverlab.findings import Finding, FindingKind, GeneratorSaturated, InterferenceFlagged
from serverlab.report.formatting import level_text
from serverlab.terms import BottleneckClass

if TYPE_CHECKING:
    from serverlab.report.rows import Row, RowFinding


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


def _interference(f: InterferenceFlagged, cell: bool) -> str:
    if not cell or f.threshold is None:
        return (f"other programs used up to {f.share:.0%} of the lab's CPUs during this cell (interference); it is "
                f"left out of verdicts. Rerun on a quiet machine or with --retry-busy N.")
    return (f"other programs used {f.share:.0%} of the lab's CPUs during the window (interference; threshold "
            f"{f.threshold:.0%}): this figure is not the server's alone; rerun on a quiet machine or with --retry-busy N")


def _host_speed(f: Any, cell: bool) -> str:
    slower = "slower" if f.deviation > 0 else "faster"
    return (f"host speed changed: the fixed CPU probe {'around this cell' if cell else 'around a repetition'} ran "
            f"{abs(f.deviation):.0%} {slower} than the run's median (threshold {f.threshold:.0%}): the host itself "
            f"was {slower}, so this figure is not comparable with the run's others and is left out of verdicts; "
            f"rerun with --retry-busy N, or on a steadier host")


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
    FindingKind.HOST_SPEED_CHANGED: _host_speed,
    FindingKind.REPETITIONS_LEFT_OUT: lambda f, _: (
        f"{f.left_out} of {f.left_out + f.kept} repetitions were disturbed (other programs on the lab's CPUs, or the "
        f"host's speed changed) and are left out: this row's figures come from the {f.kept} undisturbed ones"),
    FindingKind.HISTOGRAMS_UNMERGED: lambda f, _: (
        f"latency histograms could not be merged ({f.error}); HDR percentiles are missing."),
}

#: The short form of some kinds in a table's notes column (``None``: no note).
NOTES: dict[FindingKind, Callable[[Any, Row], str | None]] = {
    FindingKind.UNSTABLE: lambda f, row: f"unstable: repetitions spread {f.spread:.1%}",
    FindingKind.GENERATOR_SATURATED: lambda f, row: (
        "load generator saturated" if row.bottleneck_class != BottleneckClass.GENERATOR_BOUND else None),
    FindingKind.CALIBRATION_LOW: lambda f, row: f"Locust/wrk {f.ratio:.2f}",
}


#: The short form of every kind in a grouped findings line (:func:`grouped_findings`).
SHORT: dict[FindingKind, Callable[[Any], str]] = {
    FindingKind.NOTE: lambda f: f.text,
    FindingKind.GENERATOR_SATURATED: lambda f: "load generator saturated" + (
        f" (up to {f.busiest_share:.0%} of a core)" if f.busiest_share is not None else ""),
    FindingKind.WARMUP_TREND: lambda f: f"warm-up trend (throughput {'rose' if f.rps_trend > 0 else 'fell'} up to "
                                        f"{abs(f.rps_trend):.0%} within the window)",
    FindingKind.INTERFERENCE: lambda f: f"interference (other programs used up to {f.share:.0%} of the lab's CPUs)",
    FindingKind.UNANSWERED: lambda f: "requests left unanswered",
    FindingKind.FAILED_REQUESTS: lambda f: "failed requests",
    FindingKind.FELL_BEHIND: lambda f: "the generator fell behind its schedule",
    FindingKind.UI_MEASURED: lambda f: "measured from the web UI (no server CPU or memory)",
    FindingKind.UNSTABLE: lambda f: f"unstable (repetitions spread {f.spread:.1%})",
    FindingKind.CALIBRATION_FAILED: lambda f: f"calibration failed ({f.note})",
    FindingKind.CALIBRATION_LOW: lambda f: f"Locust reached only {f.ratio:.0%} of wrk's RPS",
    FindingKind.HISTOGRAMS_UNMERGED: lambda f: "latency histograms not merged",
    FindingKind.HOST_SPEED_CHANGED: lambda f: f"host speed changed ({f.deviation:+.0%} against the run's median, "
                                              f"threshold {f.threshold:.0%})",
    FindingKind.REPETITIONS_LEFT_OUT: lambda f: f"{f.left_out} disturbed repetition(s) left out, {f.kept} kept",
}
#: The figure that makes a finding the worst of its group (the one a grouped line quotes).
_SEVERITY = ("busiest_share", "share", "spread", "ratio", "rps_trend", "deviation")


def _repetitions_text(repetitions: Sequence[int]) -> str:
    """``[1, 2, 3, 5]`` → ``"r1–r3, r5"``."""
    runs: list[list[int]] = []
    for n in sorted(set(repetitions)):
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ", ".join(f"r{r[0]}–r{r[-1]}" if len(r) > 2 else ", ".join(f"r{n}" for n in r) for r in runs)


def grouped_findings(rows: Sequence[Row]) -> list[str]:
    """Every finding of the rows, one line per kind and variant, naming the repetitions it hit.

    E.g. ``"uwsgi-threads: load generator saturated (up to 99% of a core): r1–r3"``; with
    several workloads or levels the line names each: ``"... : hello 32 users r1–r3, io 32 users r2"``.
    A finding about a whole row (no repetition) counts for the row without naming repetitions;
    the worst figure of the group is quoted (e.g. the highest Locust share).

    :param rows: report rows, in order.
    :return: the lines, in row order.
    """
    several = len({(r.workload, r.mode, r.level) for r in rows}) > 1
    groups: dict[tuple[str, str, str], list[tuple[Row, RowFinding]]] = {}
    for row in rows:
        for item in row.findings:
            text = item.finding.text if item.finding.kind == FindingKind.NOTE else ""
            groups.setdefault((row.variant, str(item.finding.kind), text), []).append((row, item))
    lines = []
    for (variant, _, _), items in groups.items():
        def severity(pair: tuple[Row, RowFinding]) -> float:
            f = pair[1].finding
            return max((abs(v) for k in _SEVERITY if isinstance(v := getattr(f, k, None), (int, float))), default=0.0)

        finding = max(items, key=severity)[1].finding
        if finding.kind == FindingKind.CALIBRATION_LOW:  # the lowest ratio is the worst
            finding = min((i.finding for _, i in items), key=lambda f: f.ratio)
        places: dict[tuple[str, str, str, int], list[int]] = {}  # row key -> repetitions
        for row, item in items:
            places.setdefault(row.key, [])
            if item.repetition is not None:
                places[row.key].append(item.repetition)
        where = [" ".join(x for x in ((f"{workload} {level_text(mode, level)}" if several else ""),
                                      _repetitions_text(reps)) if x) for (_, workload, mode, level), reps in places.items()]
        where = [w for w in where if w]
        lines.append(f"{variant}: {SHORT[finding.kind](finding)}" + (f": {', '.join(where)}" if where else ""))
    return lines


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



def row_warnings(row: Row) -> tuple[str, ...]:
    """A row's findings as plain-language warnings (:func:`warning`), each naming the row (and
    repetition), without repeats, in the row's order."""
    return tuple(dict.fromkeys(warning(row.label, item) for item in row.findings))
