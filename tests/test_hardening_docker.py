"""The hardened containers, running (issue 8): a variant under the compose file's hardening
(no capabilities, no-new-privileges, read-only root, pids/CPU/memory limits) serves load
from a Locust container that is hardened the same way; no setuid binary is left; hostile
requests get 4xx and leave the server answering; a crashed server comes back in the
interactive lab (restart policy).

Starts real containers (project ``serverlab-hardening``) and sends load only over the
project's own Docker network or to its 127.0.0.1 ports.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

import labapp
from hostile import (BAD_CHUNKED_BODIES, NESTED_JSON, chunk_frame, get_with_big_head, healthy, post_chunked,
                     post_huge_body, post_json_bytes)
from labapp.variants import get_variant

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "serverlab-hardening"
#: uwsgi-processes: chunked bodies through uWSGI's chunked-input API, a head over its buffer closed (issue 22).
SERVICES = ("werkzeug-single", "gunicorn-gthread", "uwsgi-processes")
pytestmark = [pytest.mark.docker, pytest.mark.slow]


def compose(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``docker compose`` for this test's project from the repo root."""
    proc = subprocess.run(["docker", "compose", "-p", PROJECT, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    if check:
        assert proc.returncode == 0, f"docker compose {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc


def in_container(service: str, script: str) -> subprocess.CompletedProcess:
    """Run ``sh -c script`` inside the service's running container (as its own user)."""
    return compose("exec", "-T", service, "sh", "-c", script, check=False, timeout=120)


def container_state(service: str) -> dict:
    """``docker inspect``'s State plus RestartCount and HostConfig of the service's container."""
    cid = compose("ps", "-q", service).stdout.strip()
    assert cid, f"{service} has no container"
    [info] = json.loads(subprocess.run(["docker", "inspect", cid], capture_output=True, text=True, check=True).stdout)
    return {**info["State"], "RestartCount": info["RestartCount"], "HostConfig": info["HostConfig"]}


def url_of(service: str) -> str:
    """``http://127.0.0.1:PORT`` of the service's published port 8000."""
    address = compose("port", service, "8000").stdout.strip()
    assert address.startswith("127.0.0.1:"), address
    return f"http://{address}"


@pytest.fixture(scope="module")
def lab(docker_ready):
    """Two server variants from the compose file, as ``docker compose up`` runs them."""
    try:
        compose("up", "-d", "--build", "--wait", "--wait-timeout", "240", *SERVICES, timeout=1800)
        yield {name: url_of(name) for name in SERVICES}
    finally:
        subprocess.run(["docker", "compose", "-p", PROJECT, "--profile", "tools", "down", "--remove-orphans", "-t", "5"],
                       cwd=ROOT, capture_output=True, timeout=300)


@pytest.mark.parametrize("service", SERVICES)
def test_the_running_container_is_hardened(lab, service):
    host = container_state(service)["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert 0 < host["PidsLimit"] <= 4096
    assert host["Memory"] > 0 and host["NanoCpus"] > 0
    assert host["RestartPolicy"]["Name"] == "unless-stopped"
    assert in_container(service, "id -u").stdout.strip() not in ("", "0")
    status = in_container(service, "grep -E '^(CapEff|NoNewPrivs):' /proc/self/status").stdout
    assert "CapEff:\t0000000000000000" in status and "NoNewPrivs:\t1" in status, status
    # No setuid/setgid file anywhere on the image's filesystem (find prints nothing).
    found = in_container(service, "find / -xdev -perm /6000 -type f 2>/dev/null; true")
    assert found.stdout.strip() == "", found.stdout
    # The root filesystem refuses writes; /tmp (tmpfs) takes them.
    write = in_container(service, "touch /srv/probe")
    assert write.returncode != 0 and "Read-only file system" in write.stderr, write.stderr
    assert in_container(service, "touch /tmp/probe && rm /tmp/probe").returncode == 0


@pytest.mark.parametrize("service", SERVICES)
def test_hardened_server_serves_a_hardened_locust(lab, service):
    """A short headless Locust run from the (equally hardened, read-only) loadgen container."""
    proc = compose("--profile", "tools", "run", "--rm", "-T", "--no-deps", "loadgen", "locust", "-f",
                   "/srv/locustfiles/locustfile.py", "--headless", "--only-summary", "-u", "4", "-r", "4",
                   "--run-time", "3s", "--stop-timeout", "2", "--host", f"http://{service}:8000", "--json",
                   "HelloUser", timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    stats = json.loads(proc.stdout[proc.stdout.index("["):])
    requests = sum(row["num_requests"] for row in stats)
    failures = sum(row["num_failures"] for row in stats)
    assert requests > 0 and failures == 0, (requests, failures)


@pytest.mark.parametrize("service", SERVICES)
def test_huge_body_gets_413_and_the_container_survives(lab, service):
    """Before issue 8: werkzeug-single OOM-killed (exit 137, stayed down); gunicorn's worker SIGKILLed."""
    url = lab[service]
    before = container_state(service)
    status, _headers, body, _sent = post_huge_body(url)
    assert status == 413, body[:300]
    assert json.loads(body)["limit_bytes"] == labapp.MAX_BODY_BYTES
    assert healthy(url)
    after = container_state(service)
    assert after["Running"] and not after["OOMKilled"]
    assert after["RestartCount"] == before["RestartCount"]  # it survived; it was not restarted


@pytest.mark.parametrize("service", SERVICES)
def test_nested_and_broken_chunked_bodies_get_4xx(lab, service):
    url = lab[service]
    status, _headers, body = post_json_bytes(url, NESTED_JSON)
    assert status == 400, body[:300]
    for framed in BAD_CHUNKED_BODIES.values():
        status, _headers, body = post_chunked(url, framed)
        assert 400 <= status < 500, body[:300]
    assert healthy(url)


@pytest.mark.parametrize("service", SERVICES)
def test_bad_input_is_answered_as_declared_in_the_container(lab, service):
    """Issue 22 in the hardened container: a chunked body over 1 MiB gets 413, a small one is
    read, and request heads get the answers the variant's [headers] table declares."""
    url, limit = lab[service], get_variant(service).headers
    status, _headers, body, _sent = post_huge_body(url, size=3 * labapp.MAX_BODY_BYTES // 2, chunked_body=True)
    assert status == 413 and json.loads(body)["limit_bytes"] == labapp.MAX_BODY_BYTES, body[:300]
    status, _headers, body = post_chunked(url, chunk_frame(b'{"ms": 5}') + chunk_frame(b"") + b"\r\n")
    assert status == 202 and json.loads(body)["ms"] == 5, body[:300]
    assert get_with_big_head(url, header_bytes=6 * 1024) == 200
    assert get_with_big_head(url, header_bytes=limit.max_bytes + 1024) == (limit.over or None)
    assert get_with_big_head(url, path_bytes=limit.max_bytes + 1024) == (limit.line_over or None)
    assert healthy(url)


def test_a_crashed_server_comes_back_in_the_lab(lab):
    """SIGKILL of the server process (init's child): the container exits and the restart
    policy brings it back healthy (``make report`` overrides this with restart "no")."""
    service = "werkzeug-single"
    before = container_state(service)["RestartCount"]
    kill = in_container(service, "kill -KILL $(cat /proc/1/task/1/children)")
    assert kill.returncode in (0, 137), kill.stderr
    deadline = time.monotonic() + 120
    while True:
        state = container_state(service)
        if state["RestartCount"] > before and state.get("Health", {}).get("Status") == "healthy":
            break
        assert time.monotonic() < deadline, f"not restarted and healthy: {state}"
        time.sleep(1)
    assert healthy(url_of(service))


def test_the_run_backend_leaves_a_crashed_server_down(docker_ready):
    """``make report``'s Docker backend: the same crash is final (restart "no" in its
    override), so the runner sees the exit and fails the cell instead of measuring a
    server that came back mid-cell."""
    from labapp.variants import get_variant
    from serverlab.backends import DockerBackend
    from serverlab.budget import Budget

    backend = DockerBackend(Budget())
    try:
        backend.prepare(variants=["werkzeug-single"], progress=lambda _: None)
        server = backend.start(get_variant("werkzeug-single"))
        assert backend.exit_status(server) is None
        kill = subprocess.run(["docker", "exec", str(server.handle), "sh", "-c", "kill -KILL $(cat /proc/1/task/1/children)"],
                              capture_output=True, text=True, timeout=60)
        assert kill.returncode in (0, 137), kill.stderr
        deadline = time.monotonic() + 60
        while backend.exit_status(server) is None:
            assert time.monotonic() < deadline, "the container did not exit"
            time.sleep(0.5)
        time.sleep(3)  # Docker restarts within ~0.1 s when a policy says so; give it ample time
        status = backend.exit_status(server)
        assert status is not None and "exit" in status, status
        restarts = subprocess.run(["docker", "inspect", "-f", "{{.RestartCount}}", str(server.handle)],
                                  capture_output=True, text=True, timeout=30).stdout.strip()
        assert restarts == "0"
    finally:
        backend.close()
