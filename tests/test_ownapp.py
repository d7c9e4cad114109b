"""The user's own app (issue 19), without Docker: ``[app]`` and ``[[requests]]`` validation, the bad inputs refused before
anything runs (exit status 2, an earlier run untouched), and declared requests verified
against the example app served for real over HTTP."""

from __future__ import annotations

import json
import shutil
import sys
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from labapp import appshim
from serverlab.load import Load
from serverlab import LabError, cli
from serverlab.appspec import AppError, app_digest, check_services, find_wsgi, load_app
from serverlab.experiment import load_experiment
from serverlab.loadgen import LoadPlan, wrk_args
from serverlab.requestmix import RequestError, RequestWorkload, load_requests, request_workloads, verify_requests
from serverlab.terms import MIX_WORKLOAD, REQUESTS_ENV, Mode
from serverlab.workloads import VerificationError, calibration_target, verify_workload

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "flaskr"


@pytest.fixture
def example_copy(tmp_path):
    """A private copy of the example app (its instance folder is written by tests)."""
    target = tmp_path / "flaskr-app"
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns("instance", "__pycache__"))
    return target


@pytest.fixture
def example_on_path(example_copy, monkeypatch):
    """The example copy importable as ``flaskr`` (a fresh import per test)."""
    monkeypatch.syspath_prepend(str(example_copy))
    for name in [m for m in sys.modules if m == "flaskr" or m.startswith("flaskr.")]:
        monkeypatch.delitem(sys.modules, name)
    return example_copy


# -- [app] -------------------------------------------------------------------------------


def test_the_example_app_is_found_and_hashed_without_its_runtime_files(example_copy):
    assert find_wsgi(example_copy) == "flaskr:create_app()"
    app = load_app({"path": str(example_copy), "writable": ["instance"]}, Path("/"), "test")
    assert app.wsgi == "flaskr:create_app()" and app.requirements == str(example_copy / "requirements.txt")
    assert app.writable == ("/srv/userapp/instance",) and not app.package
    before = app.digest
    (example_copy / "instance").mkdir()
    (example_copy / "instance" / "flaskr.sqlite").write_bytes(b"runtime data")
    (example_copy / "flaskr" / "__pycache__").mkdir(exist_ok=True)
    (example_copy / "flaskr" / "__pycache__" / "x.pyc").write_bytes(b"cache")
    assert app_digest(example_copy, example_copy / "requirements.txt", ("instance",)) == before
    (example_copy / "flaskr" / "blog.py").write_text((example_copy / "flaskr" / "blog.py").read_text() + "\n# edited\n")
    assert app_digest(example_copy, example_copy / "requirements.txt", ("instance",)) != before


@pytest.mark.parametrize("table, says", [
    ({"path": "does/not/exist"}, "does not exist"),
    ({"path": "."}, "no WSGI app found"),
    ({"path": ".", "wsgi": "not a target"}, "not a module name"),
    ({"path": ".", "wsgi": "m:app", "requirements": "missing.txt"}, "requirements file 'missing.txt' does not exist"),
    ({"path": ".", "wsgi": "m:app", "writable": ["/etc"]}, "inside the app folder"),
    ({"path": ".", "wsgi": "m:app", "env": {"SERVERLAB_APP": "x"}}, "not SERVERLAB_"),
    ({"path": ".", "wsgi": "m:app", "colour": "blue"}, "unknown key 'app.colour'"),
    ({"path": ".", "wsgi": "m:app", "env": {"DATABASE_URL": "postgresql://db:5432/blog"}},
     "DATABASE_URL = 'postgresql://db:5432/blog' points the app at a postgresql service on host 'db'"),
])
def test_bad_app_tables_are_refused_naming_what_is_wrong(tmp_path, table, says):
    with pytest.raises(AppError, match=said_re(says)):
        load_app(table, tmp_path, "exp.toml")


def said_re(text: str) -> str:
    import re

    return re.escape(text)


def test_local_files_are_not_services():
    check_services({"DATABASE": "sqlite:////srv/userapp/instance/app.db", "NAME": "blog"}, "here")
    with pytest.raises(AppError, match="REDIS_URL"):
        check_services({"REDIS_URL": "redis://localhost:6379/0"}, "here")


# -- [[requests]] and the experiment -------------------------------------------------------


def test_the_shipped_flaskr_experiment_has_the_mix_and_each_request_as_workloads():
    experiment = load_experiment("flaskr")
    assert experiment.workloads == (MIX_WORKLOAD, "index", "api-posts", "api-create")
    assert experiment.app.wsgi == "flaskr:create_app()" and experiment.app.setup == ("flask --app flaskr init-db",)
    mix = experiment.workload_spec(MIX_WORKLOAD)
    assert [r.weight for r in mix.requests] == [6, 3, 1]
    create = experiment.workload_spec("api-create")
    assert (create.requests[0].method, create.requests[0].status) == ("POST", 201)


@pytest.mark.parametrize("entry, says", [
    ({"path": "/"}, "key 'name'"),
    ({"name": "mix", "path": "/"}, "key 'name'"),
    ({"name": "a", "path": "no-slash"}, "key 'path'"),
    ({"name": "a", "path": "/healthz"}, "the lab answers /healthz itself"),
    ({"name": "a", "path": "/", "method": "BREW"}, "key 'method'"),
    ({"name": "a", "path": "/", "status": 700}, "key 'status'"),
    ({"name": "a", "path": "/", "weight": 0}, "key 'weight'"),
    ({"name": "a", "path": "/", "colour": "x"}, "unknown key 'colour'"),
])
def test_bad_requests_are_refused(entry, says):
    with pytest.raises(RequestError, match=said_re(says)):
        load_requests("exp.toml", [entry])


def test_requests_need_distinct_names_and_json_tables_get_their_content_type():
    with pytest.raises(RequestError, match="repeated: a"):
        load_requests("exp.toml", [{"name": "a", "path": "/"}, {"name": "a", "path": "/x"}])
    (request,) = load_requests("exp.toml", [{"name": "a", "method": "post", "path": "/", "body": {"k": 1}}])
    assert (request.method, request.body, dict(request.headers)) == ("POST", '{"k": 1}', {"Content-Type": "application/json"})
    assert list(request_workloads([request])) == ["a"]  # one request: no separate mix


def _experiment(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mine.toml"
    path.write_text(text)
    return path


def test_requests_cannot_be_combined_with_workloads_or_the_requests_mode(tmp_path):
    request = '[[requests]]\nname = "a"\npath = "/"\n'
    with pytest.raises(LabError, match="cannot be combined"):
        load_experiment(str(_experiment(tmp_path, f'users = [1]\nworkloads = ["hello"]\n{request}')))
    with pytest.raises(LabError, match="mode .requests. counts requests"):
        load_experiment(str(_experiment(tmp_path, f'mode = "requests"\nwarmup = 0\n{request}')))
    counts = load_experiment(str(_experiment(tmp_path, 'mode = "requests"\nrequests = [100]\nwarmup = 0\n')))
    assert counts.levels == (100,) and counts.requests == ()  # the requests mode's counts are untouched


def test_a_request_workload_travels_to_locust_in_the_environment_and_calibrates_on_the_first_get():
    requests = load_requests("exp.toml", [
        {"name": "create", "method": "POST", "path": "/api/posts", "body": "{}", "status": 201},
        {"name": "page", "path": "/", "headers": {"Accept": "text/html"}},
    ])
    mix = request_workloads(requests)[MIX_WORKLOAD]
    plan = LoadPlan(mix, {}, Load.of(Mode.CLOSED, 8), 2.0, 1.0)
    assert plan.locust_args("/l.py", "http://x:8000", "/out")[-1] == "RequestsUser"
    sent = json.loads(plan.environment("/out")[REQUESTS_ENV])
    assert [r["name"] for r in sent] == ["create", "page"] and sent[0]["status"] == 201
    workload, path, headers = calibration_target(requests)
    assert (workload.name, path, headers) == ("page", "/", ["-H", "Accept: text/html"])
    assert wrk_args("http://x:8000/", 32, 3, headers=headers)[-3:] == ["-H", "Accept: text/html", "http://x:8000/"]
    assert calibration_target(requests[:1]) is None  # no GET: nothing for wrk
    assert calibration_target(())[0].name == "hello"


def test_wrk_counts_in_the_verdict_only_for_the_workload_it_calibrated():
    from types import SimpleNamespace

    from serverlab.report.ranking import wrk_estimate
    from serverlab.terms import calibrated_workload

    demo = SimpleNamespace(calibration={"wrk_rps": 900.0}, wrk_rps="demo's interval")
    app = SimpleNamespace(calibration={"wrk_rps": 700.0, "workload": "index"}, wrk_rps="app's interval")
    assert calibrated_workload(demo.calibration) == "hello" and calibrated_workload(app.calibration) == "index"
    assert wrk_estimate(demo, "hello") == "demo's interval" and wrk_estimate(demo, "io") is None
    assert wrk_estimate(app, "index") == "app's interval" and wrk_estimate(app, "mix") is None


# -- declared requests verified over real HTTP -----------------------------------------------


@pytest.fixture
def example_server(example_on_path):
    """The example app (database initialised) on a real 127.0.0.1 port, in a thread."""
    from flaskr import create_app
    from flaskr.db import init_db

    app = create_app({"DATABASE": str(example_on_path / "test.sqlite")})
    with app.app_context():
        init_db(3)
    server = make_server("127.0.0.1", 0, appshim.HealthMiddleware(app), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


def test_declared_requests_pass_when_each_answers_its_status(example_server):
    requests = load_requests("exp.toml", [
        {"name": "index", "path": "/"},
        {"name": "create", "method": "POST", "path": "/api/posts", "body": {"title": "t", "body": "b"}, "status": 201},
        {"name": "gone", "path": "/999", "status": 404},
    ])
    seen = verify_workload(example_server, request_workloads(requests)[MIX_WORKLOAD], {})
    assert seen["status"] == {"index": 200, "create": 201, "gone": 404}


def test_a_request_answering_another_status_names_it_with_a_body_excerpt(example_server):
    (wrong,) = load_requests("exp.toml", [{"name": "post", "path": "/api/posts/999", "status": 200}])
    with pytest.raises(VerificationError) as caught:
        verify_workload(example_server, RequestWorkload("post", (wrong,)), {})
    assert str(caught.value).startswith("post (GET /api/posts/999): status 404, expected 200; body: ")
    assert "no post 999" in str(caught.value)
    with pytest.raises(Exception, match="no valid answer"):
        verify_requests("http://127.0.0.1:9", RequestWorkload("post", (wrong,)), timeout=2)


# -- the CLI: exit status 2 before anything runs, an earlier run untouched ---------------------


@pytest.fixture
def earlier_run(tmp_path):
    """A reports folder holding an earlier run (its results file and ``latest`` link)."""
    reports = tmp_path / "reports"
    run = reports / "20261201-000000-quick"
    run.mkdir(parents=True)
    (run / "results.jsonl").write_text('{"earlier": "run"}\n')
    (reports / "latest").symlink_to(run.name)
    return reports


def _untouched(reports: Path) -> None:
    assert sorted(p.name for p in reports.iterdir()) == ["20261201-000000-quick", "latest"]
    assert (reports / "latest" / "results.jsonl").read_text() == '{"earlier": "run"}\n'


@pytest.mark.parametrize("args, says", [
    (["--app", "no/such/folder"], "app path 'no/such/folder' does not exist"),
    (["--app", "{empty}"], "no WSGI app found"),
    (["--wsgi", "flaskr:create_app()"], "--wsgi names the app's WSGI target: it needs --app PATH"),
    (["--app", "{example}", "--wsgi", "flaskr:create_app(os.environ)"], "factory arguments must be literals"),
])
def test_bad_app_arguments_exit_2_before_anything_runs(tmp_path, earlier_run, capsys, args, says):
    (tmp_path / "empty").mkdir()
    args = [a.replace("{empty}", str(tmp_path / "empty")).replace("{example}", str(EXAMPLE)) for a in args]
    status = cli.main(["run", "quick", "--reports-dir", str(earlier_run), *args])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("error: ") and says in err
    _untouched(earlier_run)


def test_an_app_needing_a_service_exits_2_naming_the_variable(tmp_path, earlier_run, capsys):
    experiment = _experiment(tmp_path, f'users = [1]\n[app]\npath = "{EXAMPLE}"\n'
                                       'env = { DATABASE_URL = "postgresql://db/blog" }\n')
    status = cli.main(["run", str(experiment), "--reports-dir", str(earlier_run)])
    err = capsys.readouterr().err
    assert status == 2 and "environment variable DATABASE_URL" in err and "the lab does not start" in err
    _untouched(earlier_run)


# -- the real runner with declared requests, through the fake backend (tests/fakebackend.py) ----


DECLARED = """\
servers = ["gunicorn-sync", "gunicorn-gthread"]
users = [4]
duration = 3
warmup = 1
seed = 5
calibrate = true

[[requests]]
name = "doc"
method = "POST"
path = "/json"
status = 405

[[requests]]
name = "json"
path = "/json"
weight = 3

[[requests]]
name = "missing"
path = "/no-such-page"
status = {missing_status}
"""


def _fake_run(tmp_path, missing_status=404):
    from fakebackend import FakeBackend, FakeCpuWatch
    from serverlab.report import write_report
    from serverlab.results import read_results
    from serverlab.runner import Runner

    experiment = load_experiment(str(_experiment(tmp_path, DECLARED.format(missing_status=missing_status))))
    backend = FakeBackend()
    runner = Runner(experiment, backend, tmp_path / "reports", write=lambda _: None, cpu_watch=FakeCpuWatch())
    run_dir = runner.run()
    write_report([run_dir / "results.jsonl"], run_dir)
    _, cells = read_results(run_dir / "results.jsonl")
    return backend, run_dir, cells


def test_the_runner_verifies_loads_and_reports_each_request_and_the_mix(tmp_path):
    backend, run_dir, cells = _fake_run(tmp_path)
    assert {(c.variant, c.workload, c.status) for c in cells} == {
        (v, w, "ok") for v in ("gunicorn-sync", "gunicorn-gthread") for w in ("mix", "doc", "json", "missing")}
    assert {c.calibration.workload for c in cells if c.calibration} == {"json"}  # the first GET request
    assert all(args[-1] == "RequestsUser" for _, args in backend.locust_runs)
    summary = (run_dir / "summary.md").read_text()
    for workload in ("mix", "doc", "json", "missing"):
        assert f"Workload {workload}: closed mode" in summary
    assert "The weighted mix of the app's requests: doc POST /json → 405, weight 1; json GET /json → 200, weight 3" in summary


def test_a_request_with_another_status_leaves_its_cells_unverified_and_the_rest_measured(tmp_path):
    _, _, cells = _fake_run(tmp_path, missing_status=200)
    status = {(c.variant, c.workload): c for c in cells}
    for variant in ("gunicorn-sync", "gunicorn-gthread"):
        for workload in ("missing", "mix"):  # the mix sends it too
            cell = status[(variant, workload)]
            assert cell.status == "unverified" and "missing (GET /no-such-page): status 404, expected 200; body: " in cell.error
        assert status[(variant, "json")].status == status[(variant, "doc")].status == "ok"


def test_the_lab_pins_become_constraints_pip_accepts():
    """pip refuses extras in a constraints file: ``flask[async]==…`` must reach it as ``flask==…``
    (the e2e build failed with "Constraints cannot have extras" once the pin gained its extra)."""
    from serverlab.appimage import lab_constraints

    pins = [line for line in lab_constraints().splitlines() if line and not line.startswith("#")]
    assert pins and all("[" not in line and "==" in line for line in pins), pins
    assert any(line.startswith("flask==") for line in pins)
