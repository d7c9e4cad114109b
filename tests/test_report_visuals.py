"""Report visuals (ranking and over-time charts, tables that fit) and the web UI's results files."""

from __future__ import annotations

import os
import re
import time

import pytest
from report_factories import make_cell, make_header, make_timeline, write_results

from serverlab.findings import UIMeasured
from serverlab.report import aggregate, render_html
from serverlab.report.charts import ranking_charts, timeline_charts
from serverlab.results import read_results
from serverlab.histograms import latency_summary, merge_histograms
from serverlab.uicompare import UI_CELL_WARNING, UICompareError, comparison_results, list_runs

VARIANTS = {"gunicorn-sync": 900.0, "gunicorn-gthread": 2300.0, "werkzeug-single": 700.0}


def cells_for(levels, repetitions=3, timelines=True):
    cells = []
    for level in levels:
        for variant, rps in VARIANTS.items():
            for rep in range(1, repetitions + 1):
                value = rps * (1 + 0.02 * rep)
                extra = {"timeline": make_timeline(value, 1e6 * level / value, seed=rep)} if timelines else {}
                cells.append(make_cell(variant, "hello", "closed", level, rep, rps=value,
                                       median_us=1e6 * level / value, **extra))
    return cells


def test_ranking_chart_per_level_best_first_with_ci_whiskers():
    header = make_header(workloads=["hello"])
    rows = aggregate(header, cells_for([8, 64]))
    charts = ranking_charts(rows)
    assert [c.title for c in charts] == ["hello (closed) at 8 users: servers ranked by RPS",
                                         "hello (closed) at 64 users: servers ranked by RPS"]
    svg = charts[0].svg
    labels = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
    # y tick labels top to bottom: best first; then the bar labels (median RPS) in the same order
    assert [t for t in labels if t in VARIANTS] == ["gunicorn-gthread", "gunicorn-sync", "werkzeug-single"]
    after = labels.index("werkzeug-single") + 1
    values = [float(t.replace(",", "")) for t in labels[after:after + 3]]
    assert values == sorted(values, reverse=True) and values[0] > 2000, labels
    assert "95% CI whiskers" in svg


def test_one_repetition_ranking_says_there_is_no_ci():
    rows = aggregate(make_header(workloads=["hello"]), cells_for([8], repetitions=1))
    [chart] = ranking_charts(rows)
    assert "1 repetition: no CI" in chart.svg


def test_one_level_report_ranks_instead_of_drawing_a_column_of_dots():
    header = make_header(workloads=["hello"])
    one = render_html(header, aggregate(header, cells_for([8])))
    assert "servers ranked by RPS" in one and "RPS vs load" not in one
    several = render_html(header, aggregate(header, cells_for([8, 64])))
    assert "servers ranked by RPS" in several and "RPS vs load" in several


def test_timeline_chart_per_level_with_the_warm_up_shaded():
    header = make_header(workloads=["hello"])
    rows = aggregate(header, cells_for([8, 64]))
    assert all(len(r.timelines) == 3 for r in rows)
    charts = timeline_charts(rows)
    assert [c.title for c in charts] == [
        "hello (closed) at 8 users: throughput and p99 per second (warm-up shaded)",
        "hello (closed) at 64 users: throughput and p99 per second (warm-up shaded)"]
    assert "warm-up" in charts[0].svg and "p99 ms (per second)" in charts[0].svg


def test_runs_without_timelines_get_no_over_time_chart():
    rows = aggregate(make_header(), cells_for([8], timelines=False))
    assert timeline_charts(rows) == []


def test_long_commands_fold_and_long_texts_wrap_in_html_tables():
    cells = cells_for([8], repetitions=1)
    command = ["/opt/venv/bin/python", "-m", "gunicorn", "--bind", "0.0.0.0:8000", "--workers", "3",
               "--worker-class", "sync", "--worker-tmp-dir", "/dev/shm", "--keep-alive", "5", "labapp.wsgi:app"]
    for cell in cells:
        cell.config["command"] = command
    header = make_header()
    html = render_html(header, aggregate(header, cells))
    assert '<td class="long"><details><summary>' in html
    assert " ".join(command) in html  # folded, not cut


def ui_row(server, position, samples_us, status="ok", processes=2):
    from report_factories import histogram_of, encode

    hist = histogram_of(samples_us)
    merged = merge_histograms([encode(hist)])
    return {"server": server, "position": position, "status": status, "error": None, "started_at": 1_767_225_600.0,
            "duration_s": 3.0, "requests": len(samples_us), "failures": 0, "rps": len(samples_us) / 3.0,
            "latency_us": latency_summary(merged), "hdr": encode(hist), "processes": processes}


def test_compare_tab_results_read_back_as_a_make_report_run(tmp_path):
    rows = [ui_row("gunicorn-sync", 0, range(1000, 4000)), ui_row("uwsgi-threads", 1, range(500, 6500)),
            {"server": "werkzeug-single", "position": 2, "status": "waiting"}]
    configs = {"gunicorn-sync": {"model": "multi-process", "workers": 3, "threads": 1, "keep_alive": False}}
    jsonl, markdown = comparison_results("20261121-053258-ui-compare", "hello", {}, 8, 3.0, 1.0, 42,
                                         1_767_225_600.0, rows, configs)
    path = tmp_path / "results.jsonl"
    path.write_text(jsonl)
    header, cells = read_results(path)
    assert header.run_id == "20261121-053258-ui-compare" and header.experiment["seed"] == 42
    assert [c.variant for c in cells] == ["gunicorn-sync", "uwsgi-threads"]  # the waiting server is left out
    sync = cells[0]
    assert sync.requests == 3000 and sync.rps == pytest.approx(1000.0)
    assert sync.latency_us["p50"] == pytest.approx(2500, rel=0.01)  # µs, from the merged histogram
    assert sync.config["workers"] == 3 and sync.config["loadgen_processes"] == 2
    assert sync.findings == (UIMeasured(),)
    assert f"{sync.variant} / hello / closed / 8 users (repetition 1): {UI_CELL_WARNING}" in \
        aggregate(header, cells)[0].warnings
    assert "## Workload hello: closed mode" in markdown and "uwsgi-threads" in markdown
    # the same file renders like any run
    write_results(tmp_path / "again.jsonl", header, cells)
    assert "servers ranked by RPS" in render_html(header, aggregate(header, cells))


def test_compare_tab_marks_a_saturated_generator_as_the_bottleneck(tmp_path):
    rows = [{**ui_row("uwsgi-processes", 0, range(100, 900)), "generator_share": 0.97},
            {**ui_row("gunicorn-sync", 1, range(1000, 4000)), "generator_share": 0.41}]
    jsonl, markdown = comparison_results("20261121-060000-ui-compare", "hello", {}, 8, 3.0, 1.0, 7, 0.0, rows, {})
    (tmp_path / "results.jsonl").write_text(jsonl)
    _, cells = read_results(tmp_path / "results.jsonl")
    saturated, calm = cells
    assert saturated.loadgen_saturated and saturated.loadgen_busiest_share == pytest.approx(0.97)
    assert not calm.loadgen_saturated and calm.loadgen_busiest_share == pytest.approx(0.41)
    assert "generator-bound" in markdown


def test_compare_tab_with_nothing_measured_has_nothing_to_download():
    with pytest.raises(UICompareError, match="no server has been measured"):
        comparison_results("x", "hello", {}, 8, 3.0, 1.0, 1, 0.0, [{"server": "a", "status": "running"}], {})


def test_reports_tab_lists_runs_newest_first_without_the_latest_link(tmp_path):
    for name, age in (("20260101-000000-old", 100), ("20260102-000000-new", 10)):
        write_results(tmp_path / name / "results.jsonl" if (tmp_path / name).mkdir() is None else None,
                      make_header(name.split("-")[-1]), cells_for([8], repetitions=1, timelines=False))
        stamp = time.time() - age
        os.utime(tmp_path / name / "results.jsonl", (stamp, stamp))
    (tmp_path / "20260102-000000-new" / "index.html").write_text("<html></html>")
    (tmp_path / "latest").symlink_to(tmp_path / "20260102-000000-new")
    (tmp_path / "README.md").write_text("not a run")
    runs = list_runs(tmp_path)
    assert [r["name"] for r in runs] == ["20260102-000000-new", "20260101-000000-old"]
    assert runs[0]["experiment"] == "new" and runs[0]["cells"] == 3 and runs[0]["has_html"]
    assert not runs[1]["has_html"]
    assert list_runs(tmp_path / "missing") == []
