"""Your own app with the local backend (no Docker): ``serverlab run --backend local --app``
on a copy of the example app, real servers (Gunicorn gthread, Werkzeug through the
devserver's ``--app``) and real Locust sending its declared requests. Seconds-long."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from serverlab import cli
from serverlab.results import read_results
from serverlab.terms import CellStatus

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

EXPERIMENT = """\
servers = ["gunicorn-gthread", "werkzeug-threaded"]
users = [2]
duration = 1.5
warmup = 0.5
seed = 3

[app]
path = "{path}"
setup = ["flask --app flaskr init-db --posts 5"]

[[requests]]
name = "index"
path = "/"
weight = 3

[[requests]]
name = "api-create"
method = "POST"
path = "/api/posts"
body = {{ title = "local", body = "from the local test" }}
status = 201
"""


def test_the_example_app_runs_locally_behind_two_servers(tmp_path, capsys):
    app = tmp_path / "flaskr"
    shutil.copytree(ROOT / "examples" / "flaskr", app, ignore=shutil.ignore_patterns("instance", "__pycache__"))
    experiment = tmp_path / "local-app.toml"
    experiment.write_text(EXPERIMENT.format(path=app))
    status = cli.main(["run", str(experiment), "--backend", "local", "--reports-dir", str(tmp_path / "reports")])
    out = capsys.readouterr()
    _, cells = read_results(tmp_path / "reports" / "latest" / "results.jsonl")
    problems = [(c.cell_id, c.status, c.error) for c in cells if c.status != CellStatus.OK]
    assert status == 0 and not problems, (problems, out.out[-3000:], out.err[-2000:])
    assert {c.workload for c in cells} == {"mix", "index", "api-create"}
    assert all(c.requests > 0 and c.failures == 0 for c in cells)
    summary = (tmp_path / "reports" / "latest" / "summary.md").read_text()
    assert "Workload api-create" in summary and "Workload mix" in summary
    assert (app / "instance" / "flaskr.sqlite").is_file()  # setup ran in the app's folder
