"""End to end in Docker: build the image, bring the whole lab up, load every variant.

These tests start real containers and send real load (from Locust containers, to
the project's own containers only). They skip without Docker and fail in CI
(``CI=true``) when Docker is missing.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from labapp.variants import load_variants

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "serverlab-e2e"
pytestmark = [pytest.mark.docker, pytest.mark.slow]


def compose(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run ``docker compose`` for the test project from the repo root; raise on failure."""
    proc = subprocess.run(["docker", "compose", "-p", PROJECT, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"docker compose {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc


def published(service: str, port: int) -> str:
    """``host:port`` of a service's published port (always on 127.0.0.1)."""
    return compose("port", service, str(port)).stdout.strip()


def http_json(url: str, data: dict | None = None, timeout: float = 10) -> dict:
    """GET (or POST form ``data`` to) ``url`` and decode the JSON answer."""
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    with urllib.request.urlopen(url, data=body, timeout=timeout) as response:
        return json.loads(response.read())


def keeps_alive(address: str) -> bool:
    """Send two requests on one TCP connection; True if both are answered."""
    host, port = address.rsplit(":", 1)
    request = b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n"
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        answered = 0
        for _ in range(2):
            try:
                sock.sendall(request)
                data = b""
                while b"Hello, World!" not in data:
                    chunk = sock.recv(4096)
                    if not chunk:
                        return False
                    data += chunk
                answered += 1
            except OSError:
                return False
        return answered == 2


@pytest.fixture(scope="module")
def lab(docker_ready):
    """The whole lab (``docker compose up --build --wait``), torn down afterwards."""
    try:
        compose("up", "-d", "--build", "--wait", "--wait-timeout", "300", timeout=1800)
        yield
    finally:
        subprocess.run(["docker", "compose", "-p", PROJECT, "down", "--remove-orphans", "-t", "5"], cwd=ROOT,
                       capture_output=True, timeout=300)


def test_every_variant_is_up_and_says_who_it_is(lab):
    variants = load_variants()
    for name, variant in variants.items():
        address = published(name, 8000)
        assert address.startswith("127.0.0.1:"), f"{name} is published on {address}, not 127.0.0.1"
        info = http_json(f"http://{address}/lab/info")
        assert info["variant"] == name
        assert info["worker_model"] == variant.model
        assert int(info["workers"]) == variant.workers
        assert int(info["threads"]) == variant.threads
        assert keeps_alive(address) == variant.keep_alive, f"{name}: declared keep_alive={variant.keep_alive}"


def test_containers_run_as_non_root(lab):
    for name in load_variants():
        uid = compose("exec", "-T", name, "id", "-u").stdout.strip()
        assert uid != "0", f"{name} runs as root"


def test_web_ui_drives_every_variant_by_name(lab):
    """Through Locust's web UI API: name each server in the Host field, swarm, read stats."""
    ui = f"http://{published('locust-master', 8089)}"
    assert ui.startswith("http://127.0.0.1:")
    page = urllib.request.urlopen(ui + "/serverlab/compare", timeout=10).read().decode()
    for name in load_variants():  # the Host field takes any of them by name; the Compare page lists them
        assert f'value="{name}"' in page, f"the web UI's Compare page does not offer {name}"
    for _ in range(60):  # wait for the worker to connect
        if http_json(ui + "/stats/requests").get("workers"):
            break
        time.sleep(1)
    for name in load_variants():
        urllib.request.urlopen(ui + "/stats/reset", data=b"", timeout=10).read()
        started = http_json(ui + "/swarm", {"user_count": 4, "spawn_rate": 4, "host": name,
                                            "workload": "hello"})
        assert started["success"], started
        time.sleep(4)
        stats = http_json(ui + "/stats/requests")
        http_json(ui + "/stop", {})
        total = next(row for row in stats["stats"] if row["name"] == "Aggregated")
        assert total["num_requests"] > 0, f"{name}: no requests served"
        assert total["num_failures"] == 0, f"{name}: {total['num_failures']} failures: {stats.get('errors')}"
        assert stats["total_rps"] > 0
        for _ in range(30):
            if http_json(ui + "/stats/requests")["state"] in ("stopped", "ready"):
                break
            time.sleep(0.5)


def test_servers_stop_cleanly_on_sigterm(lab):
    """Every server exits on SIGTERM well within the grace period (no SIGKILL at 10 s)."""
    for name in load_variants():
        started = time.monotonic()
        compose("stop", "-t", "10", name)
        took = time.monotonic() - started
        state = subprocess.run(["docker", "inspect", "-f", "{{.State.ExitCode}}", f"{PROJECT}-{name}-1"],
                               capture_output=True, text=True).stdout.strip()
        assert took < 9, f"{name} took {took:.1f} s to stop"
        assert state in ("0", "143"), f"{name} exited with {state}"
