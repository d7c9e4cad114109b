"""The report package's shape: light imports, small modules, one table function, workloads by character."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from report_factories import make_cell, make_header, write_results
from serverlab.report import aggregate, compare, render_markdown, verdicts
from serverlab.report.model import Table
from serverlab.report.to_markdown import md_table
from serverlab.report.verdicts import PRINCIPLES, principle
from serverlab.terms import WORKLOADS
from serverlab.workloadspec import Character, WorkloadSpec

REPORT_DIR = Path(__file__).resolve().parents[1] / "serverlab" / "report"


def test_aggregating_does_not_load_matplotlib():
    code = ("import sys; from serverlab.report import aggregate, verdicts, render_markdown, render_json; "
            "print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_no_report_module_is_over_400_lines():
    sizes = {path.name: len(path.read_text().splitlines()) for path in REPORT_DIR.glob("*.py")}
    assert len(sizes) >= 10
    assert {name: n for name, n in sizes.items() if n > 400} == {}


def test_compare_lays_out_its_table_with_the_reports_table_function(tmp_path):
    header = make_header()
    old = write_results(tmp_path / "old.jsonl", header, [make_cell("gunicorn-sync", repetition=r) for r in (1, 2)])
    new = write_results(tmp_path / "new.jsonl", header, [make_cell("werkzeug-single", repetition=r) for r in (1, 2)])
    text = compare(old, new)
    empty = Table(["variant", "workload", "mode", "level", "old RPS", "new RPS", "change", "old p99 ms",
                   "new p99 ms", "old bottleneck", "new bottleneck"], [["(no cells in common)"] + [""] * 10])
    assert "\n".join(md_table(empty)) in text
    assert "- gunicorn-sync / hello / closed / 8 users" in text and "- werkzeug-single / hello / closed / 8 users" in text


def test_principles_follow_the_workloads_character(monkeypatch):
    assert principle("io") == PRINCIPLES[Character.IO]
    assert principle("cpu", cpus=2) == PRINCIPLES[Character.CPU].format(cpus=2)
    assert principle("hello").startswith("Each request does almost no work")
    assert principle("json").startswith("Each request does little work (serializing a small JSON document)")
    assert principle("no-such-workload") == ""
    # a workload added to the terms gets its character's principle and branches without report changes
    monkeypatch.setitem(WORKLOADS, "sqrt", WorkloadSpec("sqrt", "/sqrt", character=Character.CPU))
    cells = [make_cell(v, "sqrt", "closed", 8, r, rps=base + r) for v, base in
             (("werkzeug-single", 500.0), ("gunicorn-gthread", 1500.0)) for r in (1, 2, 3)]
    text = verdicts(aggregate(make_header(), cells))["sqrt"]
    assert PRINCIPLES[Character.CPU].format(cpus=1) in text
    assert "threads helped more than the GIL allows for pure CPU work" in text


def test_a_workload_the_report_has_no_words_for_still_renders():
    cells = [make_cell(v, "gremlin", "closed", 8, r, rps=base + r) for v, base in
             (("werkzeug-single", 500.0), ("gunicorn-sync", 900.0)) for r in (1, 2, 3)]
    header = make_header()
    rows = aggregate(header, cells)
    summary = render_markdown(header, rows)
    assert "## Workload gremlin: closed mode" in summary
    assert "- gunicorn-sync wins gremlin (closed mode, 8 users)" in summary
