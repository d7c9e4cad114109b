"""Findings as data: produced once (runner / aggregation), stored in results v3, worded once in the report.

The key check: a results file of schema version 2 (warnings stored as the runner's sentences)
and one of version 3 (the same facts stored as findings) render the same report, byte for byte.
The v2 sentences below are copied from the runner as it wrote them before version 3.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import pytest

from report_factories import make_cell, make_header, write_results
from serverlab.records import Interference, OpenLoad
from serverlab.findings import (
    FINDING_TYPES,
    WARMUP_TREND_THRESHOLD,
    CalibrationFailed,
    CalibrationLow,
    FailedRequests,
    RepetitionsLeftOut,
    FellBehind,
    FindingKind,
    GeneratorSaturated,
    HistogramsUnmerged,
    HostSpeedChanged,
    InterferenceFlagged,
    Note,
    UIMeasured,
    Unanswered,
    Unstable,
    WarmupTrend,
    cell_findings,
    finding_from_dict,
)
from serverlab.loadgen import LoadOutcome
from serverlab.report import aggregate, sentence, write_report
from serverlab.report.sentences import row_warnings
from serverlab.results import SCHEMA_VERSION, Calibration, ResultsError, read_results

#: (findings of a v3 cell, the warnings a v2 runner wrote for the same facts)
RECORDED = [
    ([GeneratorSaturated(0.99, False)],
     ["load generator saturated (99% of a core): this figure measures Locust, not the server; raise "
      "budget.loadgen_processes or give the generator more CPUs"]),
    ([GeneratorSaturated(0.934, True), WarmupTrend(-0.27)],
     ["load generator saturated (93% of a core, Locust warned of high CPU): this figure measures Locust, not the "
      "server; raise budget.loadgen_processes or give the generator more CPUs",
      "throughput fell 27% from the first to the last third of the measured period: a warm-up trend (or a "
      "degrading server); raise warmup or duration"]),
    ([WarmupTrend(0.14), InterferenceFlagged(0.31, 0.2), FailedRequests(3, 6000)],
     ["throughput rose 14% from the first to the last third of the measured period: a warm-up trend (or a "
      "degrading server); raise warmup or duration",
      "other programs used 31% of the lab's CPUs during the window (interference; threshold 20%): this figure is "
      "not the server's alone; rerun on a quiet machine or with --retry-busy N",
      "3 of 6000 requests failed"]),
]
OPEN_RECORDED = ([Unanswered(4), FellBehind(17, 312.25)],
                 ["4 request(s) sent but not answered when Locust stopped",
                  "the generator fell behind its schedule: 17 late sends, max lag 312.2 ms"])


def v2_line(cell) -> str:
    """The cell as a version-2 results line: ``warnings`` sentences, no ``findings``, and the variant's
    ``config`` (with the budget) and the ``workload_params`` in the cell, as versions 1-3 stored them."""
    data = json.loads(cell.to_json())
    data.pop("findings")
    header = make_header()
    data.update(version=2, config={**header.variant(cell.variant).to_dict(), **header.experiment["budget"]},
                workload_params=header.workload_params(cell.workload))
    return json.dumps(data, sort_keys=True)


def recorded_cells():
    """(v3 cells, the same cells' v2 lines) covering every kind the runner records."""
    cells, lines = [], []
    variants = ["gunicorn-sync", "werkzeug-single", "gunicorn-gthread"]
    for (findings, texts), variant in zip(RECORDED, variants):
        for rep in (1, 2):
            cell = make_cell(variant, "hello", "closed", 8, rep, rps=1000.0 + rep, samples=200,
                             loadgen_saturated=any(isinstance(f, GeneratorSaturated) for f in findings),
                             findings=findings)
            cells.append(cell)
            data = json.loads(v2_line(cell))
            data["warnings"] = texts
            lines.append(json.dumps(data, sort_keys=True))
    findings, texts = OPEN_RECORDED
    cell = make_cell("gunicorn-sync", "io", "open", 50, 1, rps=49.0, samples=200, findings=findings)
    cells.append(cell)
    data = json.loads(v2_line(cell))
    data["warnings"] = texts
    lines.append(json.dumps(data, sort_keys=True))
    return cells, lines


def test_a_v2_file_and_a_v3_file_of_the_same_facts_render_the_same_report(tmp_path):
    header = make_header(servers=["gunicorn-sync", "werkzeug-single", "gunicorn-gthread"])
    cells, lines = recorded_cells()
    v3 = write_results(tmp_path / "v3.jsonl", header, cells)
    header_line = json.dumps({**json.loads(header.to_json()), "version": 2}, sort_keys=True)
    v2 = tmp_path / "v2.jsonl"
    v2.write_text("\n".join([header_line, *lines]) + "\n", encoding="utf-8")
    assert all(json.loads(line)["version"] == SCHEMA_VERSION for line in v3.read_text().splitlines())
    _, old_cells = read_results(v2)
    assert all(isinstance(f, Note) for c in old_cells for f in c.findings)
    out3, out2 = write_report([v3], tmp_path / "r3"), write_report([v2], tmp_path / "r2")
    # the same report but for the grouped findings lines: a v3 file's findings group by kind
    # ("load generator saturated: r1, r2"), a v2 file's sentences only by their text
    marks = {"markdown": ("## Findings", "<details>"), "html": ('<section id="findings">', '<details class="all-findings">')}
    for kind, (start, end) in marks.items():
        texts = [out[kind].read_text(encoding="utf-8") for out in (out3, out2)]
        same = [t[:t.index(start)] + t[t.index(end):] for t in texts]
        assert same[0] == same[1], kind
    reports = [json.loads(out["json"].read_text(encoding="utf-8")) for out in (out3, out2)]
    grouped = [report.pop("findings") for report in reports]
    assert reports[0] == reports[1] and len(grouped[0]) <= len(grouped[1])
    summary = out3["markdown"].read_text()
    for _, texts in [*RECORDED, OPEN_RECORDED]:
        for text in texts:
            assert f"(repetition 1): {text}" in summary
    # the row-level saturation sentence and the short note are written once too
    assert "the load generator was saturated (CPU at its budget)" in summary
    assert "load generator saturated" in summary


def test_every_kind_round_trips_through_a_results_file_and_has_a_sentence(tmp_path):
    examples = [Note("older text"), GeneratorSaturated(0.95, True), WarmupTrend(0.2), InterferenceFlagged(0.4, 0.2),
                Unanswered(2), FailedRequests(1, 10), FellBehind(3, 4.5), UIMeasured(), Unstable(0.3, 3, 0.1),
                CalibrationFailed("wrk failed: not found"), CalibrationLow(0.5, 0.9), HistogramsUnmerged("bad"),
                HostSpeedChanged(0.12, 0.05, 300.0, 336.0, 300.0), RepetitionsLeftOut(1, 2)]
    assert {f.kind for f in examples} == set(FindingKind) == set(FINDING_TYPES)
    for finding in examples:
        assert finding_from_dict(json.loads(json.dumps(finding.to_dict()))) == finding
        assert sentence(finding) and sentence(finding, about_one_cell=False)
    cell = make_cell(findings=examples, calibration={"wrk_rps": 2000.0, "locust_rps": 1000.0, "ratio": 0.5})
    path = write_results(tmp_path / "r.jsonl", make_header(), [cell])
    stored = json.loads(path.read_text().splitlines()[1])
    assert stored["findings"][1] == {"kind": "generator-saturated", "busiest_share": 0.95, "cpu_warning": True}
    assert stored["calibration"] == {"wrk_rps": 2000.0, "locust_rps": 1000.0, "ratio": 0.5}
    (back,) = read_results(path)[1]
    assert back == cell and back.calibration == Calibration(wrk_rps=2000.0, locust_rps=1000.0, ratio=0.5)


def test_a_finding_of_an_unknown_kind_or_bad_figures_is_a_results_error(tmp_path):
    cell = make_cell()
    for bad in ({"kind": "gremlins"}, {"kind": "unanswered", "count": 1, "colour": "red"}):
        data = json.loads(cell.to_json())
        data["findings"] = [bad]
        path = tmp_path / "bad.jsonl"
        path.write_text(json.dumps(asdict(make_header()), sort_keys=True) + "\n" + json.dumps(data) + "\n"
                        + cell.to_json() + "\n")
        with pytest.raises(ResultsError, match="bad.jsonl:2: .*finding"):
            read_results(path)


def test_an_old_calibration_note_stays_readable_and_words_the_same():
    cell = make_cell(calibration={"note": "Locust failed: no CSV", "wrk_rps": 900.0})
    assert cell.calibration == Calibration(wrk_rps=900.0, note="Locust failed: no CSV")
    assert not cell.calibration.measured
    (row,) = aggregate(make_header(), [cell])
    assert row.calibration is None
    assert row_warnings(row) == ("gunicorn-sync / hello / closed / 8 users: calibration: Locust failed: no CSV",)
    with pytest.raises(ResultsError, match="not a number"):
        replace(cell, calibration={"wrk_rps": "fast"})


def outcome(**changes) -> LoadOutcome:
    values = dict(requests=6000, failures=0, duration_s=6.0, window=(0.0, 6.0), histogram=None, latency_us={},
                  loadgen_cpu_s=3.0, busiest_process_share=0.5, cpu_warning=False, total_time_s=None,
                  open_load=None, locust=None)
    values.update(changes)
    return LoadOutcome(**values)


def test_cell_findings_are_the_runners_judgements_in_report_order():
    assert cell_findings(outcome(), saturated=False, interference=None, mode="closed") == []
    assert cell_findings(outcome(rps_trend=WARMUP_TREND_THRESHOLD), saturated=False, interference=None,
                         mode="closed") == []
    flagged = Interference(share=0.3, flagged=True, threshold=0.2)
    found = cell_findings(
        outcome(busiest_process_share=0.97, cpu_warning=True, rps_trend=-0.2, unanswered=2, failures=5,
                open_load=OpenLoad(target_rps=100, sent=100, late_sends=9, max_lag_ms=80.0, fell_behind=True)),
        saturated=True, interference=flagged, mode="open")
    assert found == [GeneratorSaturated(0.97, True), WarmupTrend(-0.2), InterferenceFlagged(0.3, 0.2), Unanswered(2),
                     FailedRequests(5, 6000), FellBehind(9, 80.0)]
    # closed mode: unanswered requests fail the cell instead (the runner's window check)
    closed = cell_findings(outcome(unanswered=2), saturated=False, interference=Interference(share=0.0, flagged=False), mode="closed")
    assert closed == []


def test_every_finding_kind_has_a_sentence_and_a_grouped_line():
    """A kind added to serverlab.findings without its words broke every report that held one
    (host-speed-changed had a sentence but no grouped-findings line: KeyError in write_report)."""
    from serverlab.findings import FindingKind
    from serverlab.report.sentences import SENTENCES, SHORT

    assert set(SHORT) == set(FindingKind), set(FindingKind) - set(SHORT)
    assert set(SENTENCES) == set(FindingKind), set(FindingKind) - set(SENTENCES)
