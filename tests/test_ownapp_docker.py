"""Your own app in Docker, end to end (issue 19): ``serverlab run EXPERIMENT --app PATH``
on the example app (examples/flaskr) builds its derived image once, serves it behind a
threaded, a multi-process and a gevent variant, verifies and measures two of its
requests and their mix, and writes a report with their sections and verdicts. The
second build of an unchanged app is a cache hit; the bad inputs that need the image
(an import error, requirements that do not install, a request answering another status,
a failing setup command) each get their one clear error.

Lean for CI: one short window per cell, one repetition, one load level. The app is a
private copy with a marker file, so its image is built fresh by this test (and removed after).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from serverlab import cli
from serverlab.appimage import build_app_image
from serverlab.appspec import load_app
from serverlab.results import read_results
from serverlab.terms import CellStatus

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "flaskr"
pytestmark = [pytest.mark.docker, pytest.mark.slow]
#: One variant per concurrency model the issue names.
VARIANTS = ("gunicorn-gthread", "uwsgi-processes", "gunicorn-gevent")

EXPERIMENT = """\
description = "ownapp e2e: the example app, two requests and their mix"
servers = [{servers}]
users = [4]
duration = 2
warmup = 1
repetitions = 1
calibrate = {calibrate}
seed = 7

[app]
path = "{path}"
setup = {setup}
writable = ["instance"]
env = {{ FLASK_SECRET_KEY = "e2e" }}

{requests}
"""
REQUESTS = """\
[[requests]]
name = "index"
path = "/"
weight = 2

[[requests]]
name = "api-create"
method = "POST"
path = "/api/posts"
body = { title = "e2e", body = "from the test" }
status = 201
"""


def _write(tmp: Path, name: str, servers=VARIANTS, calibrate=True, setup='["flask --app flaskr init-db"]',
           requests=REQUESTS, path: Path = EXAMPLE) -> Path:
    text = EXPERIMENT.format(servers=", ".join(json.dumps(s) for s in servers), calibrate=str(calibrate).lower(),
                             path=path, setup=setup, requests=requests)
    experiment = tmp / f"{name}.toml"
    experiment.write_text(text)
    return experiment


def _run(capsys, *args: str) -> tuple[int, str, str]:
    status = cli.main(["run", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


#: The derived images this module built (from its own app copies): removed at the end.
BUILT: set[str] = set()


@pytest.fixture(scope="module")
def app_copy(tmp_path_factory, docker_ready):
    """A copy of the example app with a unique marker: its image is built by this module."""
    target = tmp_path_factory.mktemp("ownapp") / "flaskr"
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns("instance", "__pycache__"))
    (target / "MARKER").write_text(uuid.uuid4().hex)
    yield target
    for tag in BUILT:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


@pytest.fixture(scope="module")
def e2e(app_copy, tmp_path_factory):
    """One ``serverlab run EXPERIMENT --app COPY`` (the experiment's own [app] names the
    original example: ``--app`` replaces the path and keeps its setup, env and writable)."""
    tmp = tmp_path_factory.mktemp("ownapp-run")
    reports = tmp / "reports"
    experiment = _write(tmp, "ownapp-e2e")
    status = cli.main(["run", str(experiment), "--app", str(app_copy), "--reports-dir", str(reports)])
    run_dir = (reports / "latest").resolve()
    header, _ = read_results(run_dir / "results.jsonl")
    BUILT.add(header.metadata["app_image"])
    return status, run_dir, reports


def test_the_app_is_served_verified_and_measured_behind_three_models(e2e):
    status, run_dir, _ = e2e
    header, cells = read_results(run_dir / "results.jsonl")
    problems = [(c.cell_id, c.status, c.error) for c in cells if c.status != CellStatus.OK]
    assert status == 0 and not problems, problems
    assert {(c.variant, c.workload) for c in cells} == {(v, w) for v in VARIANTS for w in ("mix", "index", "api-create")}
    for cell in cells:
        assert cell.requests > 0 and cell.failures == 0, cell.cell_id
        assert cell.server_cpu_s and cell.server_cpu_s > 0, cell.cell_id
    calibrated = {c.variant: c.calibration for c in cells if c.calibration}
    assert set(calibrated) == set(VARIANTS) and all(c.workload == "index" and c.wrk_rps for c in calibrated.values())
    assert header.metadata.get("app_image", "").startswith("serverlab-app:")
    assert header.experiment["app"]["path"] != str(EXAMPLE)  # --app replaced the experiment's path


def test_the_report_has_a_section_and_a_verdict_per_request_and_the_mix(e2e):
    _, run_dir, _ = e2e
    summary = (run_dir / "summary.md").read_text()
    for workload in ("mix", "index", "api-create"):
        assert f"Workload {workload}" in summary, workload
    report = json.loads((run_dir / "report.json").read_text())
    text = json.dumps(report)
    for workload in ("mix", "index", "api-create"):
        assert f'"{workload}"' in text
    assert "verdict" in text.lower()


def test_an_unchanged_app_is_not_rebuilt(e2e, app_copy, capsys):
    """The run built the image; building it again finds it (the times go to the test log)."""
    app = load_app({"path": str(app_copy), "writable": ["instance"]}, Path("/"), "test")
    tag = os.environ.get("SERVERLAB_TAG", "latest")
    python = subprocess.run(["docker", "run", "--rm", "--entrypoint", "python", f"serverlab:{tag}", "-c",
                             "import sys; print('%d.%d' % sys.version_info[:2])"],
                            capture_output=True, text=True).stdout.strip()
    again = build_app_image(app, f"serverlab:{tag}", python, tag, progress=print)
    header, _ = read_results(e2e[1] / "results.jsonl")
    first = header.metadata
    print(f"\n[ownapp] derived image {again.tag}: first run built it in {first['app_image_seconds']:.1f} s; "
          f"second look reused it in {again.seconds:.2f} s")
    assert first["app_image_built"] and not again.built and again.tag == first["app_image"]
    assert again.seconds < first["app_image_seconds"]


def test_an_import_error_exits_2_with_its_last_line(e2e, app_copy, tmp_path, capsys):
    _, run_dir, reports = e2e
    before, folders = (run_dir / "results.jsonl").read_bytes(), sorted(reports.iterdir())
    experiment = _write(tmp_path, "bad-import", servers=VARIANTS[:1], calibrate=False)
    status, out, err = _run(capsys, str(experiment), "--app", str(app_copy), "--wsgi", "flaskr.nope:create_app()",
                            "--reports-dir", str(reports))
    assert status == 2, out + err
    assert "error: the app 'flaskr.nope:create_app()'" in err and "No module named 'flaskr.nope'" in err
    assert (run_dir / "results.jsonl").read_bytes() == before and (reports / "latest").resolve() == run_dir
    assert sorted(reports.iterdir()) == folders  # no new run folder either


def test_requirements_that_do_not_install_exit_2_with_pips_last_lines(e2e, app_copy, tmp_path, capsys):
    _, run_dir, reports = e2e
    before, folders = (run_dir / "results.jsonl").read_bytes(), sorted(reports.iterdir())
    broken = tmp_path / "broken-app"
    shutil.copytree(app_copy, broken)
    (broken / "requirements.txt").write_text("flask==0.0.1\n")  # conflicts with the lab's pinned Flask
    experiment = _write(tmp_path, "bad-requirements", servers=VARIANTS[:1], calibrate=False)
    status, out, err = _run(capsys, str(experiment), "--app", str(broken), "--reports-dir", str(reports))
    assert status == 2, out + err
    assert "the app's requirements do not install" in err and "flask==0.0.1" in err.lower()
    assert (run_dir / "results.jsonl").read_bytes() == before and (reports / "latest").resolve() == run_dir
    assert sorted(reports.iterdir()) == folders


def test_a_request_answering_another_status_is_an_unverified_cell(e2e, app_copy, tmp_path, capsys):
    _, _, reports = e2e
    wrong = '[[requests]]\nname = "missing"\npath = "/api/posts/999999"\nstatus = 200\n'
    experiment = _write(tmp_path, "bad-status", servers=VARIANTS[:1], calibrate=False, requests=wrong)
    status, out, err = _run(capsys, str(experiment), "--app", str(app_copy), "--reports-dir", str(tmp_path / "r"))
    assert status == 1, out + err
    _, cells = read_results((tmp_path / "r" / "latest" / "results.jsonl"))
    (cell,) = cells
    assert cell.status == CellStatus.UNVERIFIED
    assert "status 404, expected 200" in cell.error and "no post 999999" in cell.error


def test_a_failing_setup_command_fails_the_variant_with_its_output(e2e, app_copy, tmp_path, capsys):
    experiment = _write(tmp_path, "bad-setup", servers=VARIANTS[:1], calibrate=False,
                        setup='["echo the schema is missing >&2; exit 7"]',
                        requests='[[requests]]\nname = "index"\npath = "/"\n')
    status, out, err = _run(capsys, str(experiment), "--app", str(app_copy), "--reports-dir", str(tmp_path / "r"))
    assert status == 1, out + err
    _, cells = read_results((tmp_path / "r" / "latest" / "results.jsonl"))
    (cell,) = cells
    assert cell.status == CellStatus.FAILED and "the schema is missing" in cell.error and "exit status 7" in cell.error
