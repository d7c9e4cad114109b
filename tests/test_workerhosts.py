"""Locust workers on other hosts: ``docker-compose.loadgen.yml``, the lab version, an unreachable
master, and (real Locust master and workers on 127.0.0.1, no Docker) the Worker hosts table and
the refusal of a worker of another lab version.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from serverlab import loadgencompose
from serverlab.compose import difference
from serverlab.ui.web import worker_table_rows
from serverlab.workerhosts import lab_version, main as workerhosts_main, wait_master

yaml = pytest.importorskip("yaml")

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = REPO_ROOT / "locustfiles" / "locustfile.py"
VENV_BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- docker-compose.loadgen.yml -----------------------------------------------------------

def test_committed_loadgen_file_is_what_serverlab_compose_writes():
    diff = difference(loadgencompose.LOADGEN_FILE, loadgencompose.render())
    assert not diff, "docker-compose.loadgen.yml is generated: run `serverlab compose` and commit it\n" + diff[:3000]


def test_loadgen_file_runs_only_hardened_workers_pointed_at_the_master():
    config = yaml.safe_load(loadgencompose.render())
    assert set(config["services"]) == {"locust-worker"}
    worker = config["services"]["locust-worker"]
    assert "ports" not in worker  # it publishes nothing: it connects out to the master
    assert worker["cap_drop"] == ["ALL"] and worker["read_only"] is True
    assert "no-new-privileges:true" in worker["security_opt"]
    assert worker["cpus"] == "${LOADGEN_CPUS:-1}" and worker["mem_limit"] == "${LOADGEN_MEMORY:-1g}"
    env = worker["environment"]
    assert env["LOCUST_MASTER_HOST"].startswith("${LOCUST_MASTER_HOST:?")  # compose refuses to start without it
    assert env["SERVERLAB_TARGET_URL_TEMPLATE"] == "http://${LOCUST_MASTER_HOST}:{port}"
    script = worker["command"][-1]
    assert "serverlab.workerhosts wait-master" in script and "--worker --master-host" in script


# -- lab version and the master's reachability ----------------------------------------------

def test_lab_version_names_the_code_a_worker_runs(tmp_path):
    version = lab_version(LOCUSTFILE)
    assert version == lab_version(LOCUSTFILE) and version.startswith("0.") and "+" in version
    other = tmp_path / "locustfile.py"
    other.write_text(LOCUSTFILE.read_text() + "\n# another lab\n")
    assert lab_version(other) != version


def test_an_unreachable_master_is_a_clear_error_within_the_timeout(capsys):
    port = _free_port()  # nothing listens there
    started = time.monotonic()
    assert workerhosts_main(["wait-master", "127.0.0.1", str(port), "--timeout", "1.5"]) == 2
    assert time.monotonic() - started < 6
    err = capsys.readouterr().err
    assert f"error: the Locust master at 127.0.0.1:{port} is unreachable after 1.5 s" in err
    assert "LOCUST_MASTER_BIND" in err and "ConnectionRefusedError" in err
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        assert wait_master("127.0.0.1", listening.getsockname()[1], 2.0) is None


def test_worker_table_rows_say_where_each_worker_runs():
    rows = worker_table_rows({"lab_version": "0.1.0+abc", "connected": 3, "unintroduced": 0,
                              "hosts": [{"host": "lab", "remote": False, "processes": 1, "cpus": 1},
                                        {"host": "gen2", "remote": True, "processes": 2, "cpus": 2}],
                              "refused": [{"host": "gen3", "remote": True, "cpus": 4, "reason": "runs lab version 'x'"}]})
    assert [(r["host"], r["processes"], r["status"].split(":")[0]) for r in rows] == [
        ("lab", "1", "connected, lab 0.1.0+abc"), ("gen2", "2", "connected, lab 0.1.0+abc"), ("gen3", "1", "refused")]
    assert "another host" in rows[1]["where"] and rows[0]["where"] == "this lab"
    assert "no workers" in worker_table_rows(None)[0]["status"]


# -- a real master and workers ----------------------------------------------------------------

def _start(argv: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(argv, cwd=REPO_ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
                                stdout=out, stderr=subprocess.STDOUT)


def _stop(*procs: subprocess.Popen) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def _state(url: str) -> dict:
    with urllib.request.urlopen(url + "/serverlab/state", timeout=5) as response:
        return json.load(response)


def _until(check, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    pytest.fail(f"not within {timeout_s:g} s: {what}")


@pytest.mark.slow
def test_master_lists_worker_hosts_and_refuses_another_lab_version(tmp_path):
    """A master with its web UI, a worker introducing itself as host gen-a, and a worker whose
    locustfile differs (another lab version): the Worker hosts data names gen-a with its CPUs, the
    other is refused with both versions named, and Locust's quit stops it."""
    port, web = _free_port(), _free_port()
    env = {"SERVERLAB_REPORTS_DIR": str(tmp_path / "reports")}
    master = _start([str(VENV_BIN / "locust"), "-f", str(LOCUSTFILE), "--master", "--master-bind-host", "127.0.0.1",
                     "--master-bind-port", str(port), "--web-host", "127.0.0.1", "--web-port", str(web)],
                    tmp_path / "master.log", env)
    worker_argv = ["--worker", "--master-host", "127.0.0.1", "--master-port", str(port)]
    good = _start([str(VENV_BIN / "locust"), "-f", str(LOCUSTFILE), *worker_argv], tmp_path / "good.log",
                  {**env, "SERVERLAB_WORKER_HOST": "gen-a", "SERVERLAB_REMOTE_WORKER": "1"})
    other = tmp_path / "old" / "locustfile.py"
    other.parent.mkdir()
    other.write_text(LOCUSTFILE.read_text() + "\n# an older lab\n")
    bad = None
    url = f"http://127.0.0.1:{web}"
    try:
        def hosts():
            try:
                return _state(url)["worker_hosts"]["hosts"]
            except OSError:
                return None
        [host] = _until(hosts, 60, f"worker gen-a listed: {(tmp_path / 'master.log').read_text()[-2000:]}")
        assert host == {"host": "gen-a", "remote": True, "processes": 1, "cpus": len(os.sched_getaffinity(0))}
        bad = _start([str(VENV_BIN / "locust"), "-f", str(other), *worker_argv], tmp_path / "bad.log",
                     {**env, "SERVERLAB_WORKER_HOST": "gen-old", "SERVERLAB_REMOTE_WORKER": "1"})
        refused = _until(lambda: _state(url)["worker_hosts"]["refused"], 60, "the old worker refused")
        assert refused[0]["host"] == "gen-old"
        assert lab_version(LOCUSTFILE) in refused[0]["reason"] and lab_version(other) in refused[0]["reason"]
        bad.wait(timeout=30)  # Locust's own quit message stopped it
        assert "the Locust master refused this worker" in (tmp_path / "bad.log").read_text()
        state = _state(url)
        assert [h["host"] for h in state["worker_hosts"]["hosts"]] == ["gen-a"] and state["workers"] == 1
    finally:
        _stop(*(p for p in (bad, good, master) if p is not None))


# -- serverlab run's side: budget, master command line, each cell's check --------------------

from serverlab.budget import Budget, with_remote_workers  # noqa: E402
from serverlab.remoterun import cell_workers, master_args, remote_capacity  # noqa: E402


@pytest.mark.parametrize("kwargs, named", [
    ({"remote_workers": -1}, "budget.remote_workers' = -1"), ({"remote_workers": True}, "budget.remote_workers' = True"),
    ({"remote_workers": 1, "master_bind": "lab.example"}, "budget.master_bind' = 'lab.example'"),
    ({"remote_workers": 1, "remote_wait_s": 1}, "budget.remote_wait' = 1"),
])
def test_bad_remote_budgets_are_refused_naming_the_key(kwargs, named):
    with pytest.raises(ValueError, match=named.replace(".", r"\.").replace("(", r"\(")):
        with_remote_workers(Budget(), "closed", **kwargs)
    with pytest.raises(ValueError, match="closed model only"):
        with_remote_workers(Budget(), "open", remote_workers=2)
    assert with_remote_workers(Budget(), "closed", 2, "172.17.0.1", 30).remote_workers == 2


def test_an_experiment_file_and_the_cli_take_remote_workers(tmp_path, capsys):
    from serverlab.cli import main
    from serverlab.experiment import ExperimentError, load_experiment

    path = tmp_path / "remote.toml"
    path.write_text('servers = ["gunicorn-sync"]\nworkloads = ["hello"]\nusers = [8]\nduration = 3\nwarmup = 1\n'
                    'repetitions = 1\n[budget]\nremote_workers = 2\nmaster_bind = "0.0.0.0"\nremote_wait = 20\n')
    experiment = load_experiment(str(path))
    assert (experiment.budget.remote_workers, experiment.budget.master_bind, experiment.budget.remote_wait_s) == (2, "0.0.0.0", 20.0)
    assert experiment.record()["budget"]["remote_workers"] == 2
    assert "remote_workers" not in load_experiment("quick").record()["budget"]  # unchanged digests without them
    path.write_text(path.read_text().replace("remote_wait = 20", "remote_wait = 2000"))
    with pytest.raises(ExperimentError, match=r"remote\.toml: key 'budget\.remote_wait' = 2000"):
        load_experiment(str(path))
    assert main(["run", "quick", "--remote-workers", "1", "--master-bind", "not-an-address"]) == 2
    assert "error: key '--master-bind' = 'not-an-address' is invalid" in capsys.readouterr().err
    assert main(["run", "quick", "--remote-workers", "1", "--backend", "local"]) == 2
    assert "need --backend docker" in capsys.readouterr().err


def test_master_args_start_local_workers_and_a_waiting_master():
    argv = master_args(["locust", "-f", "/srv/l.py", "--headless", "-u", "8", "--processes", "2", "HelloUser"], 2, 3, 30)
    assert argv[:2] == ["sh", "-c"]
    workers, master = argv[2].split(" & exec ")
    assert workers == "SERVERLAB_HDR_DIR= locust -f /srv/l.py --worker --master-host 127.0.0.1 --master-port 5557 --processes 2"
    assert master.startswith("locust -f /srv/l.py --headless -u 8 HelloUser --master") and "--processes" not in master
    assert master.endswith("--expect-workers 5 --expect-workers-max-wait 30")


def _write_workers(out: Path, **facts) -> None:
    (out / "workers.json").write_text(json.dumps(facts))


GEN_B = {"host": "gen-b", "container": "c0ffee", "pid": 7, "cpus": 2, "remote": True, "client_id": "x"}


def test_a_cell_with_missing_or_late_remote_workers_is_not_ok(tmp_path):
    known = [GEN_B, {**GEN_B, "host": "gen-c", "container": "beef"}]
    _write_workers(tmp_path, workers=[GEN_B])  # the master gave up waiting: no test started
    error, _ = cell_workers(tmp_path, 2, 30, "... Gave up waiting for workers to connect", known)
    assert error.startswith("remote workers: 1 of 2 connected within 30 s (gen-b: 1 process, 2 CPUs); missing: 1")
    assert "absent since the run's roll call: gen-c" in error
    _write_workers(tmp_path, started_with=[GEN_B], collected=[], missing=["gen-b (container c0ffee, pid 7)"])
    error, _ = cell_workers(tmp_path, 1, 30, "", known)
    assert "gen-b (container c0ffee, pid 7) went missing during the cell" in error
    _write_workers(tmp_path, error="0 of 1 remote Locust worker(s) of this lab connected; refused: worker gen-b runs lab version 'x'")
    assert "refused: worker gen-b" in cell_workers(tmp_path, 1, 30, "", known)[0]
    _write_workers(tmp_path, started_with=[GEN_B], collected=["c0ffee-7"], missing=[])
    assert cell_workers(tmp_path, 1, 30, "", known)[0] is None
    (tmp_path / "workers.json").unlink()
    assert "0 of 1 connected" in cell_workers(tmp_path, 1, 30, "", known)[0]
    assert remote_capacity([GEN_B, {**GEN_B, "pid": 8}, {**GEN_B, "pid": 9}, {**GEN_B, "host": "lab", "remote": False}]) == 2


@pytest.mark.slow
def test_roll_call_names_who_came_and_who_is_missing(tmp_path):
    """A real roll call (Locust master, no load) on 127.0.0.1: no worker within 2 s is exit status 2 naming
    the count; with one remote-flagged worker connected it writes that worker's host and CPUs."""
    port = _free_port()
    out = tmp_path / "roll.json"
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "serverlab.workerhosts", "roll-call", "1", "--timeout", "2",
                           "--out", str(out), "--port", str(port)], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and time.monotonic() - started < 30, proc.stderr[-2000:]
    assert "error: 0 of 1 remote Locust worker(s) connected within 2 s; missing: 1" in proc.stderr
    worker = _start([str(VENV_BIN / "locust"), "-f", str(LOCUSTFILE), "--worker", "--master-host", "127.0.0.1",
                     "--master-port", str(port)], tmp_path / "worker.log",
                    {"SERVERLAB_WORKER_HOST": "gen-b", "SERVERLAB_REMOTE_WORKER": "1"})
    try:
        proc = subprocess.run([sys.executable, "-m", "serverlab.workerhosts", "roll-call", "1", "--timeout", "60",
                               "--out", str(out), "--port", str(port)], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:] + (tmp_path / "worker.log").read_text()[-2000:]
        facts = json.loads(out.read_text())
        assert facts["error"] is None and [(w["host"], w["cpus"]) for w in facts["remote"]] == [
            ("gen-b", len(os.sched_getaffinity(0)))]
        worker.wait(timeout=30)  # the roll call's quit ends the worker (docker-compose.loadgen.yml loops back)
    finally:
        _stop(worker)
