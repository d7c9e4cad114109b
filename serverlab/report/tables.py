"""The report's tables, built from rows: one per (workload, mode), and where they apply
requests-mode times, the Flask-threading articles' claim, open-mode rates, the wrk
calibration, proxied vs direct, and the variants' configuration.

Every format shows these same :class:`~serverlab.report.model.Table` objects. Cells
are plain text: latency in ms (rows keep µs), times in s, rates in RPS.
"""

from __future__ import annotations

from typing import Any, Sequence

from serverlab import bottleneck as _bottleneck
from serverlab.report.formatting import (
    fmt_ms,
    fmt_params,
    fmt_s,
    format_estimate,
    format_rps,
    level_text,
    slots_text,
    worker_model,
    workers_threads,
    yes_no,
)
from serverlab.report.answer_data import SOURCE_LABELS, Answer
from serverlab.report.model import Table
from serverlab.report.rows import CALIBRATION_MIN_RATIO, Row
from serverlab.report.sentences import NOTES
from serverlab.report.verdicts import proxy_pairs, sustainable_throughput
from serverlab.results import RunHeader
from serverlab.terms import LEVEL_NAMES, Mode, WorkerModel

#: Percentiles shown from the merged HDR histograms in tables.
TABLE_PERCENTILES = ("p50", "p99", "p99.9")


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


def main_table(rows: list[Row], mode: str) -> Table:
    """The section's main table, one line per row of one mode: server, model, workers×threads, keep-alive,
    level, RPS [95% CI], p50/p99/p99.9 (ms), failures, CPU ms/request, bottleneck, notes."""
    level_name = LEVEL_NAMES[Mode(mode)].column
    headers = ["server", "model", "workers×threads", "keep-alive", level_name, "RPS [95% CI]",
               "p50 ms", "p99 ms", "p99.9 ms", "failures", "CPU ms/req", "bottleneck", "notes"]
    table = Table(headers, [])
    for row in rows:
        level = f"{row.level} ({row.users})" if mode == Mode.REQUESTS else str(row.level)
        if row.failed:
            rps, failures = "failed", "—"
        else:
            rps = format_estimate(row.rps, format_rps)
            failures = f"{row.failures} ({row.failure_ratio:.1%})" if row.failures else "0"
        cpu = f"{row.cpu_ms_per_request.median:.3g}" if row.cpu_ms_per_request else "—"
        if row.failed:
            table.failed_rows.add(len(table.rows))
        table.rows.append([
            row.variant, worker_model(row), workers_threads(row.declared), yes_no(row.declared.keep_alive),
            level, rps, *(fmt_ms(row.hdr_us.get(p)) for p in TABLE_PERCENTILES), failures, cpu,
            _bottleneck.describe(row.bottleneck), _row_notes(row),
        ])
    return table


def answer_table(answer: Answer) -> Table:
    """The compact table under an answer: place, server, model, RPS [CI], p99, CPU ms/req, bottleneck, evidence used."""
    table = Table(["place", "server", "model", "RPS [95% CI]", "p99 ms", "CPU ms/req", "bottleneck", "evidence used"], [])
    for placed in answer.placed:
        row = placed.row
        floor = " (a floor)" if row.bottleneck_class == "generator-bound" else ""
        if placed.left_out:
            evidence = f"not ranked: {placed.left_out}"
        elif placed.evidence:
            shown = {f.source: f.text for f in placed.figures}
            locust = "Locust floor" if floor else "Locust RPS"  # its figure is in the RPS column
            evidence = "; ".join(locust if s == "measured RPS" else shown.get(s, SOURCE_LABELS.get(s, s))
                                 for s in placed.evidence)
        else:
            tried = ", ".join(SOURCE_LABELS.get(f.source, f.source) for f in placed.figures)
            evidence = "none separates it" + (f" ({tried})" if tried else "")
        table.rows.append([
            placed.place_text, placed.variant, f"{worker_model(row)} {workers_threads(row.declared)}",
            format_estimate(row.rps, format_rps) + floor, fmt_ms(row.hdr_us.get("p99")),
            f"{row.cpu_ms_per_request.median:.3g}" if row.cpu_ms_per_request else "—",
            _bottleneck.describe(row.bottleneck), evidence,
        ])
        if placed.left_out:
            table.failed_rows.add(len(table.rows) - 1)
    return table


def reasons_table(answer: Answer) -> Table | None:
    """The reasoning behind an answer, one row per variant that has any: server, place, why."""
    rows = [[p.variant, p.place_text, "\n".join(p.reasons)] for p in answer.placed if p.reasons]
    return Table(["server", "place", "why"], rows, list_columns={2}) if rows else None


def requests_table(rows: list[Row], header: RunHeader) -> Table:
    """Requests mode: the total time (seconds) each variant took to complete each request count."""
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
                line.append(format_estimate(row.total_time_s, fmt_s))
        table.rows.append(line)
    first = rows[0]
    users = sorted({r.users for r in rows})
    reps = max(r.repetitions for r in rows)
    budget = header.budget
    cpus = budget.server_cpus if budget is not None else "?"
    memory = budget.server_memory if budget is not None else "?"
    if header.metadata.get("limits_enforced") is False:
        cpus = memory = "not enforced"
    table.intro.append(
        f"Each cell is the median wall time in seconds to complete that many requests to the "
        f"{first.workload} endpoint ({fmt_params(first.workload_params)}) with "
        f"{'/'.join(map(str, users))} concurrent Locust users, over {reps} repetition(s), with its 95% "
        f"bootstrap confidence interval in brackets. Server limits: server_cpus={cpus}, "
        f"server_memory={memory}; backend {header.metadata.get('backend', '?')}.")
    top = levels[-1]
    finished = [by_key[(v, top)] for v in variants if (v, top) in by_key and by_key[(v, top)].total_time_s]
    if finished:
        pieces = [f"{r.variant} took {fmt_s(r.total_time_s.median)} s" for r in finished]  # type: ignore[union-attr]
        table.intro.append(f"For {top} requests: " + ", ".join(pieces) + ".")
    return table


#: The figures Flask threading articles quote: total seconds for N requests to "an app that
#: generated a Fibonacci sequence of 1000 numbers", non-threaded Flask vs Gunicorn
#: "multi-threaded" (no hardware, concurrency or server settings given).
#: Source: the widely copied Flask threading article that ``experiments/threading.toml`` reproduces.
ARTICLE_TOTAL_TIME_S = {10: (3.25, 2.52), 100: (35.89, 11.61), 1000: (343.74, 96.02)}
_SINGLE_MODELS = (WorkerModel.SINGLE,)
_THREAD_MODELS = (WorkerModel.THREADED, WorkerModel.GEVENT)
_PROCESS_MODELS = (WorkerModel.MULTI_PROCESS, WorkerModel.PROCESS_THREAD)


def article_table(rows: list[Row]) -> Table | None:
    """The Flask-threading-article claims next to this run's measurements (requests mode, cpu)."""
    by_key = {(r.variant, r.level): r for r in rows if not r.failed and r.total_time_s}
    singles = sorted({r.variant for r in rows if r.declared.model in _SINGLE_MODELS})
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
        line.append(fmt_s(base.total_time_s.median) if base else "—")  # type: ignore[union-attr]
        for models, label in ((_THREAD_MODELS, "threads"), (_PROCESS_MODELS, "processes")):
            candidates = [r for (v, lvl), r in by_key.items() if lvl == level and r.declared.model in models]
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
            + ", ".join(verdict_parts) + ".")
        table.intro.append(
            "Under the GIL a CPU-bound request cannot run on two threads at "
            "once, so a threaded server can only win by overlapping the network and parsing work around the "
            "computation; extra processes can only win up to the CPU budget (server_cpus). A speed-up near "
            "1× for threads disagrees with the articles' claim; one well above 1× means this endpoint's cost "
            "is dominated by per-request overhead rather than by the computation.")
    return table


def open_tables(rows: list[Row], bound_ms: float) -> list[Table]:
    """Open mode: target vs achieved rate (RPS), p99 (ms), late sends and max lag (ms) per row, then each
    variant's sustainable throughput: the highest target rate whose p99 stayed under ``bound_ms`` (ms)."""
    table = Table(["server", "target RPS", "achieved RPS [95% CI]", "p99 ms", "late sends", "max lag ms",
                   "fell behind", "failures"], [], title="Target vs achieved rate")
    for row in rows:
        load = row.open_load or {}
        if row.failed:
            table.failed_rows.add(len(table.rows))
        table.rows.append([
            row.variant, str(row.level), "failed" if row.failed else format_estimate(row.rps, format_rps),
            fmt_ms(row.hdr_us.get("p99")), str(load.get("late_sends", "—")),
            f"{load['max_lag_ms']:.1f}" if "max_lag_ms" in load else "—",
            yes_no(load.get("fell_behind")) if load else "—", str(row.failures),
        ])
    sustained = sustainable_throughput(rows, bound_ms)
    summary = Table(["server", "sustainable RPS"], [], title="Sustainable throughput")
    summary.intro.append(f"The highest target rate whose merged p99 stayed under {bound_ms:g} ms, with the "
                         f"load generator keeping to its schedule and no failed requests.")
    for (workload, variant), rate in sustained.items():
        summary.rows.append([variant, "none sustained" if rate is None else str(rate)])
    return [table, summary]


def _cpu_pair(row: Row) -> str:
    """``"0.158 / 0.141"``: the server's CPU ms per request under Locust and under wrk (``—`` when unknown)."""
    def ms(est: Any) -> str:
        return f"{est.median:.3f}" if est is not None else "—"
    return f"{ms(row.cpu_ms_per_request)} / {ms(row.wrk_cpu_ms_per_request)}"


def calibration_table(rows: list[Row]) -> Table | None:
    """The rows wrk calibrated: Locust RPS, wrk RPS [CI], their ratio (⚠ below
    :data:`~serverlab.report.rows.CALIBRATION_MIN_RATIO`), CPU-cost capacity and CPU ms/request under
    each generator; ``None`` when no row was calibrated."""
    calibrated = [r for r in rows if r.calibration]
    if not calibrated:
        return None
    table = Table(["server", "workload", "level", "Locust RPS", "wrk RPS [95% CI]", "Locust/wrk",
                   "CPU-cost capacity RPS [95% CI]", "CPU ms/req Locust / wrk", "bottleneck", ""], [],
                  title="Calibration against wrk")
    table.intro.append(f"wrk, a C load generator, measured each calibrated variant as well. A ratio below "
                       f"{CALIBRATION_MIN_RATIO:g} (marked ⚠) means Locust could not generate the load "
                       f"the server can take, so Locust's figure understates the server. CPU-cost capacity is "
                       f"server_cpus ÷ CPU seconds per request (a second estimate of the ceiling).")
    table.intro.append("wrk runs in every repetition, so its ceiling has an interval; the server's CPU per request "
                       "under each generator shows whether the two send the same work.")
    for row in calibrated:
        cal = row.calibration or {}
        low = cal["ratio"] < CALIBRATION_MIN_RATIO
        table.rows.append([row.variant, row.workload, level_text(row.mode, row.level),
                           format_rps(cal["locust_rps"]),
                           format_estimate(row.wrk_rps) if row.wrk_rps is not None else format_rps(cal["wrk_rps"]),
                           f"{cal['ratio']:.2f}", format_estimate(row.cost_capacity_rps, format_rps),
                           _cpu_pair(row), _bottleneck.describe(row.bottleneck),
                           "⚠ below 0.9" if low else ""])
    return table


def config_table(rows: list[Row], header: RunHeader) -> Table:
    """Each variant's configuration once (the header's declarations, in row order): server, model, workers,
    threads, slots, keep-alive, server CPUs and memory of the budget ("not enforced" on the local backend),
    and proxy, settings, description, command where any has them."""
    seen = {row.variant: row.declared for row in rows}
    optional = [key for key in ("proxy", "settings", "description", "command") if any(getattr(d, key) for d in seen.values())]
    table = Table(["variant", "server", "model", "workers", "threads", "slots", "keep-alive", "server CPUs",
                   "server memory", *optional], [])
    budget = header.budget
    enforced = header.metadata.get("limits_enforced") is not False  # the local backend: no cgroup, pinning only
    limits = ([_or_dash(budget.server_cpus), _or_dash(budget.server_memory)] if budget is not None else ["—", "—"]) \
        if enforced else ["not enforced", "not enforced"]
    for variant, declared in seen.items():
        line = [
            variant, _or_dash(declared.server), _or_dash(declared.model), _or_dash(declared.workers),
            _or_dash(declared.threads), slots_text(declared), yes_no(declared.keep_alive), *limits,
        ]
        for key in optional:
            if key == "proxy":
                line.append(f"{declared.proxy} ({declared.proxy_protocol}, {declared.proxy_workers} worker(s), same CPU "
                            "budget)" if declared.proxy else "")
            elif key == "settings":
                line.append(", ".join(f"{k}={v}" for k, v in declared.settings))
            elif key == "command":
                line.append(" ".join(declared.command))
            else:
                line.append(declared.description or "")
        table.rows.append(line)
    return table


def _or_dash(value: object) -> str:
    return "—" if value is None else str(value)


def proxy_table(rows: Sequence[Row]) -> Table | None:
    """Proxied variants next to their direct twins (:func:`~serverlab.report.verdicts.proxy_pairs`): RPS,
    p99 (ms), CPU ms/request and bottleneck of each; ``None`` when the run has no such pair."""
    pairs = proxy_pairs(rows)
    if not pairs:
        return None
    table = Table(["workload", "level", "proxied", "direct", "RPS proxied", "RPS direct", "p99 ms proxied",
                   "p99 ms direct", "CPU ms/req proxied", "CPU ms/req direct", "bottleneck proxied", "bottleneck direct"], [],
                  title="Proxied vs direct (same app-server settings, same CPU budget)")
    for proxied, direct in pairs:
        table.rows.append([
            proxied.workload, level_text(proxied.mode, proxied.level), proxied.variant, direct.variant,
            format_estimate(proxied.rps, format_rps), format_estimate(direct.rps, format_rps),
            format_estimate(proxied.p99_us, fmt_ms), format_estimate(direct.p99_us, fmt_ms),
            format_estimate(proxied.cpu_ms_per_request, lambda v: f"{v:.3f}"),
            format_estimate(direct.cpu_ms_per_request, lambda v: f"{v:.3f}"),
            _bottleneck.describe(proxied.bottleneck), _bottleneck.describe(direct.bottleneck),
        ])
    return table
