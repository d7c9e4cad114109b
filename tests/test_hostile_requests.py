"""Requests that used to kill or break a server, against every variant on real local servers
(issue 8, scenario 3): a 200 MB body gets 413 and the server keeps answering; JSON nested
100 000 deep and broken chunked bodies get 4xx, never 500; the background-job cap holds
under a flood; idle connections cannot make werkzeug-threaded start a thread each.

Bad input answered alike (issue 22), on every declared variant (new declarations are
covered as they appear): a chunked body over 1 MiB gets 413 like an unchunked one; a
small chunked body is read (uWSGI too, through its chunked-input API); request heads
within 8 KiB are served whole, and larger ones get what the variant's ``[headers]`` table
declares (431/414/400, or a closed connection where the server cannot answer: uWSGI).
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
from hostile import (BAD_CHUNKED_BODIES, NESTED_JSON, chunk_frame, get_with_big_head, healthy, post_chunked,
                     post_huge_body, post_json_bytes, raw_request)
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
    # Werkzeug and Gunicorn de-chunk and report the broken framing (400); uWSGI's chunked
    # API reads a non-hex size as the last chunk, leaving a body that is not a JSON object
    # (400); nginx refuses the framing itself (400), and so does uvicorn's h11 parser (a
    # plain-text 400).
    assert 400 <= status < 500, body[:300]
    if answered_by_the_app(name) and get_variant(name).server != "uvicorn":
        assert json.loads(body)["status"] == status
    assert healthy(url)


@pytest.mark.parametrize("name", VARIANTS)
def test_chunked_body_over_the_limit_gets_413_like_an_unchunked_one(servers, name):
    """Issue 22: 1.5 MB sent in 64 KiB chunks (as curl does) got 400 "not valid JSON:
    Unterminated string" on gunicorn-sync, gunicorn-gthread, werkzeug-single and granian."""
    url = servers(name)
    status, _headers, body, sent = post_huge_body(url, size=3 * labapp.MAX_BODY_BYTES // 2, chunked_body=True)
    assert status == 413, body[:300]
    if answered_by_the_app(name):
        error = json.loads(body)
        assert error["limit_bytes"] == labapp.MAX_BODY_BYTES and error["status"] == 413
    assert healthy(url)


@pytest.mark.parametrize("name", VARIANTS)
def test_a_small_chunked_body_is_read(servers, name):
    """Issue 22: uWSGI's --http-socket variants answered 400 "Expecting value" (the app saw
    no body) where Gunicorn answered 202; the app now reads it with uwsgi.chunked_read()."""
    url = servers(name)
    status, _headers, body = post_chunked(url, chunk_frame(b'{"ms"') + chunk_frame(b": 5}") + chunk_frame(b"") + b"\r\n")
    assert status == 202, body[:300]
    assert json.loads(body)["ms"] == 5
    assert healthy(url)


def expected_head_answer(status: int) -> int | None:
    """A declared refusal as :func:`hostile.get_with_big_head` reports it: 0 (closes) is ``None``."""
    return status or None


@pytest.mark.parametrize("name", VARIANTS)
def test_request_heads_are_answered_as_declared(servers, name):
    """Issue 22: heads within the common 8 KiB are served by every variant; a larger header
    line or request line gets the declared answer (uWSGI: the connection closes; it was at
    ~4 KB before, its default --buffer-size)."""
    limit = get_variant(name).headers
    assert limit is not None, f"servers/{name}.toml declares no [headers] table (see labapp.variants.HeaderLimit)"
    url = servers(name)
    within = 6 * 1024  # under every variant's limit, whichever the scope
    assert get_with_big_head(url, header_bytes=within) == 200
    assert get_with_big_head(url, path_bytes=within) == 200
    # ... and served whole: the query string of a long URL reaches the app (an 8 KiB uWSGI
    # buffer dropped it without a word, and /cpu ran with its default n=1000)
    status, _headers, body = raw_request(url, f"GET /cpu?n=7&pad={'a' * within} HTTP/1.1\r\nHost: lab\r\n"
                                              "Connection: close\r\n\r\n".encode())
    assert status == 200 and json.loads(body)["n"] == 7, body[:200]
    over = limit.max_bytes + 1024
    assert get_with_big_head(url, header_bytes=over) == expected_head_answer(limit.over), limit
    assert get_with_big_head(url, path_bytes=over) == expected_head_answer(limit.line_over), limit
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
