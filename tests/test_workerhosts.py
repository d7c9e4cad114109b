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

