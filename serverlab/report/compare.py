"""``serverlab compare``: two runs side by side, through the reports' own table and formatters."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from serverlab import bottleneck as _bottleneck
from serverlab.hostspeed import describe_baseline, speed_ratio
from serverlab.report.formatting import fmt_ms, format_estimate, format_rps
from serverlab.report.model import Table
from serverlab.report.rows import ReportError, aggregate
from serverlab.report.to_markdown import md_table
from serverlab.results import read_results
from serverlab.runmatch import check_agree
from serverlab.stats import compare_samples
from serverlab.terms import BottleneckClass

_NOT_THE_SERVERS = {BottleneckClass.GENERATOR_BOUND, BottleneckClass.INTERFERENCE}
#: The columns added when the runs' host speeds differ by more than the threshold.
_NORMALISED = ["new RPS normalised to the old host speed", "change, normalised"]


def _host_speeds(old: Any, new: Any) -> tuple[list[str], float | None]:
    """The notes about both runs' host speeds, and the factor that puts the new run's RPS on the
    old run's host (new probe ms ÷ old probe ms) when their speeds differ by more than the threshold."""
    if not old and not new:
        return [], None
    if not old or not new:
        which = "old" if old else "new"
        return [f"- host speed: measured in the {which} run only ({describe_baseline(old or new)}); the other run "
                "predates the probe, so a change of the host's speed between them cannot be seen"], None
    ratio, threshold = speed_ratio(old, new) or (1.0, 0.0)
    change = f"{abs(ratio - 1):.0%} {'slower' if ratio > 1 else 'faster'}"
    lines = [f"- host speed: the fixed CPU probe took {float(old['median_ms']):.0f} ms in the old run and "
             f"{float(new['median_ms']):.0f} ms in the new one (the new host {change}; threshold {threshold:.0%})"]
    if abs(ratio - 1) <= threshold:
        return lines, None
    lines.append(f"- **the runs are not comparable as they stand**: the new run's host was {change} than the old "
                 f"run's, beyond the {threshold:.0%} the probe's noise allows, so every change below is partly the "
                 f"host's. The last two columns are labelled estimates: the new RPS × {ratio:.3f} (new probe ms ÷ "
                 f"old probe ms), the new run's RPS on the old run's host speed; they hold where the server's CPU "
                 f"set its RPS (server-bound), not where latency or the generator did. Better: rerun both side by side.")
    return lines, ratio


def _normalised(old: Any, new: Any, scale: float) -> list[str]:
    """A row's normalised columns: the new RPS × ``scale`` and its change against the old RPS."""
    if old.rps is None or new.rps is None:
        return ["—", "—"]
    scaled = [value * scale for value in new.rps.samples]
    return [f"{format_rps(new.rps.median * scale)} (normalised)",
            compare_samples(old.rps.samples, scaled, higher_is_better=True).text + " (normalised)"]


def compare(old_path: Path, new_path: Path, on: Sequence[str] = ()) -> str:
    """Compare two runs: a Markdown table per matching (variant, workload, mode, level).

    Columns: old RPS, new RPS, change (from :func:`serverlab.stats.compare_samples`,
    e.g. ``"1.05× faster [0.98–1.12]"`` or ``"no significant difference"``), old/new
    p99 (merged HDR, ms); then the cells only in one run, and notes where the runs'
    machines or limits differ. Both runs' host speeds (:mod:`serverlab.hostspeed`) are shown;
    when they differ by more than the threshold it says the runs are not comparable as they
    stand and adds the new RPS normalised to the old run's host speed, labelled as such.

    :param old_path: the baseline ``results.jsonl``.
    :param new_path: the ``results.jsonl`` to compare with it.
    :param on: what the comparison is about (values of :data:`serverlab.runmatch.COMPARABLE`:
        ``image``, ``budget``, ``variants``): the runs may differ there, and the notes list how.
    :return: Markdown text.
    :raises ReportError: a run has no cells.
    :raises serverlab.runmatch.RunsDisagree: the runs disagree on their image, budget or a variant's
        settings and ``on`` does not name it (naming the key and both values), or ``on`` names
        something else (naming the valid values).
    :raises serverlab.results.ResultsError: a file is missing or malformed.
    """
    old_header, old_cells = read_results(Path(old_path))
    new_header, new_cells = read_results(Path(new_path))
    compared = check_agree(old_header, new_header, (str(old_path), str(new_path)), on)
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
    for key in ("backend", "cpu_model", "host_cores", "git_commit"):
        a, b = old_header.metadata.get(key), new_header.metadata.get(key)
        if a != b:
            lines.append(f"- note: {key} differs: {a!r} → {b!r}")
    lines += [f"- compared ({d.what}): {d.key} {d.old!r} → {d.new!r}" for d in compared]
    if old_header.experiment.get("name") != new_header.experiment.get("name"):
        lines.append(f"- note: different experiments: {old_header.experiment.get('name')!r} → "
                     f"{new_header.experiment.get('name')!r}")
    speeds, scale = _host_speeds(old_header.metadata.get("host_speed"), new_header.metadata.get("host_speed"))
    lines += speeds
    if lines[-1].startswith("- "):
        lines.append("")
    table = Table(["variant", "workload", "mode", "level", "old RPS", "new RPS", "change", "old p99 ms", "new p99 ms",
                   "old bottleneck", "new bottleneck"] + (_NORMALISED if scale else []), [])
    common = [k for k in new_rows if k in old_rows]
    for key in common:
        old, new = old_rows[key], new_rows[key]
        if old.rps is None or new.rps is None:
            change = "comparison could not be made: " + ("failed in both runs" if old.rps is None and new.rps is None
                                                         else "failed in the old run" if old.rps is None
                                                         else "failed in the new run")
        else:
            change = compare_samples(old.rps.samples, new.rps.samples, higher_is_better=True).text
            suspect = sorted({r.bottleneck_class for r in (old, new)} & _NOT_THE_SERVERS)
            if suspect:
                change += f" (not the server's: {' and '.join(suspect)})"
        table.rows.append([key[0], key[1], key[2], str(key[3]),
                           "failed" if old.failed else format_estimate(old.rps, format_rps),
                           "failed" if new.failed else format_estimate(new.rps, format_rps), change,
                           fmt_ms(old.hdr_us.get("p99")), fmt_ms(new.hdr_us.get("p99")),
                           _bottleneck.describe(old.bottleneck), _bottleneck.describe(new.bottleneck)]
                          + (_normalised(old, new, scale) if scale else []))
    if not common:
        table.rows.append(["(no cells in common)"] + [""] * (len(table.headers) - 1))
    lines += md_table(table)
    for title, mine, other in (("Only in the old run", old_rows, new_rows), ("Only in the new run", new_rows, old_rows)):
        only = [r for k, r in mine.items() if k not in other]
        lines += [f"## {title}", ""]
        lines += [f"- {r.label}" + (" (failed)" if r.failed else "") for r in only] or ["- none"]
        lines.append("")
    return "\n".join(lines)
