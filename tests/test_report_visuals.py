"""Report visuals (ranking and over-time charts, tables that fit) and the runs the web UI lists."""

from __future__ import annotations

import re

import pytest
from report_factories import CONFIGS, DEFAULT_CONFIG, make_cell, make_header, make_timeline, write_results

from serverlab.report import aggregate, render_html
from serverlab.report.charts import ranking_charts, timeline_charts
from serverlab.runfolders import list_runs

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
    header = make_header(configs={v: {**CONFIGS.get(v, DEFAULT_CONFIG), "command": command} for v in {c.variant for c in cells}})
    html = render_html(header, aggregate(header, cells))
    assert '<td class="long"><details><summary>' in html
    assert " ".join(command) in html  # folded, not cut


def test_reports_tab_lists_runs_newest_first_without_the_latest_link(tmp_path):
    from serverlab.ui.web import run_listing

    for name, started in (("20260101-000000-old", 100.0), ("20260102-000000-new", 200.0)):
        (tmp_path / name).mkdir()
        header = make_header(name.split("-")[-1], run_id=name)
        header.metadata["started_at"] = started
        write_results(tmp_path / name / "results.jsonl", header, cells_for([8], repetitions=1, timelines=False))
    (tmp_path / "20260102-000000-new" / "index.html").write_text("<html></html>")
    (tmp_path / "latest").symlink_to(tmp_path / "20260102-000000-new")
    (tmp_path / "README.md").write_text("not a run")
    runs = list_runs(tmp_path)  # oldest first, as `--resume latest` reads it
    assert [r.path.name for r in runs] == ["20260101-000000-old", "20260102-000000-new"]
    assert [r.experiment for r in runs] == ["old", "new"] and runs[1].started_at == 200.0
    assert list_runs(tmp_path / "missing") == []
    listed = run_listing(tmp_path)  # the Reports tab: newest first, cells counted, report linked when there
    assert [(r["name"], r["experiment"], r["cells"], r["has_html"]) for r in listed] == [
        ("20260102-000000-new", "new", 3, True), ("20260101-000000-old", "old", 3, False)]
