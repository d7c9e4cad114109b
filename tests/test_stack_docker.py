"""The lab on Docker Swarm: ``docker swarm init`` on this machine (one node with both role
labels), ``docker stack deploy`` the generated docker-stack.yml with the locally built image
(no registry), see the Locust web UI answer through the loopback forwarder and a server
reach healthy with the compose budgets applied; then ``docker stack rm`` and ``docker swarm
leave --force`` leave nothing behind, and Compose still works on the engine afterwards.

Robust to an aborted earlier run: a swarm this test made (one node, advertised on 127.0.0.1,
labelled by this test) is cleaned up first; a swarm it did not make is never touched (skip,
or fail with CI=true). Every wait is bounded and says what it waited for.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from locustui import free_port

from serverlab.stack import LOADGEN_LABEL, SERVER_LABEL

ROOT = Path(__file__).resolve().parents[1]
STACK = "serverlab-swarmtest"
#: Marks the node as this test's, so a leftover swarm can be told from someone's real one.
MARK = "serverlab.swarmtest"
FORWARDER = f"{STACK}-ui"
SERVER = "gunicorn-sync"
TAG = os.environ.get("SERVERLAB_TAG") or "latest"
IMAGE = f"serverlab:{TAG}"
pytestmark = [pytest.mark.docker, pytest.mark.slow]


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``docker ARGS``; with ``check``, fail the test with its output unless it exits 0."""
    proc = subprocess.run(["docker", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "SERVERLAB_TAG": TAG})
    if check:
        assert proc.returncode == 0, f"docker {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc


def lines(*args: str) -> list[str]:
    """The non-empty output lines of ``docker ARGS`` (which must succeed)."""
    return [line for line in docker(*args).stdout.splitlines() if line.strip()]


def wait_for(what: str, probe, timeout: float, every: float = 1.0, details=lambda: ""):
    """Call ``probe()`` until it returns a true value (returned); fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except (OSError, ValueError, http.client.HTTPException) as err:
            last = err
        if last and not isinstance(last, Exception):
            return last
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})\n{details()}")


def swarm_state() -> dict:
    """``docker info``'s Swarm block: LocalNodeState, NodeAddr, Nodes, ..."""
    return json.loads(docker("info", "--format", "{{json .Swarm}}").stdout)


def ours(state: dict) -> bool:
    """Whether the engine's swarm is one this test made: one node, on 127.0.0.1, carrying :data:`MARK`."""
    if state.get("LocalNodeState") != "active" or state.get("NodeAddr") != "127.0.0.1" or state.get("Nodes") != 1:
        return False
    node = json.loads(docker("node", "inspect", "self", "--format", "{{json .Spec.Labels}}").stdout) or {}
    return node.get(MARK) == "true"


def leftovers() -> dict[str, list[str]]:
    """What a swarm test could leave behind, by kind (empty lists: nothing)."""
    label = f"label=com.docker.stack.namespace={STACK}"
    state = swarm_state()
    return {
        "services": lines("service", "ls", "-q") if state.get("LocalNodeState") == "active" else [],
        "containers": lines("ps", "-aq", "--filter", label) + lines("ps", "-aq", "--filter", f"name=^{FORWARDER}$"),
        "networks": [name for name in lines("network", "ls", "--format", "{{.Name}}")
                     if name.startswith(f"{STACK}_") or name in ("ingress", "docker_gwbridge")],
        "volumes": lines("volume", "ls", "-q", "--filter", label),
        "swarm": [] if state.get("LocalNodeState") == "inactive" else [str(state.get("LocalNodeState"))],
    }


def tear_down() -> None:
    """Remove the forwarder, the stack (waiting until its containers and networks are gone), its
    volume, leave the swarm, and drop docker_gwbridge, which ``swarm leave`` keeps. Idempotent."""
    docker("rm", "-f", FORWARDER, check=False)
    if swarm_state().get("LocalNodeState") == "active":
        docker("stack", "rm", STACK, check=False)
        label = f"label=com.docker.stack.namespace={STACK}"
        wait_for("the stack's containers and networks to go after `docker stack rm`",
                 lambda: not lines("ps", "-aq", "--filter", label) and not lines("network", "ls", "-q", "--filter", label),
                 timeout=60, details=lambda: docker("ps", "-a", "--filter", label, check=False).stdout)
        docker("swarm", "leave", "--force", timeout=60)
    for volume in lines("volume", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={STACK}"):
        docker("volume", "rm", volume, check=False)
    # The overlay's bridge to the host: created by `swarm init`, kept by `swarm leave`; unused
    # once the node is in no swarm (Docker makes it again on the next init).
    if swarm_state().get("LocalNodeState") == "inactive":
        gwbridge = docker("network", "inspect", "docker_gwbridge", "--format", "{{len .Containers}}", check=False)
        if gwbridge.returncode == 0 and gwbridge.stdout.strip() == "0":
            docker("network", "rm", "docker_gwbridge", check=False)


@pytest.fixture(scope="module")
def swarm(docker_ready):
    """A single-node swarm (both roles) running the generated stack, and the UI's forwarder on a
    free 127.0.0.1 port (returned); everything removed afterwards, whatever happened."""
    state = swarm_state()
    if state.get("LocalNodeState") != "inactive":
        if not ours(state):
            message = (f"this engine is already in a swarm ({state.get('LocalNodeState')}, node {state.get('NodeAddr')}, "
                       f"{state.get('Nodes')} nodes) that this test did not create; it is not touched. "
                       "Leave it first (`docker swarm leave --force`) to run this test")
            if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
                pytest.fail(message)
            pytest.skip(message)
    tear_down()  # a previous run that was killed mid-way
    assert not any(leftovers().values()), f"could not clean up an earlier run: {leftovers()}"

    docker("compose", "build", "locust-master", timeout=900)  # the image, as `make report` builds it
    try:
        # 127.0.0.1: the manager's port 2377 listens on loopback only (one node needs no more).
        docker("swarm", "init", "--listen-addr", "127.0.0.1:2377", "--advertise-addr", "127.0.0.1", timeout=60)
        docker("node", "update", "--label-add", f"{MARK}=true", "--label-add", f"{SERVER_LABEL}=true",
               "--label-add", f"{LOADGEN_LABEL}=true", swarm_state()["NodeID"])  # `update` takes no "self"
        # --resolve-image never: the image exists only in this engine; asking a registry for its
        # digest would fail (none is reachable) or point nodes at another image.
        docker("stack", "deploy", "--resolve-image", "never", "-c", "docker-stack.yml", STACK, timeout=120)
        port = free_port()
        docker("run", "-d", "--rm", "--init", "--name", FORWARDER, "--network", f"{STACK}_lab",
               "-p", f"127.0.0.1:{port}:8089", "--read-only", "--cap-drop", "ALL",
               "--security-opt", "no-new-privileges", IMAGE, "python", "-m", "serverlab.forward",
               "--to", "locust-master:8089")
        yield port
    finally:
        tear_down()


def service_logs(name: str) -> str:
    return docker("service", "logs", "--tail", "30", f"{STACK}_{name}", check=False).stdout[-3000:]


def test_the_web_ui_answers_on_loopback_through_the_forwarder(swarm):
    def page() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{swarm}/", timeout=5) as response:
            body = response.read().decode("utf-8", "replace")
            return body if response.status == 200 and "locust" in body.lower() else ""

    wait_for("Locust's web UI on 127.0.0.1 (forwarder -> locust-master:8089)", page, timeout=90,
             details=lambda: service_logs("locust-master") + docker("logs", FORWARDER, check=False).stderr[-1000:])


def test_a_server_reaches_healthy_with_the_compose_budget(swarm):
    label = f"label=com.docker.swarm.service.name={STACK}_{SERVER}"

    def healthy() -> str:
        for container in lines("ps", "-q", "--filter", label):
            status = docker("inspect", container, "--format", "{{.State.Health.Status}}", check=False)
            if status.stdout.strip() == "healthy":
                return container
        return ""

    container = wait_for(f"{SERVER}'s task to be healthy (its healthcheck.sh)", healthy, timeout=150, every=2,
                         details=lambda: docker("service", "ps", "--no-trunc", f"{STACK}_{SERVER}", check=False).stdout
                         + service_logs(SERVER))
    host = json.loads(docker("inspect", container, "--format", "{{json .HostConfig}}").stdout)
    assert host["NanoCpus"] == 10**9 and host["Memory"] == 512 * 2**20 and host["PidsLimit"] == 512, host
    assert host["CapDrop"] == ["ALL"] and host["ReadonlyRootfs"] is True and host["Init"] is True
    assert host["CpusetCpus"] == "", "Swarm has no cpuset: the README says so"
    user = docker("inspect", container, "--format", "{{.Config.User}}").stdout.strip()
    assert user in ("10001:10001", ""), user  # "" = the image's USER 10001


def test_a_worker_connects_to_the_master(swarm):
    def workers() -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{swarm}/stats/requests", timeout=5) as response:
            stats = json.loads(response.read())
            return stats.get("worker_count", len(stats.get("workers", [])))

    wait_for("the locust-worker replica to connect to the master", workers, timeout=120, every=2,
             details=lambda: service_logs("locust-worker"))


def test_a_compare_runs_in_the_stack_and_its_budget_shows_no_pinning(swarm):
    """The web UI's Compare measures what is deployed (no Docker socket): one server, 5 s. Its run
    header records the CPUs the server reports: on Swarm, every CPU of the node (no cpuset)."""
    base = f"http://127.0.0.1:{swarm}/serverlab/compare"
    body = json.dumps({"servers": [SERVER], "workload": "hello", "users": 8, "seconds": 5, "warmup_s": 1}).encode()

    def start() -> dict:
        request = urllib.request.Request(f"{base}/start", data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as err:  # 409 until a worker is connected
            return {} if err.code == 409 else pytest.fail(f"Compare refused: {err.code} {err.read()[:300]!r}")

    wait_for("the Compare to start (a worker connected)", start, timeout=120, every=2,
             details=lambda: service_logs("locust-worker"))

    def finished() -> dict:
        with urllib.request.urlopen(f"{base}/status", timeout=10) as response:
            status = json.loads(response.read())
        return status if status["state"] != "running" else {}

    status = wait_for("the Compare to finish", finished, timeout=120, every=2,
                      details=lambda: service_logs("locust-master"))
    assert status["state"] == "done", status
    [row] = status["rows"]
    assert row["status"] == "ok" and row["rps"] > 0 and row["requests"] > 0, row
    with urllib.request.urlopen(f"{base}/results.jsonl", timeout=10) as response:
        header = json.loads(response.read().decode().splitlines()[0])
    budget = header["experiment"]["budget"]
    print(f"Compare in the stack: {row['rps']} RPS, {row['bottleneck']} ({row['bottleneck_reason']}); budget {budget}")
    every_cpu = "0" if int(docker("info", "--format", "{{.NCPU}}").stdout) == 1 else \
        f"0-{int(docker('info', '--format', '{{.NCPU}}').stdout) - 1}"
    # what marks such a run: server and generator on the same, unpinned CPUs (README, "Reports")
    assert budget["server_cpuset"] == budget["loadgen_cpuset"] == every_cpu, budget


def test_teardown_leaves_nothing_and_compose_still_works(swarm):
    tear_down()
    left = leftovers()
    assert not any(left.values()), f"left behind after stack rm + swarm leave: {left}"
    # The engine is a plain engine again: a compose project still gets its bridge network.
    project = f"{STACK}-after"
    try:
        proc = docker("compose", "-p", project, "run", "--rm", "--no-deps", "-T", "loadgen", "python", "-c",
                      "import socket; print(socket.gethostbyname(socket.gethostname()))", timeout=120)
        assert proc.stdout.strip().count(".") == 3, proc.stdout
    finally:
        docker("compose", "-p", project, "down", "--remove-orphans", "-t", "1", check=False, timeout=120)
