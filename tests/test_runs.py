"""Whole experiment runs, end to end: results file, report contents, failures and resume.

A server killed in the middle of its measured period must leave its cell marked
failed (with why) and every other cell intact; ``--resume`` then completes the run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from serverlab.experiment import load_experiment
from serverlab.results import read_results
from serverlab.backends import make_backend
from serverlab.runner import Runner

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
BACKENDS = ["local", pytest.param("docker", marks=pytest.mark.docker)]


def _use_backend(backend: str, request) -> None:
    if backend == "docker":
        request.getfixturevalue("docker_ready")


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("backend", BACKENDS)
def test_cli_run_writes_results_and_report(backend, tmp_path, request):
    _use_backend(backend, request)
    experiment = _write(tmp_path, "tiny", 'servers = ["gunicorn-gthread", "werkzeug-single"]\n'
                        'workloads = ["hello", "cpu"]\nusers = [2]\nduration = 2\nwarmup = 1\n'
                        "[params.cpu]\nn = 200\n")
    reports = tmp_path / "reports"
    proc = subprocess.run([sys.executable, "-m", "serverlab.cli", "run", str(experiment), "--backend", backend,
                           "--reports-dir", str(reports)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "[4/4]" in proc.stdout  # progress, one line per cell
    run_dir = (reports / "latest").resolve()
    header, cells = read_results(run_dir / "results.jsonl")
    assert header.metadata["backend"] == backend
    assert header.metadata["seed"] is not None and header.metadata["host_cores"]
    assert len(cells) == 4 and {c.status for c in cells} == {"ok"}
    for cell in cells:
        assert cell.rps > 0 and cell.failures == 0 and cell.requests > 0
        assert cell.latency_us["p50"] <= cell.latency_us["p99"] <= cell.latency_us["max"]
        assert cell.server_cpu_s is not None and cell.server_cpu_s > 0
        assert cell.cpu_ms_per_request and cell.cpu_ms_per_request > 0
        assert cell.server_peak_memory_bytes and cell.server_peak_memory_bytes > 10_000_000
        declared = header.variant(cell.variant)
        assert declared.workers is not None and declared.workers >= 1 and declared.keep_alive is not None
        assert (run_dir / "cells" / cell.cell_id.replace("/", "_") / "attempt-1" / "locust_stats.csv").is_file()
    summary = (run_dir / "summary.md").read_text()
    html = (run_dir / "index.html").read_text()
    for name in ("gunicorn-gthread", "werkzeug-single"):
        assert name in summary and name in html
    assert "<svg" in html
    report = json.loads((run_dir / "report.json").read_text())
    assert report  # the same rows, as JSON
    # the report is a pure function of the results file: re-rendering gives the same Markdown
    out = tmp_path / "again"
    subprocess.run([sys.executable, "-m", "serverlab.cli", "report", str(run_dir / "results.jsonl"), "--out", str(out)],
                   cwd=ROOT, check=True, capture_output=True, timeout=120)
    assert (out / "summary.md").read_text() == summary
    # compare a run with itself: every cell matches, none only on one side
    compared = subprocess.run([sys.executable, "-m", "serverlab.cli", "compare", str(run_dir), str(run_dir)],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert compared.returncode == 0, compared.stderr
    for name in ("gunicorn-gthread", "werkzeug-single"):
        assert name in compared.stdout


@pytest.mark.parametrize("backend", BACKENDS)
def test_killed_server_fails_its_cell_and_resume_completes(backend, tmp_path, request):
    _use_backend(backend, request)
    from serverlab.report import write_report

    path = _write(tmp_path, "crash", 'servers = ["gunicorn-sync", "uwsgi-processes"]\nworkloads = ["hello"]\n'
                  "users = [4]\nduration = 6\nwarmup = 1\nseed = 7\n")
    experiment = load_experiment(str(path))
    runner = Runner(experiment, make_backend(backend, experiment.budget), tmp_path / "reports", write=lambda line: None)
    backend_obj = runner.backend
    original_start, original_load = backend_obj.start, backend_obj.run_locust
    servers = {}

    def start(variant, *args, **kwargs):
        servers["current"] = original_start(variant, *args, **kwargs)
        return servers["current"]

    def run_locust_and_kill(args, env, out_dir, timeout):
        server = servers["current"]
        if server.variant.name == "gunicorn-sync":  # fault injection: kill it 3 s into the load
            threading.Timer(3.0, backend_obj.kill, [server]).start()
        return original_load(args, env, out_dir, timeout)

    backend_obj.start, backend_obj.run_locust = start, run_locust_and_kill
    run_dir = runner.run()
    _, cells = read_results(run_dir / "results.jsonl")
    by_variant = {cell.variant: cell for cell in cells}
    assert by_variant["gunicorn-sync"].status == "failed"
    assert "during the load" in by_variant["gunicorn-sync"].error
    assert by_variant["uwsgi-processes"].status == "ok" and by_variant["uwsgi-processes"].rps > 0
    files = write_report([run_dir / "results.jsonl"], run_dir)
    summary = files["markdown"].read_text()
    assert "failed" in summary.lower() and "during the load" in summary

    resumed = Runner(experiment, make_backend(backend, experiment.budget), tmp_path / "reports",
                     write=lambda line: None).run(resume=run_dir.name)
    assert resumed == run_dir
    _, cells = read_results(run_dir / "results.jsonl")
    assert {cell.variant: cell.status for cell in cells} == {"gunicorn-sync": "ok", "uwsgi-processes": "ok"}
    kept = {cell.variant: cell for cell in cells}["uwsgi-processes"]
    assert kept.started_at == by_variant["uwsgi-processes"].started_at  # measured once, kept
