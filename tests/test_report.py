"""serverlab.report: aggregation, verdicts, Markdown/HTML/JSON rendering, write_report, compare."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from report_factories import histogram_of, latency_samples, make_cell, make_header, write_results
from serverlab import LabError
from serverlab.findings import GeneratorSaturated
from serverlab.report import (
    ReportError,
    aggregate,
    compare,
    render_html,
    render_json,
    render_markdown,
    sustainable_throughput,
    verdicts,
    write_report,
)
from serverlab.stats import NO_CI_NOTE
from serverlab.report.sentences import row_warnings


def closed_run(workload="hello", variants=None, levels=(1, 8), reps=3, samples=400):
    """Cells of a closed-mode run; RPS grows with the variant's index and the level."""
    variants = variants or {"werkzeug-single": 500.0, "gunicorn-sync": 1_000.0}
    cells = []
    for variant, base in variants.items():
        for level in levels:
            for rep in range(1, reps + 1):
                rps = base * (1 + level / 100) * (1 + 0.01 * (rep - 2))
                cells.append(make_cell(variant, workload, "closed", level, rep, rps=rps,
                                       median_us=1e6 / rps, samples=samples))
    return cells


def failed_cell(variant="gunicorn-gthread", workload="hello", level=8, rep=1, error="server exited with code 3 <boom>"):
    return make_cell(variant, workload, "closed", level, rep, status="failed", error=error)


# ---------------------------------------------------------------- aggregate


def test_aggregate_one_row_per_key_with_medians_and_cis():
    rows = aggregate(make_header(), closed_run())
    assert [(r.variant, r.level) for r in rows] == [
        ("gunicorn-sync", 1), ("gunicorn-sync", 8), ("werkzeug-single", 1), ("werkzeug-single", 8)]
    row = rows[1]
    assert row.repetitions == row.repetitions_ok == 3
    assert row.rps.n == 3 and row.rps.has_ci
    assert row.rps.low <= row.rps.median <= row.rps.high
    assert row.rps.median == pytest.approx(1_000.0 * 1.08)
    assert row.requests == sum(int(r) for r in np.array(row.rps.samples) * 10)
    assert row.failures == 0 and row.failure_ratio == 0.0
    assert row.cpu_ms_per_request.median == pytest.approx(0.8)
    assert row.peak_memory_bytes == 60 * 2**20


def test_aggregate_merges_hdr_histograms_exactly():
    cells = [make_cell("gunicorn-sync", level=4, repetition=r, median_us=1_000 * r, samples=1_500, seed=r)
             for r in (1, 2, 3)]
    row = aggregate(make_header(), cells)[0]
    everything = np.concatenate([latency_samples(1_000 * r, 1_500, seed=r) for r in (1, 2, 3)])
    combined = histogram_of(everything)
    assert row.hdr_count == 4_500
    for key, p in (("p50", 50), ("p99", 99), ("p99.9", 99.9)):
        expected = combined.get_value_at_percentile(p)
        assert abs(row.hdr_us[key] - expected) <= expected * 2e-3 + 1
    assert row.hdr_us["max"] == combined.get_max_value()
    # the median of per-repetition p50s differs from the merged p50: both are kept
    assert row.p50_us.n == 3


def test_rows_follow_the_experiment_order():
    header = make_header(servers=["werkzeug-single", "gunicorn-sync"], workloads=["io", "hello"], users=[1, 8])
    cells = [make_cell(v, w, "closed", 8, 1, samples=50) for w in ("hello", "io") for v in ("gunicorn-sync", "werkzeug-single")]
    rows = aggregate(header, cells)
    assert [(r.workload, r.variant) for r in rows] == [
        ("io", "werkzeug-single"), ("io", "gunicorn-sync"), ("hello", "werkzeug-single"), ("hello", "gunicorn-sync")]
    assert "| users | 1, 8 |" in render_markdown(header, rows)  # the settings table


def test_failed_cells_are_kept_but_not_averaged():
    cells = closed_run(variants={"gunicorn-sync": 1_000.0}, levels=(8,), reps=2)
    cells.append(make_cell("gunicorn-sync", "hello", "closed", 8, 3, status="failed", error="worker timeout"))
    cells.append(failed_cell("gunicorn-gthread"))
    rows = {r.variant: r for r in aggregate(make_header(), cells)}
    sync = rows["gunicorn-sync"]
    assert sync.repetitions == 3 and sync.repetitions_ok == 2 and sync.rps.n == 2
    assert [f.error for f in sync.failed_cells] == ["worker timeout"]
    assert not sync.clean
    gthread = rows["gunicorn-gthread"]
    assert gthread.failed and gthread.rps is None and gthread.hdr_us == {}
    assert gthread.failed_cells[0].status == "failed"


def test_instability_and_saturation_warnings():
    cells = [make_cell("gunicorn-sync", level=8, repetition=r, rps=rps, samples=100)
             for r, rps in ((1, 700.0), (2, 1_000.0), (3, 1_050.0))]
    cells.append(make_cell("werkzeug-single", level=8, repetition=1, samples=100, loadgen_saturated=True,
                           findings=[GeneratorSaturated(0.97, cpu_warning=True)]))
    rows = {r.variant: r for r in aggregate(make_header(), cells)}
    assert any("run more repetitions or a longer duration" in w for w in row_warnings(rows["gunicorn-sync"]))
    single = row_warnings(rows["werkzeug-single"])
    assert any("Locust warned of high CPU" in w for w in single)
    assert any("load generator was saturated" in w for w in single)


# ---------------------------------------------------------------- verdicts


def test_verdict_names_winner_with_significant_comparison():
    rows = aggregate(make_header(), closed_run())
    verdict = verdicts(rows)["hello"]
    assert verdict.startswith("gunicorn-sync wins (closed mode, 8 users)")
    assert "2.00× faster [" in verdict and "werkzeug-single" in verdict
    assert "per-request overhead dominates" in verdict


def test_verdict_excludes_variants_with_failures_and_explains_cpu():
    cells = closed_run("cpu", {"werkzeug-single": 100.0, "gunicorn-gthread": 101.0, "gunicorn-sync": 98.0},
                       levels=(4,))
    cells.append(make_cell("uwsgi-threads", "cpu", "closed", 4, 1, rps=500.0, samples=100, failures=100))
    verdict = verdicts(aggregate(make_header(), cells))["cpu"]
    # gthread's 1% lead over werkzeug-single is inside the CIs: no winner is named
    assert verdict.startswith("gunicorn-gthread, werkzeug-single share first place (closed mode, 4 users), ahead of "
                              "gunicorn-sync on measured RPS (95% CIs, no overlap); but cannot tell on this machine which of")
    assert "their intervals overlap" in verdict and "more repetitions" in verdict
    assert "Not considered" in verdict and "uwsgi-threads" in verdict
    assert "CPU-bound work holds the GIL" in verdict and "server_cpus=1" in verdict
    assert "threads/greenlets in one process vs one thread" in verdict


def test_verdict_io_compares_threads_with_single():
    cells = closed_run("io", {"werkzeug-single": 10.0, "gunicorn-gevent": 300.0}, levels=(32,))
    verdict = verdicts(aggregate(make_header(), cells))["io"]
    assert verdict.startswith("gunicorn-gevent wins")
    assert "an I/O wait releases the GIL" in verdict
    assert "gunicorn-gevent" in verdict and "did 30.00× werkzeug-single" in verdict


def test_verdict_when_everything_failed():
    verdict = verdicts(aggregate(make_header(), [failed_cell()]))["hello"]
    assert verdict.startswith("No winner")


# ---------------------------------------------------------------- rendering


def test_markdown_has_metadata_tables_and_failed_cells():
    cells = closed_run() + [failed_cell()]
    header = make_header(description="smoke")
    rows = aggregate(header, cells)
    md = render_markdown(header, rows)
    assert md.startswith("# serverlab report: unit")
    for text in ("**backend**: local", "**host cores**: 8", "Test CPU @ 3.0GHz", "abc1234", "flask 3.1.3",
                 "server_cpus=1", "## Verdict", "## Configuration", "## Findings", "## Failed cells"):
        assert text in md
    assert ("| server | model | workers×threads | keep-alive | users | RPS [95% CI] | p50 ms | p99 ms | "
            "p99.9 ms | failures | CPU ms/req | bottleneck | notes |") in md
    details = md[md.index("## Workload hello"):]  # the per-workload table, below the answer
    failed_line = next(line for line in details.splitlines() if line.startswith("| gunicorn-gthread |"))
    assert "failed" in failed_line and "server exited with code 3 <boom>" in failed_line
    assert "gunicorn-gthread/hello/8/r1 (failed): server exited with code 3 <boom>" in md


def test_markdown_table_escapes_pipes():
    cells = [failed_cell(error="bad | pipe")]
    md = render_markdown(make_header(), aggregate(make_header(), cells))
    assert "bad \\| pipe" in md


def test_single_repetition_says_no_confidence_interval():
    cells = closed_run(reps=1, levels=(8,))
    md = render_markdown(make_header(), aggregate(make_header(), cells))
    assert NO_CI_NOTE in md
    details = md[md.index("## Workload hello"):]
    assert "[" not in next(line for line in details.splitlines() if line.startswith("| gunicorn-sync |")).split("|")[6]


def test_html_escapes_errors_and_embeds_svg_charts():
    cells = closed_run() + [failed_cell()]
    header = make_header()
    html = render_html(header, aggregate(header, cells))
    assert "server exited with code 3 &lt;boom&gt;" in html
    assert "<boom>" not in html
    assert html.count("<svg") >= 4
    assert 'class="failed"' in html
    assert "<script" not in html


def test_requests_mode_table():
    cells = [make_cell(v, "hello", "requests", level, rep, rps=rps, samples=100)
             for v, rps in (("werkzeug-single", 400.0), ("werkzeug-threaded", 800.0))
             for level in (100, 1_000) for rep in (1, 2, 3)]
    header = make_header()
    rows = aggregate(header, cells)
    assert rows[0].total_time_s.median == pytest.approx(100 / 400.0)
    md = render_markdown(header, rows)
    assert "### Total time to complete the requests" in md
    assert "| requests | werkzeug-single (s) | werkzeug-threaded (s) |" in md
    line = next(line for line in md.splitlines() if line.startswith("| 1000 |"))
    assert "2.5 [" in line and "1.25 [" in line
    assert "with 16 concurrent Locust users, over 3 repetition(s)" in md
    assert "For 1000 requests: werkzeug-single took 2.5 s, werkzeug-threaded took 1.25 s." in md


def test_threading_article_claim_is_checked_against_the_measurements():
    # single 100 RPS, threaded 105 RPS (threads barely help CPU work), 3 processes 150 RPS
    cells = [make_cell(v, "cpu", "requests", level, rep, rps=rps, samples=100)
             for v, rps in (("werkzeug-single", 100.0), ("gunicorn-gthread", 105.0), ("gunicorn-sync", 150.0))
             for level in (10, 100, 1_000) for rep in (1, 2, 3)]
    md = render_markdown(make_header(), aggregate(make_header(), cells))
    assert "### The Flask threading articles' claim, checked" in md
    line = next(line for line in md.splitlines() if line.startswith("| 1000 |") and "343.74" in line)
    assert "96.02" in line and "3.58×" in line  # the articles' figures and speed-up, quoted
    assert "gunicorn-gthread: 1.05×" in line and "gunicorn-sync: 1.50×" in line  # measured speed-ups
    assert "here, against werkzeug-single: threads (gunicorn-gthread) 1.05×, processes (gunicorn-sync) 1.50×" in md


def test_threading_article_table_needs_the_cpu_workload_and_a_single_threaded_baseline():
    cells = [make_cell(v, "hello", "requests", 100, rep, rps=100.0 + rep, samples=50)
             for v in ("werkzeug-single", "gunicorn-gthread") for rep in (1, 2)]
    assert "articles' claim" not in render_markdown(make_header(), aggregate(make_header(), cells))


def test_open_mode_sustainable_throughput():
    cells = []
    # (target RPS, median latency µs, fell behind): 400 misses the p99 bound, 800 falls behind
    for target, median_us, behind in ((100, 2_000, False), (200, 3_000, False), (400, 100_000, False),
                                      (800, 3_000, True)):
        extra = {}
        if behind:
            extra["open_load"] = {"target_rps": target, "sent": target * 7, "late_sends": 50,
                                  "max_lag_ms": 120.0, "fell_behind": True}
        cells.append(make_cell("gunicorn-sync", "io", "open", target, 1, rps=target * (0.7 if behind else 0.99),
                               median_us=median_us, samples=500, **extra))
    cells.append(make_cell("werkzeug-single", "io", "open", 100, 1, rps=60.0, median_us=400_000, samples=200))
    header = make_header(p99_bound_ms=100)
    rows = aggregate(header, cells)
    sustained = sustainable_throughput(rows, 100)
    assert sustained == {("io", "gunicorn-sync"): 200, ("io", "werkzeug-single"): None}
    md = render_markdown(header, rows)
    assert "### Target vs achieved rate" in md and "### Sustainable throughput" in md
    assert "| gunicorn-sync | 200 |" in md and "| werkzeug-single | none sustained |" in md
    assert "merged p99 stayed under 100 ms" in md
    verdict = verdicts(rows, 100)["io"]
    assert verdict.startswith("gunicorn-sync wins (open mode): it sustained 200 RPS")


def test_calibration_table_marks_low_ratio():
    cells = [make_cell("gunicorn-sync", level=8, repetition=1, rps=900.0, samples=100,
                       calibration={"wrk_rps": 1_000.0, "ratio": 0.9}),
             make_cell("gunicorn-gthread", level=8, repetition=1, rps=500.0, samples=100,
                       calibration={"wrk_rps": 1_000.0, "ratio": 0.5})]
    header = make_header()
    rows = aggregate(header, cells)
    md = render_markdown(header, rows)
    assert "### Calibration against wrk" in md
    assert ("| gunicorn-sync | hello | 8 users | 900 | 1,000 | 0.90 | 1,250 | 0.800 / — | below-saturation (server 72%, "
            "Locust 15%) |  |") in md
    assert ("| gunicorn-gthread | hello | 8 users | 500 | 1,000 | 0.50 | 1,250 | 0.800 / — | below-saturation (server 40%, "
            "Locust 15%) | ⚠ below 0.9 |") in md
    assert any("Locust, not the server, may be the limit" in w for w in row_warnings(rows[1]) + row_warnings(rows[0]))


def test_json_round_trips_rows_and_verdicts():
    cells = closed_run() + [failed_cell()]
    header = make_header()
    rows = aggregate(header, cells)
    data = json.loads(render_json(header, rows))
    assert data["kind"] == "report" and data["run_id"] == header.run_id
    assert len(data["rows"]) == len(rows)
    assert set(data["verdicts"]) == {"hello"}
    by_key = {(r["variant"], r["level"]): r for r in data["rows"]}
    measured = by_key[("gunicorn-sync", 8)]
    assert {"rps", "hdr_us", "failed_cells", "declared", "server_cpus", "latency_distribution"} <= set(measured)
    assert measured["rps"]["median"] == next(r for r in rows if r.key[0] == "gunicorn-sync" and r.level == 8).rps.median
    failed = by_key[("gunicorn-gthread", 8)]
    assert failed["rps"] is None and failed["failed_cells"][0]["error"] == "server exited with code 3 <boom>"


# ---------------------------------------------------------------- files


def test_write_report_writes_three_self_contained_files(tmp_path):
    header = make_header()
    results = write_results(tmp_path / "results.jsonl", header, closed_run() + [failed_cell()])
    before = results.read_bytes()
    paths = write_report([results], tmp_path / "report")
    assert set(paths) == {"html", "markdown", "json"}
    assert {p.name for p in paths.values()} == {"index.html", "summary.md", "report.json"}
    assert all(p.is_file() for p in paths.values())
    assert results.read_bytes() == before
    html = paths["html"].read_text(encoding="utf-8")
    assert "<svg" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.IGNORECASE)
    assert "<link" not in html and "<script" not in html
    ids = re.findall(r'\sid="([^"]+)"', html)
    assert len(ids) == len(set(ids)), "several inline SVGs must not repeat element ids"
    json.loads(paths["json"].read_text(encoding="utf-8"))
    assert "server exited with code 3" in paths["markdown"].read_text(encoding="utf-8")


def test_write_report_concatenates_files_of_one_experiment(tmp_path):
    cells = closed_run(levels=(8,), reps=2)
    first = write_results(tmp_path / "a.jsonl", make_header(run_id="run-a"), cells[:2])
    second = write_results(tmp_path / "b.jsonl", make_header(run_id="run-b"),
                           [make_cell(c.variant, c.workload, c.mode, c.level, c.repetition, rps=c.rps, samples=100,
                                      run_id="run-b") for c in cells[2:]])
    paths = write_report([first, second], tmp_path / "out")
    data = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert data["run_id"] == "run-a + run-b"
    assert {r["variant"]: r["repetitions_ok"] for r in data["rows"]} == {"werkzeug-single": 2, "gunicorn-sync": 2}


def test_write_report_errors(tmp_path):
    empty = write_results(tmp_path / "empty.jsonl", make_header(), [])
    with pytest.raises(ReportError, match="no cells"):
        write_report([empty], tmp_path / "out")
    other = write_results(tmp_path / "other.jsonl", make_header(name="other"), closed_run(levels=(1,), reps=1))
    mine = write_results(tmp_path / "mine.jsonl", make_header(), closed_run(levels=(1,), reps=1))
    with pytest.raises(ReportError, match="a report covers one experiment"):
        write_report([mine, other], tmp_path / "out")
    with pytest.raises(ReportError):
        write_report([], tmp_path / "out")
    assert issubclass(ReportError, LabError)
    assert not (tmp_path / "out").exists()


def test_compare_two_runs(tmp_path):
    old_cells = closed_run(variants={"gunicorn-sync": 1_000.0, "werkzeug-single": 500.0}, levels=(8,), reps=3)
    new_cells = closed_run(variants={"gunicorn-sync": 2_000.0, "gunicorn-gthread": 800.0}, levels=(8,), reps=3)
    # the same figures as the old run's werkzeug-single, reordered: no change
    for rep, old_rep in ((1, 3), (2, 1), (3, 2)):
        rps = next(c.rps for c in old_cells if c.variant == "werkzeug-single" and c.repetition == old_rep)
        new_cells.append(make_cell("werkzeug-single", "hello", "closed", 8, rep, rps=rps, samples=100))
    old = write_results(tmp_path / "old.jsonl", make_header(run_id="old-run"), old_cells)
    new = write_results(tmp_path / "new.jsonl", make_header(run_id="new-run"), new_cells)
    text = compare(old, new)
    assert text.startswith("# Comparison: old-run → new-run")
    assert "| variant | workload | mode | level | old RPS | new RPS | change | old p99 ms | new p99 ms |" in text
    sync = next(line for line in text.splitlines() if line.startswith("| gunicorn-sync |"))
    assert "2.00× faster [" in sync
    single = next(line for line in text.splitlines() if line.startswith("| werkzeug-single |"))
    assert "no significant difference" in single
    assert "## Only in the old run" in text and "## Only in the new run" in text
    assert "- gunicorn-gthread / hello / closed / 8 users" in text
