"""The web UI's Compare as a run: the real Runner through the lab backend, a real app, real requests.

The Locust master is replaced by a small driver that sends real HTTP requests to the
lab's Flask app (served on a thread) and records them into a real HdrHistogram, the
way a Locust process's recorder does; everything else is the production path: the
runner, :func:`serverlab.loadgen.read_outcome`, the server's own ``/lab/cpu``, the
interference and bottleneck rules, the results file and the report.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from report_factories import make_cell, make_header, write_results
from werkzeug.serving import make_server

import labapp
from labapp.variants import load_variants
from serverlab.hdrdump import ProcessDump
from serverlab.load import Load
from serverlab.backends.lab import LabBackend, LabLoad, LabWatch, parse_locust_args
from serverlab.histograms import new_histogram
from serverlab.loadgen import LoadPlan
from serverlab.report import compare
from serverlab.report.files import planned_cell_count
from serverlab.results import read_results
from serverlab.runfolders import list_runs
from serverlab.selfreport import SelfReport, SelfReportSampler, read_self_report
from serverlab.terms import WORKLOADS, BottleneckClass, CellStatus, Mode
from serverlab.uiruns import (MIN_RANKABLE_SECONDS, CompareError, comparison_experiment, comparison_rows,
                                 finished, lab_budget, run_comparison)


@pytest.fixture(scope="module")
def app_url():
    """The lab's Flask app on a free 127.0.0.1 port (threaded Werkzeug), for the whole module."""
    server = make_server("127.0.0.1", 0, labapp.create_app(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


class RequestDriver:
    """A :class:`serverlab.backends.lab.LoadDriver` sending real requests from one thread."""

    def __init__(self) -> None:
        self.loads: list[LabLoad] = []
        self.stopped = 0

    def run(self, load, window_start, window_end):
        self.loads.append(load)
        path = load.host + load.workload.url_path(load.params)
        deadline = time.time() + load.warmup_s
        while time.time() < deadline:
            urllib.request.urlopen(path).read()
        window_start()
        hist, start, count, last = new_histogram(), time.time(), 0, None
        cpu0 = time.process_time()
        while time.time() < start + load.duration_s:
            sent = time.perf_counter()
            urllib.request.urlopen(path).read()
            hist.record_value(max(1, int((time.perf_counter() - sent) * 1e6)))
            count, last = count + 1, time.time()
        dump = ProcessDump(process="test-1", requests=count, failures=0, sent=count, first_send_at=start,
                           last_response_at=last, window_start_at=start, window_end_at=time.time(),
                           cpu_seconds=time.process_time() - cpu0, histogram=hist.encode().decode("ascii"))
        window_end()
        return [dump]

    def stop(self):
        self.stopped += 1


def test_lab_cpu_reports_the_cgroup_and_per_cpu_counters(client):
    data = client.get("/lab/cpu").get_json()
    assert set(data) >= {"at", "cgroup", "proc_stat", "clock_ticks", "affinity"}
    report = SelfReport.from_json(data)
    assert report.cpus and all(t.busy > 0 for t in report.cpus.values())  # this machine's CPUs, seconds
    assert abs(report.at - time.time()) < 60


def test_self_report_sampler_interpolates_like_the_docker_sampler():
    sampler = SelfReportSampler()
    for at, usage in ((100.0, 10.0), (110.0, 15.0)):
        sampler.add(SelfReport(at, usage, 1.0, (0,), 1000, None, {}, 0.0))
    assert sampler.cpu_between(102.0, 108.0) == pytest.approx(3.0)
    assert sampler.peak_memory() == 1000


@pytest.mark.parametrize("workload", list(WORKLOADS))
def test_the_lab_backend_reads_back_the_runners_locust_command_line(workload):
    spec = WORKLOADS[workload]
    plan = LoadPlan(spec, spec.default_params(), Load.of(Mode.CLOSED, 16), 4.0, 1.5)
    load = parse_locust_args(plan.locust_args("/x/locustfile.py", "http://gunicorn-sync:8000", "/out"),
                             plan.environment("/out"))
    assert (load.workload, load.params, load.users, load.host) == (spec, spec.default_params(), 16, "http://gunicorn-sync:8000")
    assert load.load == plan.load  # the runner's Load itself, not re-derived from -u
    assert load.warmup_s == 1.5 and load.warmup_s + load.duration_s == plan.run_time_s


def test_a_too_short_window_or_no_server_is_refused_naming_the_limit():
    budget = lab_budget(SelfReport(0.0, 0.0, 1.0, (0,), None, 512 * 2**20, {}, 0.0), [1], 1)
    assert (budget.server_cpus, budget.server_memory, budget.server_cpuset, budget.loadgen_cpuset) == (1.0, "512m", "0", "1")
    declared = list(load_variants())
    with pytest.raises(CompareError, match=f"too short to rank servers: at least {MIN_RANKABLE_SECONDS:g} s"):
        comparison_experiment(["gunicorn-sync"], "hello", {}, 8, 1, 0, 1, budget, declared)
    with pytest.raises(CompareError, match="tick at least one server"):
        comparison_experiment([], "hello", {}, 8, 5, 0, 1, budget, declared)
    with pytest.raises(CompareError, match="parameter 'n'"):
        comparison_experiment(["gunicorn-sync"], "cpu", {"n": 10**9}, 8, 5, 0, 1, budget, declared)


def test_a_comparison_is_a_run_the_reports_and_compare_read(app_url, tmp_path):
    servers = ["gunicorn-sync", "waitress"]
    budget = lab_budget(read_self_report(app_url), [1], 1)
    experiment = comparison_experiment(servers, "hello", {}, 1, MIN_RANKABLE_SECONDS, 0.2, 7, budget, list(load_variants()))
    experiment = dataclasses.replace(experiment, duration=0.6)  # the test's own pace; the UI refuses < 3 s
    driver = RequestDriver()
    backend = LabBackend(driver, lambda name: app_url, {"image": "test"})
    seen: list[Path] = []
    run_dir = run_comparison(experiment, backend, tmp_path, on_run_dir=seen.append,
                             watch=LabWatch(backend, probe_seconds=0.2))
    assert seen and seen[0] == run_dir and run_dir.name.endswith("-ui-compare")
    header, cells = read_results(run_dir / "results.jsonl")
    # the header make report writes: levels, seed, digest, probe; planned_cell_count works on it
    assert header.experiment["levels"] == [1] and header.metadata["backend"] == "lab"
    assert planned_cell_count(header.experiment) == 2 and header.metadata["quietness_probe"]["measured"]
    assert sorted(c.variant for c in cells) == servers and [load.users for load in driver.loads] == [1, 1]
    for cell in cells:
        assert cell.status == CellStatus.OK, cell.error
        assert cell.requests > 0 and cell.rps == pytest.approx(cell.requests / cell.duration_s)
        assert cell.server_cpu_s is not None and cell.cpu_ms_per_request is not None
        assert cell.interference is not None and cell.interference.server_share is not None
        assert cell.bottleneck.kind in tuple(BottleneckClass) and cell.bottleneck.server_utilization is not None
    for name in ("index.html", "summary.md", "report.json"):
        assert (run_dir / name).is_file()
    rows = comparison_rows(experiment, run_dir)
    assert finished(rows) and [r["server"] for r in rows] == [c.variant for c in sorted(cells, key=lambda c: c.order)]
    assert all(r["cpu_ms_per_request"] is not None and r["bottleneck"] for r in rows)
    # serverlab compare diffs it against a make report run of the same cells, variants and budget
    (tmp_path / "20260101-000000-quick").mkdir()
    same = dataclasses.replace(header, run_id="20260101-000000-quick", experiment={**header.experiment, "name": "quick"})
    other = write_results(tmp_path / "20260101-000000-quick" / "results.jsonl", same,
                          [make_cell(v, "hello", "closed", 1, 1, rps=900.0, median_us=1000.0) for v in servers])
    text = compare(other, run_dir / "results.jsonl")
    assert "different experiments: 'quick' → 'ui-compare'" in text and "(no cells in common)" not in text
    assert [run.path for run in list_runs(tmp_path) if run.experiment == "ui-compare"] == [run_dir]
    assert driver.stopped == 1  # the runner closed the backend: the load is stopped


def test_rows_wait_and_run_before_anything_is_measured(app_url):
    budget = lab_budget(read_self_report(app_url), [1], 1)
    experiment = comparison_experiment(["gunicorn-sync", "waitress"], "hello", {}, 4, 5, 1, 3, budget,
                                       list(load_variants()))
    rows = comparison_rows(experiment, None, current="waitress")
    assert {r["server"]: r["status"] for r in rows} == {"gunicorn-sync": "waiting", "waitress": "running"}
    assert not finished(rows)


def test_the_live_meter_classifies_an_interval_with_the_reports_rules():
    from serverlab.interference import CpuTimes
    from serverlab.livemeter import LiveMeter, LoadTotals

    reports = iter([
        SelfReport(100.0, 50.0, 1.0, (0,), None, None, {0: CpuTimes(10.0, 0.0), 1: CpuTimes(10.0, 0.0)}, 1.0),
        # 5 s later: the server used 4.8 s of its 1-CPU budget, CPU 0 was busy 4.9 s (0.1 s someone else's)
        SelfReport(105.0, 54.8, 1.0, (0,), None, None, {0: CpuTimes(14.9, 0.0), 1: CpuTimes(12.8, 0.0)}, 1.0),
    ])
    meter = LiveMeter(lambda name: f"http://{name}:8000", [1], read=lambda url: next(reports))
    assert meter.update("gunicorn-gthread", LoadTotals(1000, 0, 0.5, 0.5)) is None  # the first reading
    live = meter.update("gunicorn-gthread", LoadTotals(25000, 0, 0.55, 0.55))
    assert live["rps"] == pytest.approx(4800.0) and live["cpu_ms_per_request"] == pytest.approx(0.2)
    assert live["server_utilization"] == pytest.approx(0.96) and live["bottleneck"] == BottleneckClass.SERVER_BOUND
    assert live["other_share"] == pytest.approx(0.02, abs=0.001) and not live["interference_flagged"]


def test_the_live_meter_reads_a_real_server(app_url):
    from serverlab.livemeter import LiveMeter, LoadTotals

    meter = LiveMeter(lambda name: app_url, [1])
    meter.update("waitress", LoadTotals(0, 0))
    time.sleep(0.3)
    live = meter.update("waitress", LoadTotals(30, 0, 0.1, 0.1))
    assert live is not None and live["window_s"] > 0.2 and live["bottleneck"] in tuple(BottleneckClass)
