"""Bottleneck attribution and verdict rules on recorded rows (the real rules, no mocks).

The calibration rows are the issue-7 table from the quiet 2-core machine
(hello, 32 users, 3 repetitions): gevent/gthread at 98% server busy, the uWSGI
variants at 45–49% with Locust at 99%.
"""

from __future__ import annotations

import pytest

from report_factories import make_cell, make_header as _make_header
from serverlab.budget import Budget
from serverlab.bottleneck import (
    GENERATOR_BOUND_UTILIZATION,
    SERVER_BOUND_UTILIZATION,
    classify,
    describe,
    summarize,
)
from serverlab.report import aggregate, compare, render_html, render_json, render_markdown, verdicts
from serverlab.report.sentences import row_warnings
from report_factories import write_results

UWSGI_PROCESSES = {"server": "uwsgi", "model": "multi-process", "workers": 2, "threads": 1, "keep_alive": False,
                   "server_cpus": 1, "server_memory": "512m"}

#: variant -> (Locust RPS, wrk RPS, server CPU ms/request, server busy, Locust busiest-process share)
ISSUE_TABLE = {
    "gunicorn-gevent": (6_299, 6_400, 0.156, 0.98, 0.73),
    "gunicorn-gthread": (6_213, 6_427, 0.158, 0.98, 0.72),
    "uwsgi-processes": (5_414, 12_061, 0.082, 0.45, 0.99),
    "uwsgi-threads": (5_331, 13_172, 0.090, 0.49, 0.99),
    "werkzeug-single": (1_665, 2_971, 0.253, 0.41, 0.96),
}


def make_header(*args, configs=None, **experiment):
    """The factories' header, with uwsgi-processes as the recorded run declared it."""
    return _make_header(*args, configs={"uwsgi-processes": UWSGI_PROCESSES, **(configs or {})}, **experiment)


def classify_(cell):
    """The real rule, with the 1-CPU budget every cell here ran under."""
    return classify(cell, Budget(server_cpus=1.0))


def summarize_(cells):
    """The real summary, with the 1-CPU budget every cell here ran under."""
    return summarize(cells, Budget(server_cpus=1.0))


def recorded_cell(variant, rps, wrk, cpu_ms, busy, locust, rep, *, workload="hello", level=32, duration=5.0,
                  interference=None, **changes):
    """A cell as the runner records it (wrk in every repetition): figures per repetition vary by ±1%."""
    wobble = 1 + 0.01 * (rep - 2)
    cell = make_cell(variant, workload, "closed", level, rep, rps=rps * wobble, median_us=32e6 / rps, samples=300,
                     duration_s=duration, requests=int(rps * wobble * duration),
                     server_cpu_s=busy * wobble * duration, cpu_ms_per_request=cpu_ms * wobble,
                     loadgen_cpu_s=locust * duration, loadgen_cpu_budget=1.0, loadgen_busiest_share=locust,
                     loadgen_saturated=locust >= 0.9, interference=interference,
                     **({"calibration": {"wrk_rps": wrk * wobble, "locust_rps": rps * wobble, "ratio": rps / wrk,
                                         "repetition": rep}} if wrk else {}),
                     **changes)
    return cell


def issue_cells(table=ISSUE_TABLE, **changes):
    return [recorded_cell(v, *figures, rep, **changes) for v, figures in table.items() for rep in (1, 2, 3)]


# ---------------------------------------------------------------- attribution rules


def test_issue_rows_are_classified_with_their_figures():
    by_variant = {c.variant: classify_(c) for c in issue_cells() if c.repetition == 2}
    assert by_variant["gunicorn-gevent"].kind == "server-bound"
    assert by_variant["gunicorn-gthread"].kind == "server-bound"
    for name in ("uwsgi-processes", "uwsgi-threads", "werkzeug-single"):
        assert by_variant[name].kind == "generator-bound", name
    gevent = by_variant["gunicorn-gevent"]
    assert gevent.server_utilization == pytest.approx(0.98) and gevent.generator_utilization == 0.73
    assert "server at 98%" in gevent.reason
    assert "Locust at 99%" in by_variant["uwsgi-processes"].reason


def test_thresholds_decide_at_their_values():
    def cell(busy, locust, **kw):
        return make_cell("gunicorn-sync", duration_s=10.0, server_cpu_s=busy * 10.0, loadgen_busiest_share=locust, **kw)

    assert classify_(cell(SERVER_BOUND_UTILIZATION, 0.5)).kind == "server-bound"
    assert classify_(cell(SERVER_BOUND_UTILIZATION - 0.01, 0.5)).kind == "below-saturation"
    assert classify_(cell(0.5, GENERATOR_BOUND_UTILIZATION)).kind == "generator-bound"
    # both at their limit: the server is the bottleneck, its figure is its capacity
    assert classify_(cell(0.97, 0.99)).kind == "server-bound"
    # an open-model generator that fell behind is the bottleneck even below 90% CPU
    fell = cell(0.5, 0.6, open_load={"target_rps": 1, "sent": 1, "late_sends": 1, "max_lag_ms": 9.0, "fell_behind": True})
    assert classify_(fell).kind == "generator-bound"
    # interference wins over everything: the figure is not the server's
    busy = cell(0.99, 0.2, interference={"share": 0.3, "flagged": True, "threshold": 0.05})
    assert classify_(busy).kind == "interference" and classify_(busy).interference_share == 0.3
    assert classify_(make_cell("gunicorn-sync", status="failed", error="boom")) is None


def test_cells_without_per_process_figures_use_the_average():
    """Files before version 2: Locust's CPU over the window and its processes stands in."""
    old = make_cell("gunicorn-sync", duration_s=10.0, server_cpu_s=4.0, loadgen_cpu_s=19.0, loadgen_cpu_budget=2.0)
    assert old.loadgen_busiest_share is None
    assert classify_(old).generator_utilization == pytest.approx(0.95)
    assert classify_(old).kind == "generator-bound"


def test_summary_of_repetitions():
    quiet = [make_cell("gunicorn-sync", repetition=r, duration_s=10.0, server_cpu_s=9.5, loadgen_busiest_share=0.5)
             for r in (1, 2)]
    below = make_cell("gunicorn-sync", repetition=3, duration_s=10.0, server_cpu_s=8.0, loadgen_busiest_share=0.5)
    summary = summarize_([*quiet, below])
    assert summary.kind == "server-bound" and dict(summary.counts) == {"server-bound": 2, "below-saturation": 1}
    assert "2× server-bound" in describe(summary)
    # a tie goes to the less flattering class
    assert summarize_([quiet[0], below]).kind == "below-saturation"
    # one disturbed repetition keeps the whole row out of verdicts
    hit = make_cell("gunicorn-sync", repetition=3, duration_s=10.0, server_cpu_s=9.5, loadgen_busiest_share=0.5,
                    interference={"share": 0.12, "flagged": True, "threshold": 0.05})
    assert summarize_([*quiet, hit]).kind == "interference"


# ---------------------------------------------------------------- verdict rules


def test_issue_verdict_ranks_uwsgi_above_gevent_and_gthread_citing_wrk_and_cpu_cost():
    header = make_header("calibration", servers=list(ISSUE_TABLE), workloads=["hello"])
    rows = aggregate(header, issue_cells())
    verdict = verdicts(rows)["hello"]
    assert "gunicorn-gevent wins" not in verdict and "did 0.86×" not in verdict
    # the order: both uWSGI variants ahead of gevent and gthread, werkzeug-single last
    order = verdict[verdict.index("Order on the evidence"):]
    first_tier = order[:order.index("2.")]
    assert "uwsgi-processes" in first_tier and "uwsgi-threads" in first_tier
    assert "gunicorn-gevent" not in first_tier and "gunicorn-gthread" not in first_tier
    assert order.index("gunicorn-gevent") < order.index("werkzeug-single")
    # citing wrk and CPU cost, with the figures
    assert "wrk 12,061 [11,940–12,182] RPS" in verdict and "wrk 13,172 [" in verdict and "wrk 6,400 [" in verdict
    assert "CPU-cost capacity" in verdict and "12,195" in verdict
    assert "generator-bound" in verdict and "never on Locust's RPS" in verdict
    # the two uWSGI variants: CPU cost and wrk point opposite ways, so no winner is named
    assert verdict.startswith("uwsgi-threads, uwsgi-processes share first place (closed mode, 32 users), ahead of "
                              "gunicorn-gthread, gunicorn-gevent on wrk and CPU cost (95% CIs, no overlap); but cannot "
                              "tell on this machine which of uwsgi-threads, uwsgi-processes is fastest")
    assert "the evidence disagrees" in verdict
    assert "more CPUs for the load generator" in verdict and "smaller server budget" in verdict
    # werkzeug-single: wrk and CPU cost disagree by 33% (a serial server waits on connections)
    assert "for werkzeug-single wrk (2,971 RPS) and CPU cost (3,953 RPS) disagree by 33%" in verdict
    # the same verdict and bottleneck columns in every format
    md, html, js = render_markdown(header, rows), render_html(header, rows), render_json(header, rows)
    assert "| bottleneck |" in md and "generator-bound (server 45%, Locust 99%)" in md
    assert "server-bound (server 98%, Locust 73%)" in md
    # HTML and Markdown open on the same answer (the full verdict text stays in report.json)
    answer = ("Cannot tell which of uwsgi-threads, uwsgi-processes is fastest on hello (closed mode, 32 users); "
              "they share 1st place ahead of gunicorn-gthread, gunicorn-gevent: the evidence disagrees (wrk favours "
              "uwsgi-threads, CPU-cost capacity uwsgi-processes). "
              "What would tell: more CPUs for the load generator or a smaller server budget.")
    assert f"- {answer}" in md and f'<p class="sentence">{answer}</p>' in html
    assert "generator-bound (server 45%, Locust 99%)" in html
    assert '"class": "generator-bound"' in js and "cannot tell on this machine" in js


def test_a_clear_capacity_lead_names_the_generator_bound_winner_on_wrk_and_cpu_cost():
    table = {k: v for k, v in ISSUE_TABLE.items() if k != "uwsgi-threads"}
    verdict = verdicts(aggregate(make_header(), issue_cells(table)))["hello"]
    assert verdict.startswith("uwsgi-processes wins (closed mode, 32 users) on wrk and CPU cost: its interval clears "
                              "the runner-up gunicorn-gthread's (95% CIs, no overlap): wrk 12,061 [11,940–12,182] vs "
                              "6,427 [6,363–6,491] RPS; CPU-cost capacity")


def test_checkable_ratios_name_the_generator_bound_variants_they_leave_out():
    """'best without keep-alive' among measured rows must not silently skip a faster, generator-bound one
    (seen in the quiet calibration run: gunicorn-sync was called the best without keep-alive while
    uwsgi-processes, a floor at 4.6k RPS with wrk at 9k, was left out unnamed)."""
    sync = {**UWSGI_PROCESSES, "server": "gunicorn", "workers": 3}
    table = {"gunicorn-gthread": (5_288, 4_251, 0.186, 0.98, 0.73), "gunicorn-sync": (2_727, 3_142, 0.321, 0.85, 0.80),
             "uwsgi-processes": (4_557, 8_982, 0.122, 0.57, 0.99)}
    cells = [recorded_cell(v, *f, rep) for v, f in table.items() for rep in (1, 2, 3)]
    verdict = verdicts(aggregate(make_header(configs={"gunicorn-sync": sync}), cells))["hello"]
    assert "best with keep-alive vs best without: gunicorn-gthread" in verdict
    assert "Check (Locust RPS, among the variants Locust could load fully; left out, generator-bound: uwsgi-processes)" in verdict


def test_generator_bound_rows_without_capacity_evidence_cannot_win():
    """Without wrk (not hello) and with equal CPU costs, a floor and a server-bound figure cannot be ordered."""
    table = {"gunicorn-gevent": (6_299, 0, 0.156, 0.98, 0.73), "uwsgi-processes": (5_414, 0, 0.156, 0.85, 0.99)}
    cells = [recorded_cell(v, *f, rep, workload="json") for v, f in table.items() for rep in (1, 2, 3)]
    verdict = verdicts(aggregate(make_header(), cells))["json"]
    assert verdict.startswith("Cannot tell on this machine which of uwsgi-processes, gunicorn-gevent")
    assert "gunicorn-gevent wins" not in verdict
    assert "more CPUs for the load generator" in verdict


def test_server_bound_winner_with_a_significant_lead_is_named():
    table = {"gunicorn-gevent": (6_299, 6_400, 0.156, 0.98, 0.73), "gunicorn-sync": (3_201, 3_300, 0.300, 0.97, 0.5)}
    verdict = verdicts(aggregate(make_header(), issue_cells(table)))["hello"]
    assert verdict.startswith("gunicorn-gevent wins (closed mode, 32 users) on measured RPS and wrk and CPU cost: its "
                              "interval clears the runner-up gunicorn-sync's (95% CIs, no overlap): Locust 6,299 "
                              "[6,236–6,362] vs 3,201 [3,169–3,233] RPS (1.97× faster [")


def test_lead_inside_the_cis_names_no_winner():
    table = {k: ISSUE_TABLE[k] for k in ("gunicorn-gevent", "gunicorn-gthread")}
    verdict = verdicts(aggregate(make_header(), issue_cells(table)))["hello"]
    assert verdict.startswith("Cannot tell on this machine which of gunicorn-gthread, gunicorn-gevent")
    assert "their intervals overlap" in verdict and "more repetitions" in verdict


def test_interference_rows_are_left_out_of_the_verdict():
    disturbed = {"share": 0.25, "flagged": True, "threshold": 0.05}
    cells = issue_cells({"gunicorn-sync": (9_000, 0, 0.10, 0.99, 0.5)}, interference=disturbed)
    cells += issue_cells({k: ISSUE_TABLE[k] for k in ("gunicorn-gevent",)})
    rows = aggregate(make_header(), cells)
    verdict = verdicts(rows)["hello"]
    assert verdict.startswith("gunicorn-gevent wins")
    assert "Left out (other programs used the lab's CPUs" in verdict and "gunicorn-sync (25%" in verdict
    assert any("interference" in w for r in rows for w in row_warnings(r))
    only_disturbed = verdicts(aggregate(make_header(), issue_cells({"gunicorn-sync": (9_000, 0, 0.10, 0.99, 0.5)},
                                                                   interference=disturbed)))["hello"]
    assert only_disturbed.startswith("Cannot tell on this machine") and "quiet machine" in only_disturbed


def test_compare_shows_bottlenecks_and_marks_suspect_changes(tmp_path):
    header = make_header()
    old = write_results(tmp_path / "old.jsonl", header, issue_cells())
    new = write_results(tmp_path / "new.jsonl", header, issue_cells())
    text = compare(old, new)
    assert "| old bottleneck | new bottleneck |" in text
    assert "generator-bound (server 45%, Locust 99%)" in text
    assert "(not the server's: generator-bound)" in text


def test_open_mode_verdict_leaves_out_interference():
    disturbed = {"share": 0.4, "flagged": True, "threshold": 0.05}
    cells = [make_cell("gunicorn-gevent", "io", "open", rate, 1, rps=float(rate)) for rate in (100, 200)]
    cells += [make_cell("gunicorn-sync", "io", "open", rate, 1, rps=float(rate), interference=disturbed)
              for rate in (100, 200, 400)]
    verdict = verdicts(aggregate(make_header(), cells), 100)["io"]
    assert verdict.startswith("gunicorn-gevent wins (open mode): it sustained 200 RPS")
    assert "Left out (other programs used the lab's CPUs while they ran: interference): gunicorn-sync." in verdict


def test_a_failed_calibration_is_a_warning_not_a_crash():
    """wrk missing or failing leaves a note instead of figures; the report still renders."""
    cells = [make_cell("gunicorn-sync", repetition=r, calibration={"note": "wrk failed: wrk: not found"}) for r in (1, 2)]
    rows = aggregate(make_header(), cells)
    assert rows[0].calibration is None
    assert any("calibration: wrk failed" in w for w in row_warnings(rows[0]))
    assert "gunicorn-sync" in render_markdown(make_header(), rows)


def test_many_tied_variants_explain_three_pairs_and_count_the_rest():
    """One repetition each (no CIs): 5 variants in one tier make 10 unresolved pairs; the
    verdict explains the leader's 3 closest pairs, counts the other 7, and still lists every
    variant's figures under Evidence."""
    table = {f"v{i}": (5_000 + 100 * i, 0, 0.190, 0.97, 0.7) for i in range(5)}
    cells = [recorded_cell(v, *f, 1, workload="json") for v, f in table.items()]
    verdict = verdicts(aggregate(make_header(), cells))["json"]
    assert verdict.startswith("Cannot tell on this machine which of ")
    assert verdict.count(" vs v") == 3
    assert "7 more pairs among them cannot be told apart either" in verdict
    assert all(f"{v}: server-bound" in verdict.split("Evidence — ", 1)[1] for v in table)
