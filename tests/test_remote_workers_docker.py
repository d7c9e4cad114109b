"""Locust workers on another host, in Docker: a second compose project on its own network
(``docker-compose.loadgen.yml``, as on another machine) that reaches the lab's master and servers
only through the ports published on ``LOCUST_MASTER_BIND`` (here the docker0 bridge's address,
which every container reaches through the host, as another host reaches a LAN address).

1. The web UI's Compare of two servers merges the remote worker's requests (its own
   ``hdr-*.json`` in every cell) with the lab worker's, and the Worker hosts data names it.
2. ``serverlab run`` with ``--remote-workers 1`` (the lab down, the remote worker waiting): the
   header lists the worker (host, CPUs), every cell is ok with the remote process's requests in
   it, and the generator capacity is both machines' cores.
3. ``--remote-workers 2`` with one there: a clear error within the wait, nothing measured.

Windows are seconds long; one image build (cached), one remote project for the module.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from locustui import call_json as call

ROOT = Path(__file__).resolve().parents[1]
LAB, REMOTE = "serverlab-remotelab", "serverlab-remotegen"
SERVERS = ["gunicorn-gthread", "uwsgi-processes"]
GEN_HOST = "gen-b"
pytestmark = [pytest.mark.docker, pytest.mark.slow]


def run(argv: list[str], env: dict[str, str] | None = None, timeout: float = 600, check: bool = True):
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    if check:
        assert proc.returncode == 0, f"{' '.join(argv)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc


def until(check, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = check()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(1)
    pytest.fail(f"not within {timeout_s:g} s: {what}")


@pytest.fixture(scope="module")
def bind(docker_ready) -> str:
    """The docker0 bridge's address: this machine's, reachable from every container through the host."""
    gateway = run(["docker", "network", "inspect", "bridge", "-f", "{{(index .IPAM.Config 0).Gateway}}"]).stdout.strip()
    assert gateway.count(".") == 3, gateway
    return gateway


@pytest.fixture(scope="module")
def reports_dir():
    base = Path(tempfile.mkdtemp(prefix="serverlab-remote-"))
    base.chmod(0o777)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def lab_env(bind, reports_dir) -> dict[str, str]:
    return {"SERVERLAB_REPORTS": str(reports_dir), "LOCUST_WORKER_PROCESSES": "1", "LOCUST_MASTER_BIND": bind}


@pytest.fixture(scope="module")
def remote(docker_ready, bind, lab_env):
    """The image built once; the lab (two servers, master, one worker) and, in a project of its own,
    one worker of docker-compose.loadgen.yml pointed at ``bind``; both removed at the end."""
    run(["docker", "compose", "-p", LAB, "build", "locust-master"], timeout=1800)  # the one service with build:
    lab = ["docker", "compose", "-p", LAB]
    gen = ["docker", "compose", "-p", REMOTE, "-f", "docker-compose.loadgen.yml"]
    gen_env = {"LOCUST_MASTER_HOST": bind, "SERVERLAB_WORKER_HOST": GEN_HOST, "LOCUST_WORKER_PROCESSES": "1",
               "LOADGEN_CPUSET": "1", "LOCUST_MASTER_WAIT": "10"}
    try:
        run([*lab, "up", "-d", "--no-deps", "--wait", "--wait-timeout", "180", *SERVERS], lab_env)
        run([*lab, "up", "-d", "--no-deps", "locust-master", "locust-worker"], lab_env)
        run([*gen, "up", "-d", "--no-build"], gen_env)
        address = run([*lab, "port", "locust-master", "8089"], lab_env).stdout.strip()
        assert address.startswith("127.0.0.1:"), address  # the web UI stays on 127.0.0.1
        container = run([*gen, "ps", "-q", "locust-worker"], gen_env).stdout.strip()
        yield {"url": f"http://{address}", "lab": lab, "gen": gen, "gen_env": gen_env, "hostname": container[:12]}
    finally:
        for argv, env in ((gen, gen_env), (lab, lab_env)):
            run([*argv, "down", "--remove-orphans", "-t", "5"], env, check=False)


def remote_dumps(cell_dir: Path, hostname: str) -> list[dict]:
    """The ``hdr-*.json`` of the remote worker's processes in one cell's attempt folder."""
    return [json.loads(p.read_text()) for p in cell_dir.glob(f"hdr-{hostname}-*.json")]


def test_the_remote_worker_reaches_the_master_only_through_the_published_port(remote, bind):
    probe = ("import socket, sys\nfor host in sys.argv[1:]:\n    try:\n        socket.create_connection((host, 5557), 3).close()"
             "\n        print(host, 'open')\n    except OSError as err:\n        print(host, 'closed', type(err).__name__)")
    out = run([*remote["gen"], "exec", "-T", "locust-worker", "python", "-c", probe, "locust-master", bind],
              remote["gen_env"]).stdout
    assert f"{bind} open" in out and "locust-master closed" in out, out


def test_compare_of_two_servers_merges_the_remote_workers_requests(remote, reports_dir):
    url = remote["url"]
    hosts = until(lambda: {h["host"]: h for h in call(url + "/serverlab/state")["worker_hosts"]["hosts"]}
                  if len(call(url + "/serverlab/state")["worker_hosts"]["hosts"]) == 2 else None, 120,
                  "the lab's worker and the remote worker introduced themselves")
    assert hosts[GEN_HOST]["remote"] is True and hosts[GEN_HOST]["processes"] == 1 and hosts[GEN_HOST]["cpus"] == 1
    assert hosts["lab"]["remote"] is False
    started = call(url + "/serverlab/compare/start", {"servers": SERVERS, "workload": "hello", "users": 8,
                                                     "seconds": 5, "warmup_s": 1})
    assert started.get("success"), started
    status = until(lambda: (s := call(url + "/serverlab/compare/status"))["state"] != "running" and s, 180, "the Compare")
    assert [r["status"] for r in status["rows"]] == ["ok", "ok"], status["rows"]
    [run_dir] = [p for p in reports_dir.glob("*-ui-compare") if (p / "results.jsonl").is_file()]
    cells = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()[1:]]
    assert sorted(c["variant"] for c in cells) == sorted(SERVERS)
    for cell in cells:
        [attempt] = (run_dir / "cells" / cell["cell_id"].replace("/", "_")).glob("attempt-*")
        dumps = [json.loads(p.read_text()) for p in attempt.glob("hdr-*.json")]
        mine = remote_dumps(attempt, remote["hostname"])
        assert len(dumps) == 2 and len(mine) == 1 and mine[0]["requests"] > 0, (cell["variant"], [d["process"] for d in dumps])
        assert cell["requests"] == sum(d["requests"] for d in dumps)  # merged: both workers' requests


def test_serverlab_run_waits_for_the_remote_worker_and_lists_it(remote, reports_dir, bind, lab_env):
    run([*remote["lab"], "down", "-t", "5"], lab_env)  # the run starts its own master and servers on bind
    experiment = reports_dir / "remote-check.toml"
    experiment.write_text(f"servers = {json.dumps(SERVERS)}\nworkloads = [\"hello\"]\nusers = [8]\nduration = 3\n"
                          "warmup = 1\nrepetitions = 1\n")
    proc = run([sys.executable, "-m", "serverlab.cli", "run", str(experiment), "--yes", "--reports-dir", str(reports_dir),
                "--remote-workers", "1", "--master-bind", bind, "--remote-wait", "60"], timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    [run_dir] = [p for p in reports_dir.glob("*-remote-check") if (p / "results.jsonl").is_file()]
    lines = (run_dir / "results.jsonl").read_text().splitlines()
    header, cells = json.loads(lines[0]), [json.loads(line) for line in lines[1:]]
    workers = header["metadata"]["remote_workers"]
    assert [(w["host"], w["cpus"]) for w in workers["workers"]] == [(GEN_HOST, 1)]
    assert workers["expected"] == 1 and workers["master_bind"] == bind and "process_time" in workers["cpu_basis"]
    assert sorted(c["variant"] for c in cells) == sorted(SERVERS) and all(c["status"] == "ok" for c in cells), cells
    for cell in cells:
        assert cell["loadgen_cpu_budget"] == 2.0  # this machine's one Locust core + the remote host's
        [attempt] = (run_dir / "cells" / cell["cell_id"].replace("/", "_")).glob("attempt-*")
        dumps = [json.loads(p.read_text()) for p in attempt.glob("hdr-*.json")]
        mine = remote_dumps(attempt, remote["hostname"])
        assert len(dumps) == 2 and len(mine) == 1 and mine[0]["requests"] > 0, [d["process"] for d in dumps]
        assert cell["requests"] == sum(d["requests"] for d in dumps)
    report = (run_dir / "summary.md").read_text()
    assert f"{GEN_HOST}: 1 process, 1 CPUs" in report and "own CPU time" in report

    # fewer workers than expected: a clear error within the wait, and nothing measured
    started = time.monotonic()
    proc = run([sys.executable, "-m", "serverlab.cli", "run", str(experiment), "--yes", "--reports-dir", str(reports_dir),
                "--remote-workers", "2", "--master-bind", bind, "--remote-wait", "8"], timeout=600, check=False)
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "1 of 2 remote Locust worker(s) connected within 8 s (gen-b: 1 process, 1 CPUs); missing: 1" in proc.stderr
    assert "nothing was measured" in proc.stderr and time.monotonic() - started < 120
