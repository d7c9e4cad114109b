"""A Compare through a real Locust web UI (local runner, no Docker) and a real server of the app.

Every server name maps to one Werkzeug server of the lab's app, so the whole path runs
for real in seconds: the Compare endpoint, serverlab's Runner in a greenlet, the lab
backend, the UI's driver and collector (the Locust process's own recorder), ``GET
/lab/cpu``, ``read_outcome``, the bottleneck and interference rules, the run folder and
its report, the Reports page listing it.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import locustui
import pytest

from serverlab.report import compare
from serverlab.results import read_results
from serverlab.terms import BottleneckClass

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> Path:
    """The reports folder the UI writes its runs into."""
    return tmp_path_factory.mktemp("reports")


@pytest.fixture(scope="module")
def ui(tmp_path_factory, reports):
    """Locust's web UI (local runner) with every server name pointing at one real app server."""
    log = tmp_path_factory.mktemp("locust") / "locust.log"
    with locustui.app_server() as app_url, \
            locustui.locust_web_ui({"SERVERLAB_REPORTS_DIR": str(reports), "SERVERLAB_TARGET_URL_TEMPLATE": app_url},
                                   log) as url:
        yield url, log


def call(url: str, payload: dict | None = None) -> dict:
    request = urllib.request.Request(url, data=None if payload is None else json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_a_compare_through_the_web_ui_is_a_run_with_the_reports_figures(ui, reports):
    url, log = ui
    servers = ["gunicorn-sync", "waitress"]
    started = call(url + "/serverlab/compare/start", {"servers": servers, "workload": "hello", "users": 2,
                                                     "seconds": 5, "warmup_s": 0.5})
    assert started["success"], started
    deadline = time.monotonic() + 90
    while (status := call(url + "/serverlab/compare/status"))["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert status["state"] == "done", (status, log.read_text()[-3000:])
    run_dir = reports / status["compare_id"]
    header, cells = read_results(run_dir / "results.jsonl")
    assert header.experiment["levels"] == [2] and header.metadata["backend"] == "lab"
    assert sorted(c.variant for c in cells) == servers
    for cell, row in zip(sorted(cells, key=lambda c: c.order), status["rows"]):
        assert cell.status == "ok" and row["status"] == "ok", (cell.error, row)
        assert cell.requests > 0 and row["rps"] == pytest.approx(cell.rps, abs=0.1)
        assert cell.cpu_ms_per_request and row["cpu_ms_per_request"] == pytest.approx(cell.cpu_ms_per_request, abs=1e-4)
        assert row["bottleneck"] in tuple(BottleneckClass) and row["server_utilization"] is not None
        assert cell.interference is not None and cell.timeline and cell.timeline.rps  # per-second, from the recorder
    assert (run_dir / "index.html").is_file() and "## Workload hello" in (run_dir / "summary.md").read_text()
    with urllib.request.urlopen(url + "/serverlab/reports/", timeout=10) as response:
        assert status["compare_id"] in response.read().decode()
    with urllib.request.urlopen(url + "/serverlab/compare/results.jsonl", timeout=10) as response:
        assert response.read().decode() == (run_dir / "results.jsonl").read_text()
    assert "| gunicorn-sync | hello | closed | 2 |" in compare(run_dir / "results.jsonl", run_dir / "results.jsonl")


def test_stopping_a_compare_keeps_what_was_measured_and_leaves_nothing_running(ui, reports):
    url, log = ui
    started = call(url + "/serverlab/compare/start", {"servers": ["gunicorn-sync", "waitress"], "workload": "hello",
                                                     "users": 2, "seconds": 5, "warmup_s": 0.5})
    assert started["success"], started
    deadline = time.monotonic() + 60  # stop while the second server is measured
    while not any(r["status"] == "ok" for r in call(url + "/serverlab/compare/status")["rows"]):
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.3)
    stopped = call(url + "/serverlab/compare/stop", {})
    assert stopped["state"] == "stopped" and [r["status"] for r in stopped["rows"]].count("ok") == 1, stopped["rows"]
    assert [r["status"] for r in stopped["rows"]].count("not run") == 1  # never "running" after a stop
    run_dir = reports / stopped["compare_id"]
    assert len(read_results(run_dir / "results.jsonl")[1]) == 1 and (run_dir / "index.html").is_file()
    time.sleep(1)
    stats = call(url + "/stats/requests")
    assert stats["state"] in ("stopped", "ready") and stats["user_count"] == 0, stats
