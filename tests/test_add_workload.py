"""Adding a workload is one spec in one place plus its Flask route.

A new :class:`serverlab.workloadspec.WorkloadSpec` ("square") is put into
:data:`serverlab.terms.WORKLOADS` and a route for it onto the app; nothing else is
edited. Then the locustfile generates its user class and option (real Locust runs
against a real Werkzeug server of the app), the verifier checks it, the experiment
validator accepts it and the report renders a row for it. Also: every shipped spec's
bounds are the ones the app enforces.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from flask import jsonify, request
from werkzeug.serving import make_server

from labapp import create_app, workload_params
from report_factories import make_cell, make_header, write_results
from serverlab.load import Load
from serverlab import terms
from serverlab.experiment import ExperimentError, load_experiment
from serverlab.loadgen import LoadPlan, read_outcome
from serverlab.report import write_report
from serverlab.terms import WORKLOADS, Mode
from serverlab.workloads import VerificationError, verify

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = REPO_ROOT / "locustfiles" / "locustfile.py"
VENV_BIN = Path(sys.executable).parent
#: The one declaration a contributor writes (here as source, so the Locust child process runs the same line).
SPEC_SOURCE = ('WorkloadSpec("square", "/square", (Bound("n", 12, 1, 1000, "numbers"),), '
               'summary="GET /square?n=: n squared", character=Character.CPU)')
SPEC: terms.WorkloadSpec = eval(SPEC_SOURCE, vars(terms))  # noqa: S307  (a constant string of this file)


@pytest.fixture
def square(monkeypatch) -> terms.WorkloadSpec:
    """The new workload, declared in serverlab.terms.WORKLOADS for this test only."""
    monkeypatch.setitem(terms.WORKLOADS, SPEC.name, SPEC)
    return SPEC


@pytest.fixture
def server(square):
    """A real Werkzeug server of the app with the new workload's route; yields (base URL, paths seen)."""
    app = create_app()
    seen: list[str] = []

    @app.get(square.path)
    def square_view():  # the one route a contributor writes
        n = workload_params(square)["n"]
        return jsonify(n=n, square=n * n)

    @app.after_request
    def _note(response):
        seen.append(request.full_path.rstrip("?"))
        return response

    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}", seen
    finally:
        httpd.shutdown()
        thread.join(10)


def locustfile_with_square(tmp_path: Path) -> Path:
    """A locustfile that declares the spec, then is the lab's locustfile (nothing else added)."""
    path = tmp_path / "with_square.py"
    path.write_text(textwrap.dedent(f"""
        import sys
        from serverlab.terms import WORKLOADS
        from serverlab.workloadspec import Bound, Character, WorkloadSpec
        spec = {SPEC_SOURCE}
        WORKLOADS[spec.name] = spec
        sys.path.insert(0, {str(LOCUSTFILE.parent)!r})
        from locustfile import *  # noqa: F401,F403  (the generated user classes, the event hooks)
    """))
    return path


def test_the_app_serves_it_within_its_bounds(server, square):
    base, _ = server
    with urllib.request.urlopen(f"{base}/square?n=9", timeout=10) as response:
        assert json.loads(response.read()) == {"n": 9, "square": 81}
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{base}/square?n=1001", timeout=10)
    assert info.value.code == 400
    assert json.loads(info.value.read())["allowed"] == {"min": 1, "max": 1000, "unit": "numbers"}


def test_the_verifier_checks_it(server, square):
    base, seen = server
    observed = verify(base, square, square.params({"n": 7}))
    assert observed["status"] == 200 and observed["content_type"] == "application/json"
    assert observed["content_length"] == len(json.dumps({"n": 7, "square": 49}, separators=(",", ":")) + "\n")
    assert seen == ["/square?n=7"]
    # no body check is written for it, but the generic checks apply: a wrong Content-Type is refused
    wrong = terms.WorkloadSpec(square.name, square.path, square.parameters, content_type="text/plain")
    with pytest.raises(VerificationError, match="Content-Type 'application/json', expected 'text/plain'"):
        verify(base, wrong, {"n": 7})
    with pytest.raises(VerificationError, match="status 400"):
        verify(base, square, {"n": 0})  # out of bounds: the app refuses


def test_the_experiment_validator_accepts_it(tmp_path, square):
    path = tmp_path / "squares.toml"
    path.write_text('servers = ["gunicorn-sync"]\nworkloads = ["hello", "square"]\nusers = [4]\n'
                    "[params.square]\nn = 7\n")
    experiment = load_experiment(str(path))
    assert experiment.workloads == ("hello", "square")
    assert experiment.params == {"hello": {}, "square": {"n": 7}}
    path.write_text('servers = ["gunicorn-sync"]\nworkloads = ["square"]\nusers = [4]\n[params.square]\nn = 1001\n')
    with pytest.raises(ExperimentError, match=r"params.square.*'n' = 1001.*1..1000 numbers"):
        load_experiment(str(path))


def test_the_locustfile_generates_its_user_class_and_option(tmp_path, server, square):
    """Locust lists SquareUser, accepts --square-n, and a real run sends GET /square?n=7."""
    base, seen = server
    locustfile = locustfile_with_square(tmp_path)
    listed = subprocess.run([str(VENV_BIN / "locust"), "-f", str(locustfile), "--list"], capture_output=True,
                            text=True, timeout=120, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "SquareUser" in listed.stdout.split() and "HelloUser" in listed.stdout.split()

    out = tmp_path / "out"
    out.mkdir()
    plan = LoadPlan(square, square.params({"n": 7}), Load.of(Mode.REQUESTS, 20, 2), duration_s=60, warmup_s=0)
    argv = plan.locust_args(str(locustfile), base, str(out))
    assert argv[-3:] == ["--square-n", "7", "SquareUser"]
    run = subprocess.run([str(VENV_BIN / argv[0]), *argv[1:]], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path, env={**os.environ, **plan.environment(str(out))})
    assert run.returncode == 0, run.stderr[-2000:]
    outcome = read_outcome(out, plan, run.stderr)
    assert outcome.requests >= 20 and outcome.failures == 0
    assert set(seen) == {"/square?n=7"} and len(seen) >= 20


def test_the_report_renders_a_row_for_it(tmp_path, square):
    cells = [make_cell(variant, "square", rps=rps, repetition=rep)
             for variant, rps in (("gunicorn-sync", 900.0), ("gunicorn-gthread", 700.0)) for rep in (1, 2, 3)]
    results = write_results(tmp_path / "results.jsonl", make_header(workloads=["square"], params={"square": {"n": 7}}), cells)
    paths = write_report([results], tmp_path / "report")
    summary = paths["markdown"].read_text()
    assert "## Workload square: closed mode" in summary
    table = summary[summary.index("## Workload square"):]
    assert "gunicorn-sync" in table and "gunicorn-gthread" in table
    document = json.loads(paths["json"].read_text())
    assert "square" in json.dumps(document)
    assert "square" in paths["html"].read_text()


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_every_spec_bound_is_what_the_app_enforces(name):
    """One source: the app refuses exactly outside each spec's bounds, naming them, and accepts the edges
    that cost little (the low end; the high end of a sleep would take seconds)."""
    client = create_app().test_client()
    spec = WORKLOADS[name]
    for param, bound in spec.bounds.items():
        for value in (bound.low - 1, bound.high + 1):
            response = client.get(spec.url_path({**spec.default_params(), param: value}))
            assert response.status_code == 400, (name, param, value)
            assert response.get_json()["parameter"] == param
            assert response.get_json()["allowed"] == {"min": bound.low, "max": bound.high, "unit": bound.unit}
        assert client.get(spec.url_path({**spec.default_params(), param: bound.low})).status_code == 200
    assert client.get(spec.url_path(spec.default_params())).status_code == 200
    assert client.get(spec.path).status_code == 200  # every parameter has a default
