"""Results files: the writer, the reader's tolerance and refusals, and Cell validation."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from serverlab.findings import FailedRequests
from serverlab.results import (
    SCHEMA_VERSION,
    STATUSES,
    Cell,
    ResultsError,
    ResultsWriter,
    RunHeader,
    read_many,
    read_results,
)
from serverlab.terms import MODES, percentile_key

RUN_ID = "20261120-231500-quick"


def header(run_id: str = RUN_ID) -> RunHeader:
    return RunHeader(
        run_id=run_id,
        experiment={"name": "quick", "mode": "closed", "levels": [8]},
        metadata={"backend": "local", "seed": 42, "packages": {"flask": "3.1.3"}, "host_cores": 2},
    )


def make_cell(variant: str = "gunicorn-sync", level: int = 8, repetition: int = 1, **changes) -> Cell:
    values = dict(
        run_id=RUN_ID, cell_id=f"{variant}/hello/{level}/r{repetition}", variant=variant, workload="hello",
        mode="closed", level=level, users=level, repetition=repetition, order=0, status="ok",
        started_at=1_763_680_500.25, warmup_s=2.0, duration_s=6.0, requests=6000, failures=3, rps=1000.0,
        latency_us={"p50": 2000.0, "p90": 3500.0, "p95": 4000.0, "p99": 7000.0, "p99.9": 9000.0, "max": 12000.0, "mean": 2200.5},
        hdr="HISTFAAAAB94nJNpmSzMwMDAzgABzFCaEUzOtp/ACBEAAD1zAuk=", locust={"rps": 998.0, "p50_ms": 2.0},
        server_cpu_s=5.5, server_peak_memory_bytes=50_000_000, cpu_ms_per_request=0.9166,
        loadgen_cpu_s=4.0, loadgen_cpu_budget=1.0, loadgen_saturated=False,
        findings=[FailedRequests(3, 6000)],
    )
    values.update(changes)
    return Cell(**values)


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- writing ------------------------------------------------------------------------------------------


def test_writer_creates_the_file_with_its_header(tmp_path):
    path = tmp_path / "run" / "nested" / "results.jsonl"
    ResultsWriter(path, header())
    assert path.is_file()
    (line,) = path.read_text().splitlines()
    data = json.loads(line)
    assert data["kind"] == "run" and data["version"] == SCHEMA_VERSION and data["run_id"] == RUN_ID
    assert list(data) == sorted(data)  # sorted keys
    read_header, cells = read_results(path)
    assert read_header == header()
    assert cells == []


def test_append_and_read_back_round_trip(tmp_path):
    path = tmp_path / "results.jsonl"
    writer = ResultsWriter(path, header())
    written = [
        make_cell("gunicorn-sync", order=0),
        make_cell("werkzeug-single", order=1, status="failed", error="server did not start: port in use",
                  requests=0, failures=0, rps=0.0, latency_us={}, hdr=None),
        make_cell("uwsgi-processes", order=2, status="unverified", error="failed verification before load: status 500"),
        make_cell("gunicorn-gthread", order=3, mode="requests", level=100, users=10, total_time_s=3.25),
        make_cell("gunicorn-gevent", order=4, mode="open", level=500, users=100,
                  open_load={"target_rps": 500, "sent": 3000, "late_sends": 2, "max_lag_ms": 7.5, "fell_behind": False},
                  calibration={"wrk_rps": 2993.75, "ratio": 0.8}),
    ]
    for cell in written:
        writer.append(cell)
    assert len(path.read_text().splitlines()) == 1 + len(written)
    assert all(line["kind"] == "cell" for line in lines_of(path)[1:])
    read_header, cells = read_results(path)
    assert read_header == header()
    assert cells == written
    assert [cell.cell_id for cell in cells] == [cell.cell_id for cell in written]


def test_to_json_is_one_sorted_line():
    text = make_cell().to_json()
    assert "\n" not in text
    data = json.loads(text)
    assert list(data) == sorted(data)
    assert data["kind"] == "cell" and data["version"] == SCHEMA_VERSION


def test_writer_refuses_to_overwrite(tmp_path):
    path = tmp_path / "results.jsonl"
    ResultsWriter(path, header()).append(make_cell())
    before = path.read_text()
    with pytest.raises(ResultsError, match="already exists"):
        ResultsWriter(path, header())
    with pytest.raises(ResultsError, match="resume"):
        ResultsWriter(path, header("another-run"))
    assert path.read_text() == before


def test_resume_appends_to_the_same_run(tmp_path):
    path = tmp_path / "results.jsonl"
    ResultsWriter(path, header()).append(make_cell("gunicorn-sync"))
    resumed = ResultsWriter(path, header(), resume=True)
    resumed.append(make_cell("werkzeug-single"))
    lines = lines_of(path)
    assert [line["kind"] for line in lines] == ["run", "cell", "cell"]  # no second header
    assert [cell.variant for cell in read_results(path)[1]] == ["gunicorn-sync", "werkzeug-single"]


def test_resume_with_another_run_id_is_refused(tmp_path):
    path = tmp_path / "results.jsonl"
    ResultsWriter(path, header()).append(make_cell())
    before = path.read_text()
    with pytest.raises(ResultsError) as info:
        ResultsWriter(path, header("20261121-000000-default"), resume=True)
    assert str(path) in str(info.value)
    assert RUN_ID in str(info.value) and "20261121-000000-default" in str(info.value)
    assert path.read_text() == before


def test_resume_of_a_missing_file_is_refused(tmp_path):
    with pytest.raises(ResultsError, match="results.jsonl"):
        ResultsWriter(tmp_path / "results.jsonl", header(), resume=True)


def test_resume_after_a_truncated_last_line(tmp_path):
    path = tmp_path / "results.jsonl"
    ResultsWriter(path, header()).append(make_cell("gunicorn-sync"))
    with path.open("a") as handle:
        handle.write(make_cell("uwsgi-threads").to_json()[:40])  # killed mid-write
    writer = ResultsWriter(path, header(), resume=True)
    writer.append(make_cell("werkzeug-single"))
    writer.append(make_cell("werkzeug-threaded"))
    assert [cell.variant for cell in read_results(path)[1]] == ["gunicorn-sync", "werkzeug-single", "werkzeug-threaded"]


# --- reading ------------------------------------------------------------------------------------------


def write_lines(path: Path, *lines: str, trailing_newline: bool = True) -> Path:
    path.write_text("\n".join(lines) + ("\n" if trailing_newline else ""))
    return path


def header_line(**changes) -> str:
    data = {"kind": "run", "version": SCHEMA_VERSION, "run_id": RUN_ID, "experiment": {}, "metadata": {}}
    data.update(changes)
    return json.dumps(data)


def cell_line(cell: Cell | None = None, **changes) -> str:
    data = json.loads((cell or make_cell()).to_json())
    data.update(changes)
    return json.dumps(data)


def test_truncated_last_line_is_ignored(tmp_path):
    full = cell_line(make_cell("gunicorn-sync"))
    cut = cell_line(make_cell("werkzeug-single"))[:57]
    path = write_lines(tmp_path / "results.jsonl", header_line(), full, cut, trailing_newline=False)
    _, cells = read_results(path)
    assert [cell.variant for cell in cells] == ["gunicorn-sync"]


def test_malformed_middle_line_names_file_and_line(tmp_path):
    path = write_lines(tmp_path / "results.jsonl", header_line(), cell_line(), '{"kind": "cell", "vers', cell_line(make_cell("werkzeug-single")))
    with pytest.raises(ResultsError) as info:
        read_results(path)
    assert f"{path}:3" in str(info.value) and "not JSON" in str(info.value)


@pytest.mark.parametrize(("line", "fragment"), [
    ("[1, 2, 3]", "JSON object"),
    (header_line(), "expected a cell line"),
    (json.dumps({"kind": "cell", "version": SCHEMA_VERSION, "cell_id": "x"}), "missing"),
])
def test_other_bad_middle_lines(tmp_path, line, fragment):
    path = write_lines(tmp_path / "results.jsonl", header_line(), line, cell_line())
    with pytest.raises(ResultsError) as info:
        read_results(path)
    assert f"{path}:2" in str(info.value) and fragment in str(info.value)


def test_unknown_keys_are_tolerated(tmp_path):
    path = write_lines(tmp_path / "results.jsonl", header_line(future="x"), cell_line(surprise_field=1))
    read_header, cells = read_results(path)
    assert read_header.run_id == RUN_ID
    assert cells == [make_cell()]


def test_invalid_cell_line_names_file_and_line(tmp_path):
    path = write_lines(tmp_path / "results.jsonl", header_line(), cell_line(status="bogus"), cell_line())
    with pytest.raises(ResultsError, match=f"{path}:2"):
        read_results(path)


def test_invalid_cell_line_is_refused(tmp_path):
    path = write_lines(tmp_path / "results.jsonl", header_line(), cell_line(status="bogus"), cell_line())
    with pytest.raises(ResultsError, match="bogus"):
        read_results(path)


@pytest.mark.parametrize("version", [0, 99, None, "1"])
def test_wrong_version_is_refused(tmp_path, version):
    path = write_lines(tmp_path / "results.jsonl", header_line(version=version), cell_line())
    with pytest.raises(ResultsError) as info:
        read_results(path)
    assert f"{path}:1" in str(info.value) and "schema version" in str(info.value)
    path = write_lines(tmp_path / "results.jsonl", header_line(), cell_line(version=version), cell_line())
    with pytest.raises(ResultsError, match=f"{path}:2: schema version"):
        read_results(path)


def test_wrong_version_on_the_last_line_is_skipped_with_a_warning(tmp_path):
    path = write_lines(tmp_path / "results.jsonl", header_line(), cell_line(), cell_line(make_cell("werkzeug-single"), version=99))
    warnings: list[str] = []
    _, cells = read_results(path, warn=warnings.append)
    assert len(cells) == 1 and len(warnings) == 1
    assert "line 3" in warnings[0] and "schema version" in warnings[0]


def test_wrong_version_before_the_last_line_is_refused(tmp_path):
    path = write_lines(tmp_path / "results.jsonl", header_line(), cell_line(make_cell("werkzeug-single"), version=99),
                       cell_line())
    with pytest.raises(ResultsError, match=f"{path}:2: schema version"):
        read_results(path)


def test_first_line_must_be_the_header(tmp_path):
    path = write_lines(tmp_path / "results.jsonl", cell_line(), header_line())
    with pytest.raises(ResultsError) as info:
        read_results(path)
    assert f"{path}:1" in str(info.value) and "run header" in str(info.value)


def test_truncated_header_is_refused(tmp_path):
    path = write_lines(tmp_path / "results.jsonl", header_line()[:20], trailing_newline=False)
    with pytest.raises(ResultsError, match=f"{path}:1"):
        read_results(path)


@pytest.mark.parametrize("content", ["", "\n"])
def test_empty_file_is_refused(tmp_path, content):
    path = tmp_path / "results.jsonl"
    path.write_text(content)
    with pytest.raises(ResultsError, match=str(path)):
        read_results(path)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(ResultsError, match="results.jsonl"):
        read_results(tmp_path / "results.jsonl")


def test_blank_lines_are_skipped(tmp_path):
    path = write_lines(tmp_path / "results.jsonl", header_line(), "", cell_line(), "   ", cell_line(make_cell("uwsgi-threads")))
    assert [cell.variant for cell in read_results(path)[1]] == ["gunicorn-sync", "uwsgi-threads"]


def test_duplicate_cell_id_last_wins(tmp_path):
    failed = make_cell("gunicorn-sync", status="failed", error="server crashed", order=0)
    other = make_cell("werkzeug-single", order=1)
    remeasured = make_cell("gunicorn-sync", order=2, rps=1234.5)
    path = write_lines(tmp_path / "results.jsonl", header_line(), cell_line(failed), cell_line(other), cell_line(remeasured))
    _, cells = read_results(path)
    assert len(cells) == 2
    by_id = {cell.cell_id: cell for cell in cells}
    assert by_id["gunicorn-sync/hello/8/r1"] == remeasured
    assert by_id["gunicorn-sync/hello/8/r1"].status == "ok"
    assert cells == [other, remeasured]  # the re-measured cell takes the later position


def test_read_many(tmp_path):
    first = write_lines(tmp_path / "a.jsonl", header_line(run_id="a"), cell_line())
    second = write_lines(tmp_path / "b.jsonl", header_line(run_id="b"))
    runs = list(read_many([first, second]))
    assert [run[0].run_id for run in runs] == ["a", "b"]
    assert [len(run[1]) for run in runs] == [1, 0]


# --- Cell validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("changes", "fragment"), [
    ({"status": "done"}, "status 'done'"),
    ({"status": "OK"}, "status 'OK'"),
    ({"mode": "burst"}, "mode 'burst'"),
    ({"requests": 5, "failures": 6}, "requests=5 failures=6"),
    ({"requests": -1, "failures": 0}, "requests=-1"),
    ({"requests": 5, "failures": -1}, "failures=-1"),
    ({"status": "failed", "error": None}, "needs an error message"),
    ({"status": "failed", "error": ""}, "needs an error message"),
    ({"status": "unverified"}, "needs an error message"),
])
def test_cell_validation(changes, fragment):
    with pytest.raises(ResultsError) as info:
        make_cell(**changes)
    assert fragment in str(info.value)
    assert "gunicorn-sync/hello/8/r1" in str(info.value)


def test_valid_cells_and_derived_values():
    for status in STATUSES:
        make_cell(status=status, error=None if status == "ok" else "why")
    for mode in MODES:
        make_cell(mode=mode)
    cell = make_cell(requests=200, failures=50)
    assert cell.failure_ratio == 0.25
    assert make_cell(requests=0, failures=0).failure_ratio == 0.0
    assert cell.key == ("gunicorn-sync", "hello", "closed", 8)
    assert replace(cell, repetition=2).key == cell.key


@pytest.mark.parametrize(("p", "key"), [(50.0, "p50"), (90.0, "p90"), (99.0, "p99"), (99.9, "p99.9")])
def test_percentile_key(p, key):
    assert percentile_key(p) == key


def test_version_1_files_still_load_and_get_classified(tmp_path):
    """A results file written before the bottleneck fields (version 1) still loads;
    its cells get the new fields' defaults and are classified from what they recorded."""
    from report_factories import make_cell as factory_cell
    from serverlab.bottleneck import cell_bottleneck

    cell = factory_cell("gunicorn-gthread", rps=6000.0, server_cpu_s=9.8, cpu_ms_per_request=0.16)
    old = {k: v for k, v in json.loads(cell.to_json()).items()
           if k not in ("loadgen_busiest_share", "interference", "bottleneck")}
    old.update(version=1, workload_params={}, config={"model": "threaded", "workers": 1, "threads": 8, "keep_alive": True,
                                                      "server_cpus": 1, "server_memory": "512m"})  # as v1-3 stored them
    path = write_lines(tmp_path / "results.jsonl", header_line(version=1), json.dumps(old))
    header, cells = read_results(path)
    assert cells[0].version == 1 and cells[0].bottleneck is None and cells[0].interference is None
    # the cell's config moved into the header: the variant's record and the budget, stored once
    assert header.variant("gunicorn-gthread").threads == 8 and header.budget.server_cpus == 1
    assert cell_bottleneck(cells[0], header.budget).kind == "server-bound"
