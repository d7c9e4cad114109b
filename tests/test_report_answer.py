"""The report answers first (issue 18): one sentence, the places and their evidence, in every format.

On a recorded 13-variant calibration run (:func:`report_factories.calibration_run`) and on
small hand-made runs: summary.md's verdict section stays short, report.json holds the
answer as data, findings are grouped per kind and variant, settings read as a table.
"""

from __future__ import annotations

import json
import re

import pytest

from report_factories import CALIBRATION_TABLE, calibration_run, make_cell, make_header, write_results
from serverlab.report import aggregate, answer_rows, answers, render_html, render_json, render_markdown, write_report
from serverlab.report.document import build_document
from serverlab.report.sentences import grouped_findings


@pytest.fixture(scope="module")
def calibration():
    header, cells = calibration_run()
    return header, aggregate(header, cells)


def md_section(text: str, heading: str) -> list[str]:
    """The lines of a ``## heading`` section of a Markdown text, heading included, up to the next ``## ``."""
    lines = text.splitlines()
    start = lines.index(f"## {heading}")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[start:end]


def test_summary_md_opens_on_the_answer_and_its_verdict_section_is_short(calibration):
    header, rows = calibration
    text = render_markdown(header, rows)
    first = [line for line in text.splitlines() if line.strip()][:4]
    assert first[0] == "# serverlab report: calibration" and first[1] == "## Verdict"
    assert first[2].startswith("- ") and " hello (closed mode, 32 users)" in first[2]
    assert first[3].startswith("| place | server | model | RPS [95% CI] | p99 ms | CPU ms/req | bottleneck | evidence used |")
    verdict = md_section(text, "Verdict")
    assert len(verdict) <= 25, "\n".join(verdict)
    table = [line for line in verdict if line.startswith("| ") and not line.startswith("| place")]
    assert len(table) == len(CALIBRATION_TABLE)  # one row per variant
    assert all(len(line) <= 400 for line in verdict if not line.startswith("|")), verdict
    # and no paragraph or list line anywhere in the file is over ~400 characters (table rows aside)
    assert [line[:80] for line in text.splitlines() if len(line) > 400 and not line.startswith("|")] == []
    # the run's settings are a table, not a dump of key=value pairs
    assert "calibrate=True, duration=5.0" not in text
    assert "| calibrate | True |" in text and "| duration | 5.0 |" in text


def test_report_json_holds_the_answer_per_workload_as_data(calibration):
    header, rows = calibration
    data = json.loads(render_json(header, rows))
    assert data["version"] == 2
    answer = data["answers"]["hello"]
    assert answer["mode"] == "closed" and answer["level"] == 32 and len(answer["sentence"]) <= 400
    ranked = [v for place in answer["places"] for v in place]
    assert sorted(ranked) == sorted(CALIBRATION_TABLE)  # every variant has a place
    by_variant = {v["variant"]: v for v in answer["variants"]}
    for name, place in ((v, i) for i, vs in enumerate(answer["places"], start=1) for v in vs):
        assert by_variant[name]["place"] == place
        assert by_variant[name]["shared"] == (len(answer["places"][place - 1]) > 1)
    # the evidence each place rests on, with its figures; Locust's RPS never for a generator-bound variant
    threads = by_variant["uwsgi-threads"]
    assert threads["bottleneck"] == "generator-bound"
    # its Locust RPS counts only as a floor; wrk ran in every repetition, so its interval decides too
    assert {"wrk", "CPU cost"} <= set(threads["evidence"])
    figures = {f["source"]: f for f in threads["figures"]}
    assert figures["wrk"]["median"] == pytest.approx(10_855)
    assert figures["wrk"]["low"] < figures["wrk"]["median"] < figures["wrk"]["high"]
    assert figures["CPU cost"]["low"] <= figures["CPU cost"]["median"] <= figures["CPU cost"]["high"]
    # a winner is named with its lead, or nobody is and the answer says what would tell
    if answer["winner"]:
        assert answer["runner_up"] and answer["lead"]["ratio"] > 1 and answer["places"][0] == [answer["winner"]]
    else:
        assert answer["what_would_tell"] and answer["sentence"].startswith("Cannot tell")
    assert data["verdicts"]["hello"]  # the full reasoning in words is kept beside it


def test_places_follow_the_ranking_and_the_reasons_are_rows_per_variant(calibration):
    header, rows = calibration
    [answer] = answers(rows)
    places = [p.place for p in answer.placed]
    assert places == sorted(places)
    # the README's verdict for these figures: werkzeug-threaded last on wrk and CPU cost
    assert answer.placed[-1].variant == "werkzeug-threaded"
    reasons = {p.variant: " ".join(p.reasons) for p in answer.placed}
    assert "disagree by 30%" in reasons["uwsgi-threads"]  # wrk 10,855 vs CPU-cost capacity 7,634
    assert "generator-bound: Locust's" in reasons["uwsgi-threads"]
    assert "nginx in front of gunicorn" in reasons["nginx-gunicorn"]  # the proxy's cost, on the proxied row
    doc = build_document(header, rows)
    [block] = doc.blocks
    assert [r[0] for r in block.reasons.rows] == [p.variant for p in answer.placed if p.reasons]
    assert block.reasons.list_columns == {2}
    assert all(len(item) <= 400 for r in block.reasons.rows for item in r[2].splitlines())


def test_findings_are_grouped_per_kind_and_variant_with_their_repetitions(calibration):
    header, rows = calibration
    lines = grouped_findings(rows)
    saturated = [line for line in lines if "load generator saturated" in line]
    generator_bound = [v for v, (_, _, _, share) in CALIBRATION_TABLE.items() if share >= 0.9]
    assert sorted(line.split(":")[0] for line in saturated) == sorted(generator_bound)
    assert all(line.endswith(": r1–r3") for line in saturated), saturated
    doc = build_document(header, rows)
    assert len(doc.findings) < len(doc.warnings) / 2  # one line per kind and variant, not per repetition
    html = render_html(header, rows)
    assert f"All {len(doc.warnings)} findings, one per row and repetition</summary>" in html


def test_html_opens_on_the_answer_with_the_run_details_folded(calibration):
    header, rows = calibration
    html = render_html(header, rows)
    body = html[html.index("<body>"):]
    assert body.index('<details id="run" class="run">') < body.index('<section id="verdict"') \
        < body.index('<figure class="ranking">') < body.index("<h2>Workload hello: closed mode</h2>")
    assert '<details id="run" class="run" open' not in html
    # the servers list folds behind its count
    assert re.search(r"<th>servers</th><td><details><summary>13: [a-z0-9-]+, [a-z0-9-]+, …</summary>", html)


def test_a_lead_inside_the_intervals_says_cannot_tell_and_what_would_tell():
    cells = [make_cell(v, "json", "closed", 8, r, rps=base * (1 + 0.03 * (r - 2))) for v, base in
             (("gunicorn-gthread", 1000.0), ("gunicorn-gevent", 1010.0)) for r in (1, 2, 3)]
    [answer] = answers(aggregate(make_header(), cells))
    assert answer.winner is None and answer.places == [["gunicorn-gevent", "gunicorn-gthread"]]
    assert answer.sentence.startswith("Cannot tell which of gunicorn-gevent, gunicorn-gthread is fastest on json")
    assert "What would tell: more repetitions or longer cells." in answer.sentence


def test_a_clear_winner_is_named_with_its_interval():
    cells = [make_cell(v, "hello", "closed", 8, r, rps=base * (1 + 0.01 * (r - 2))) for v, base in
             (("werkzeug-single", 500.0), ("gunicorn-sync", 1000.0)) for r in (1, 2, 3)]
    [answer] = answers(aggregate(make_header(), cells))
    assert answer.winner == "gunicorn-sync" and answer.runner_up == "werkzeug-single"
    assert re.match(r"gunicorn-sync wins hello \(closed mode, 8 users\) on Locust RPS: Locust RPS 1,000 "
                    r"\[[\d,]+–[\d,]+\] vs 500 \[[\d,]+–[\d,]+\] RPS for the runner-up werkzeug-single, "
                    r"2\.00× \[[\d.]+–[\d.]+\]\.$", answer.sentence), answer.sentence


def test_the_web_uis_compare_result_gets_the_same_answer_rows(calibration):
    header, rows = calibration
    [data] = answer_rows(rows)
    assert data == json.loads(json.dumps(answers(rows)[0].to_dict()))
    assert data["places"] and data["sentence"] == answers(rows)[0].sentence


def test_open_mode_answers_on_the_sustained_rate():
    cells = [make_cell("gunicorn-gevent", "io", "open", rate, 1, rps=float(rate)) for rate in (100, 200)]
    cells += [make_cell("gunicorn-sync", "io", "open", 100, 1, rps=100.0)]
    [answer] = answers(aggregate(make_header(), cells))
    assert answer.winner == "gunicorn-gevent" and answer.places == [["gunicorn-gevent"], ["gunicorn-sync"]]
    assert answer.sentence.startswith("gunicorn-gevent wins io (open mode, p99 under 100 ms): it sustained 200 RPS")
    html = render_html(make_header(), aggregate(make_header(), cells))  # the chart's bars: the sustained rates
    assert "io (open mode, p99 under 100 ms): places on the evidence" in html
    assert "RPS (bars: sustained target rate, median)" in html


def test_grouped_findings_name_the_workload_and_level_when_a_run_has_several():
    from serverlab.findings import WarmupTrend

    cells = [make_cell("gunicorn-sync", w, "closed", level, r, findings=[WarmupTrend(0.1 + 0.01 * r)] if r != 2 else [])
             for w in ("hello", "io") for level in (8, 32) for r in (1, 2, 3)]
    lines = grouped_findings(aggregate(make_header(), cells))
    assert lines == ["gunicorn-sync: warm-up trend (throughput rose up to 13% within the window): "
                     "hello 8 users r1, r3, hello 32 users r1, r3, io 8 users r1, r3, io 32 users r1, r3"]


def test_old_results_files_still_render_the_answer(tmp_path):
    """A results file of schema version 1 (warnings as sentences, no bottleneck figures) renders."""
    cells = [make_cell(v, "hello", "closed", 8, r, rps=base + r) for v, base in
             (("werkzeug-single", 500.0), ("gunicorn-sync", 900.0)) for r in (1, 2)]
    path = write_results(tmp_path / "results.jsonl", make_header(), cells)
    lines = path.read_text().splitlines()
    old = []
    for line in lines[1:]:
        cell = json.loads(line)
        for key in ("findings", "timeline", "loadgen_busiest_share", "calibration", "interference", "bottleneck"):
            cell.pop(key, None)
        cell["warnings"], cell["version"] = ["a warning sentence from an old runner"], 1
        old.append(json.dumps(cell))
    header = json.loads(lines[0])
    header["version"] = 1
    path.write_text("\n".join([json.dumps(header), *old]) + "\n")
    written = write_report([path], tmp_path / "out")
    summary = written["markdown"].read_text()
    assert "- gunicorn-sync wins hello (closed mode, 8 users) on Locust RPS" in summary
    assert "a warning sentence from an old runner" in summary
    assert json.loads(written["json"].read_text())["answers"]["hello"]["winner"] == "gunicorn-sync"


def test_variants_not_ranked_are_rows_of_the_table_saying_why():
    disturbed = {"share": 0.25, "flagged": True, "threshold": 0.05}
    cells = [make_cell(v, "hello", "closed", 8, r, rps=base * (1 + 0.01 * (r - 2)), **extra)
             for v, base, extra in (("gunicorn-sync", 1000.0, {}), ("werkzeug-single", 500.0, {}),
                                    ("gunicorn-gthread", 3000.0, {"interference": disturbed}))
             for r in (1, 2, 3)]
    cells.append(make_cell("uwsgi-threads", "hello", "closed", 8, 1, status="failed", error="server exited <boom>"))
    header = make_header()
    rows = aggregate(header, cells)
    [answer] = answers(rows)
    assert answer.winner == "gunicorn-sync"  # the disturbed gunicorn-gthread is faster but left out
    left = {p.variant: p.left_out for p in answer.placed if p.place is None}
    assert left == {"uwsgi-threads": "every repetition failed (server exited <boom>)", "gunicorn-gthread": "interference"}
    [block] = build_document(header, rows).blocks
    by_server = {r[1]: r for r in block.table.rows}
    assert by_server["gunicorn-gthread"][0] == "—" and by_server["gunicorn-gthread"][-1] == "not ranked: interference"
    assert {i for i, r in enumerate(block.table.rows) if r[0] == "—"} == block.table.failed_rows
    why = {r[0]: r[2] for r in block.reasons.rows}
    assert "rerun on a quiet machine or with --retry-busy N" in why["gunicorn-gthread"]
    data = json.loads(render_json(header, rows))["answers"]["hello"]
    assert {v["variant"]: v["left_out"] for v in data["variants"] if v["place"] is None} == left


def test_nothing_ranked_still_lists_every_variant_with_why():
    cells = [make_cell(v, "hello", "closed", 8, 1, status="failed", error="boom") for v in ("gunicorn-sync", "waitress")]
    [answer] = answers(aggregate(make_header(), cells))
    assert answer.winner is None and answer.places == [] and answer.sentence.startswith("No winner on hello")
    assert [(p.variant, p.left_out) for p in answer.placed] == [("gunicorn-sync", "every repetition failed (boom)"),
                                                                ("waitress", "every repetition failed (boom)")]
