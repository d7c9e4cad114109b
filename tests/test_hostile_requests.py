"""Requests that used to kill or break a server, against every variant on real local servers
(issue 8, scenario 3): a 200 MB body gets 413 and the server keeps answering; JSON nested
100 000 deep and broken chunked bodies get 4xx, never 500; the background-job cap holds
under a flood; idle connections cannot make werkzeug-threaded start a thread each.
"""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import labapp
from hostile import BAD_CHUNKED_BODIES, NESTED_JSON, healthy, post_chunked, post_huge_body, post_json_bytes
from labapp.variants import get_variant, load_variants

pytestmark = pytest.mark.slow
VARIANTS = sorted(load_variants())


@pytest.fixture(scope="module")
def servers(start_local_server):
    """Base URL of each variant, started on demand once per module."""
    urls: dict[str, str] = {}

    def url(name: str) -> str:
        if name not in urls:
            urls[name] = start_local_server(name)
        return urls[name]

    return url


def answered_by_the_app(name: str) -> bool:
    """False where a front refuses broken or oversized bodies before the app runs, with
    its own error page: nginx (``client_max_body_size`` defaults to the same 1 MiB) and
    Waitress (it reads whole bodies first; ``max_request_body_size`` set to 1 MiB)."""
    variant = get_variant(name)
    return variant.proxy is None and variant.server != "waitress"


@pytest.mark.parametrize("name", VARIANTS)
def test_huge_body_gets_413_and_the_server_keeps_answering(servers, name):
    url = servers(name)
    status, _headers, body, sent = post_huge_body(url)
    assert status == 413, body[:300]
    if answered_by_the_app(name):
        error = json.loads(body)
        assert error["limit_bytes"] == labapp.MAX_BODY_BYTES
        assert str(labapp.MAX_BODY_BYTES) in error["error"]
    assert sent < 64 * labapp.MAX_BODY_BYTES  # answered early, not after taking it all
    assert healthy(url)


@pytest.mark.parametrize("name", VARIANTS)
def test_deeply_nested_json_gets_400(servers, name):
    url = servers(name)
    status, _headers, body = post_json_bytes(url, NESTED_JSON)
    assert status == 400, body[:300]
    assert "nested too deeply" in json.loads(body)["error"]
    assert healthy(url)


@pytest.mark.parametrize("case", sorted(BAD_CHUNKED_BODIES))
@pytest.mark.parametrize("name", VARIANTS)
def test_broken_chunked_body_gets_4xx(servers, name, case):
    url = servers(name)
    status, _headers, body = post_chunked(url, BAD_CHUNKED_BODIES[case])
    # Werkzeug and Gunicorn de-chunk and report the broken framing (400); uWSGI's
    # --http-socket hands the app no body at all, which is not a JSON object (400);
    # nginx refuses the framing itself (400).
    assert 400 <= status < 500, body[:300]
    if answered_by_the_app(name):
        assert json.loads(body)["status"] == status
    assert healthy(url)


def test_background_cap_holds_under_a_flood(servers):
    """128 concurrent POSTs to one process (werkzeug-threaded): exactly 32 start."""
    url = servers("werkzeug-threaded")
    flood = 4 * labapp.MAX_RUNNING_BACKGROUND_JOBS
    barrier = threading.Barrier(flood)
    statuses: list[int] = []

    def post() -> None:
        barrier.wait()
        request = urllib.request.Request(url + "/background?ms=20000", data=b"", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                statuses.append(response.status)
        except urllib.error.HTTPError as err:
            statuses.append(err.code)

    threads = [threading.Thread(target=post) for _ in range(flood)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(statuses) == flood
    assert statuses.count(202) == labapp.MAX_RUNNING_BACKGROUND_JOBS, sorted(statuses)
    assert statuses.count(429) == flood - labapp.MAX_RUNNING_BACKGROUND_JOBS


def thread_count(pid: int) -> int:
    """Threads of process ``pid`` (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError(f"no Threads line for {pid}")


def test_idle_connections_do_not_get_a_thread_each():
    """300 idle connections to werkzeug-threaded: at most its declared 256 connection
    threads (before: 300 threads), and it answers again once they go away."""
    from serverlab.backends import LocalBackend
    from serverlab.budget import Budget

    variant = get_variant("werkzeug-threaded")
    assert variant.connections == 256
    backend = LocalBackend(Budget())
    server = backend.start(variant)
    idle: list[socket.socket] = []
    try:
        host, port = server.url_for_host.split("//")[1].rsplit(":", 1)
        for _ in range(300):
            idle.append(socket.create_connection((host, int(port)), timeout=5))
        # Every connection the server accepted has its thread by the time a byte is
        # echoed; poll the count until it stops growing (bounded number of polls).
        previous, threads = -1, 0
        for _ in range(50):
            threads = thread_count(server.handle.pid)
            if threads == previous:
                break
            previous = threads
            threading.Event().wait(0.1)
        assert threads <= variant.connections + 4, threads  # + main and interpreter threads
        assert threads >= variant.connections  # the bound is reached, not something lower
    finally:
        for sock in idle:
            sock.close()
    try:
        assert healthy(server.url_for_host)
    finally:
        backend.stop(server)
