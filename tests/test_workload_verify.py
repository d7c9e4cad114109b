"""serverlab's workloads: parameters, paths, Locust options, and verify() against a real and a lying server."""

from __future__ import annotations

import http.client
import http.server
import json
import socket
import threading
import time
from pathlib import Path

import pytest

from labapp import workloads as app_workloads
from labapp.variants import get_variant
from serverlab.terms import WORKLOADS
from serverlab.workloadspec import WorkloadParameterError, WorkloadSpec
from serverlab.workloads import VerificationError, verify

REPO_ROOT = Path(__file__).resolve().parents[1]
SMALL_PARAMS = {"hello": {}, "json": {}, "cpu": {"n": 10}, "io": {"ms": 1}, "mixed": {"n": 10, "ms": 1},
                "io-async": {"ms": 1}}


# --- parameters, paths, Locust options ------------------------------------------------------------------


def test_the_six_workloads():
    assert list(WORKLOADS) == ["hello", "json", "cpu", "io", "mixed", "io-async"]
    for name, workload in WORKLOADS.items():
        assert isinstance(workload, WorkloadSpec) and workload.name == name
        assert set(workload.locust_options) == set(workload.bounds)
        assert workload.summary


def test_bounds_are_the_apps_own():
    assert WORKLOADS["cpu"].bounds == {"n": app_workloads.CPU_N}
    assert WORKLOADS["io"].bounds == {"ms": app_workloads.IO_MS}
    assert WORKLOADS["mixed"].bounds == {"n": app_workloads.MIXED_N, "ms": app_workloads.MIXED_MS}
    assert WORKLOADS["hello"].bounds == {} and WORKLOADS["json"].bounds == {}


@pytest.mark.parametrize(("name", "defaults"), [
    ("hello", {}), ("json", {}), ("cpu", {"n": 1000}), ("io", {"ms": 50}), ("mixed", {"n": 500, "ms": 20}),
])
def test_default_params(name, defaults):
    assert WORKLOADS[name].params() == defaults
    assert WORKLOADS[name].params(None) == defaults
    assert WORKLOADS[name].params({}) == defaults


def test_param_overrides():
    assert WORKLOADS["cpu"].params({"n": 20_000}) == {"n": 20_000}
    assert WORKLOADS["cpu"].params({"n": 1}) == {"n": 1}
    assert WORKLOADS["io"].params({"ms": 0}) == {"ms": 0}
    assert WORKLOADS["mixed"].params({"ms": 3}) == {"n": 500, "ms": 3}  # the other keeps its default
    overrides = {"n": 7}
    WORKLOADS["mixed"].params(overrides)
    assert overrides == {"n": 7}


@pytest.mark.parametrize(("name", "overrides", "fragments"), [
    ("cpu", {"m": 5}, ["'cpu'", "no parameter 'm'", "valid: n"]),
    ("mixed", {"seconds": 5}, ["'mixed'", "'seconds'", "valid: n, ms"]),
    ("hello", {"n": 5}, ["'hello'", "'n'", "valid: none"]),
    ("cpu", {"n": 0}, ["'cpu'", "'n' = 0", "allowed: integer 1..20000 Fibonacci numbers"]),
    ("cpu", {"n": 20_001}, ["'n' = 20001", "1..20000"]),
    ("io", {"ms": -1}, ["'io'", "'ms' = -1", "0..10000 milliseconds"]),
    ("io", {"ms": 10_001}, ["'ms' = 10001", "0..10000"]),
    ("mixed", {"n": 10**9}, ["'n' = 1000000000", "1..20000"]),
    ("cpu", {"n": "10"}, ["'n' = '10'", "1..20000"]),
    ("cpu", {"n": 10.0}, ["'n' = 10.0", "1..20000"]),
    ("io", {"ms": True}, ["'ms' = True", "0..10000"]),
])
def test_param_refusals_name_the_parameter_and_range(name, overrides, fragments):
    with pytest.raises(WorkloadParameterError) as info:
        WORKLOADS[name].params(overrides)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


@pytest.mark.parametrize(("name", "params", "path"), [
    ("hello", {}, "/"),
    ("json", {}, "/json"),
    ("cpu", {"n": 10}, "/cpu?n=10"),
    ("io", {"ms": 1}, "/io?ms=1"),
    ("mixed", {"n": 10, "ms": 1}, "/mixed?n=10&ms=1"),
])
def test_url_path(name, params, path):
    assert WORKLOADS[name].url_path(params) == path


@pytest.mark.parametrize(("name", "params", "args"), [
    ("hello", {}, ["HelloUser"]),
    ("json", {}, ["JsonUser"]),
    ("cpu", {"n": 10}, ["--cpu-n", "10", "CpuUser"]),
    ("io", {"ms": 1}, ["--io-ms", "1", "IoUser"]),
    ("mixed", {"n": 10, "ms": 1}, ["--mixed-n", "10", "--mixed-ms", "1", "MixedUser"]),
    ("io-async", {"ms": 1}, ["--io-async-ms", "1", "IoAsyncUser"]),
])
def test_locust_args(name, params, args):
    assert WORKLOADS[name].locust_args(params) == args


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_paths_and_content_types_match_the_app(client, name):
    workload = WORKLOADS[name]
    response = client.get(workload.url_path(SMALL_PARAMS[name]))
    assert response.status_code == 200
    assert response.headers["Content-Type"].split(";")[0] == workload.content_type.split(";")[0]


# --- verify() against a real server ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_server(start_local_server):
    """werkzeug-threaded on a free 127.0.0.1 port (the local backend); yields its base URL."""
    return start_local_server("werkzeug-threaded")


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_verify_passes_against_the_real_app(real_server, name):
    workload = WORKLOADS[name]
    observed = verify(real_server, workload, WORKLOADS[name].params(SMALL_PARAMS[name]))
    assert observed["status"] == 200
    assert observed["content_type"].split(";")[0] == workload.content_type.split(";")[0]
    assert observed["content_length"] > 0
    # werkzeug-threaded is declared without keep-alive: it sends Connection: close
    assert get_variant("werkzeug-threaded").keep_alive is False
    assert observed["keep_alive_header"] is False


def test_verify_hello_body_length(real_server):
    assert verify(real_server, WORKLOADS["hello"], {})["content_length"] == len(b"Hello, World!")


def test_verify_reports_the_apps_refusal(real_server):
    # parameters outside the app's bounds (bypassing Workload.params): the app answers 400
    with pytest.raises(VerificationError) as info:
        verify(real_server, WORKLOADS["cpu"], {"n": 0})
    assert "GET /cpu?n=0" in str(info.value) and "status 400" in str(info.value) and "expected 200" in str(info.value)


# --- verify() against a server that answers wrongly -----------------------------------------------------------


class CannedHandler(http.server.BaseHTTPRequestHandler):
    """Answers every GET with the raw bytes in ``server.canned`` and closes; records the path."""

    def do_GET(self):  # noqa: N802
        self.server.paths.append(self.path)
        self.wfile.write(self.server.canned)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def fake_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CannedHandler)
    server.daemon_threads = True
    server.canned = b""
    server.paths = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def answer(status: str = "200 OK", content_type: str | None = "application/json", body: bytes | str = b"",
           length: int | str | None = "auto", version: str = "HTTP/1.1") -> bytes:
    body = body.encode() if isinstance(body, str) else body
    lines = [f"{version} {status}"]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    if length is not None:
        lines.append(f"Content-Length: {len(body) if length == 'auto' else length}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def url_of(server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def refused(server, canned: bytes, name: str, params: dict, *fragments: str) -> str:
    server.canned = canned
    server.paths.clear()
    with pytest.raises(VerificationError) as info:
        verify(url_of(server), WORKLOADS[name], params, timeout=5)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    assert server.paths == [WORKLOADS[name].url_path(params)]
    return message


HELLO = "text/html; charset=utf-8"
CPU_10 = json.dumps(app_workloads.fibonacci_digest(10))


def test_fake_server_answering_correctly_passes(fake_server):
    fake_server.canned = answer(content_type=HELLO, body="Hello, World!")
    assert verify(url_of(fake_server), WORKLOADS["hello"], {}) == {
        "status": 200, "content_type": HELLO, "content_length": 13, "keep_alive_header": False,
    }
    fake_server.canned = answer(body=CPU_10)
    assert verify(url_of(fake_server), WORKLOADS["cpu"], {"n": 10})["content_length"] == len(CPU_10)


def test_wrong_status(fake_server):
    refused(fake_server, answer("500 Internal Server Error", HELLO, "Hello, World!"), "hello", {},
            "GET /", "status 500", "expected 200", "Hello, World!")
    refused(fake_server, answer("404 Not Found", body='{"error": "nope"}'), "cpu", {"n": 10}, "GET /cpu?n=10", "status 404")
    refused(fake_server, answer("302 Found", HELLO, ""), "hello", {}, "status 302")


@pytest.mark.parametrize(("name", "params", "content_type", "body"), [
    ("hello", {}, "text/plain", "Hello, World!"),
    ("hello", {}, None, "Hello, World!"),
    ("cpu", {"n": 10}, "text/html; charset=utf-8", CPU_10),
    ("json", {}, "application/problem+json", json.dumps({"message": "Hello, World!", "items": list(range(10))})),
])
def test_wrong_content_type(fake_server, name, params, content_type, body):
    refused(fake_server, answer(content_type=content_type, body=body), name, params,
            "Content-Type", repr(content_type or ""), f"expected {WORKLOADS[name].content_type!r}")


def test_missing_content_length(fake_server):
    # an HTTP/1.0-style answer delimited by closing the connection
    refused(fake_server, answer(content_type=HELLO, body="Hello, World!", length=None, version="HTTP/1.0"), "hello", {},
            "Content-Length None", "13 bytes")


def test_content_length_longer_than_the_body(fake_server):
    refused(fake_server, answer(content_type=HELLO, body="Hello, World!", length=100), "hello", {}, "Content-Length")


def test_non_numeric_content_length(fake_server):
    refused(fake_server, answer(content_type=HELLO, body="Hello, World!", length="thirteen"), "hello", {}, "Content-Length")


def test_not_http_at_all(fake_server):
    refused(fake_server, b"SSH-2.0-OpenSSH_9.6\r\n", "hello", {}, "GET /")


@pytest.mark.parametrize(("name", "params", "body", "fragment"), [
    ("hello", {}, "Hello, world?", "expected body 'Hello, World!'"),
    ("json", {}, json.dumps({"message": "Hello, World!", "items": [0, 1, 2]}), "unexpected /json document"),
    ("cpu", {"n": 10}, json.dumps(app_workloads.fibonacci_digest(11)), "wrong Fibonacci digest for n=10"),
    ("cpu", {"n": 10}, json.dumps({**app_workloads.fibonacci_digest(10), "sha256": "0" * 64}), "wrong Fibonacci digest"),
    ("cpu", {"n": 10}, "not json", "malformed body"),
    ("cpu", {"n": 10}, "[1, 2, 3]", "wrong Fibonacci digest"),
    ("io", {"ms": 10}, json.dumps({"ms": 10, "slept_ms": 0.5}), "GET /io?ms=10: did not sleep 10 ms"),
    ("io", {"ms": 10}, json.dumps({"ms": 1, "slept_ms": 10.2}), "GET /io?ms=10: did not sleep 10 ms"),
    ("io-async", {"ms": 10}, json.dumps({"ms": 10, "slept_ms": 0.5}), "GET /io-async?ms=10: did not sleep 10 ms"),
    ("io-async", {"ms": 10}, "[]", "malformed body"),
    ("io", {"ms": 10}, "[]", "malformed body"),
    ("json", {}, "null", "malformed body"),
    ("mixed", {"n": 10, "ms": 1}, json.dumps({**app_workloads.fibonacci_digest(12), "slept_ms": 1.1}), "unexpected /mixed answer"),
    ("mixed", {"n": 10, "ms": 10}, json.dumps({**app_workloads.fibonacci_digest(10), "slept_ms": 2.0}), "unexpected /mixed answer"),
])
def test_wrong_body(fake_server, name, params, body, fragment):
    content_type = HELLO if name == "hello" else "application/json"
    refused(fake_server, answer(content_type=content_type, body=body), name, params, fragment)


def test_right_bodies_pass_the_body_checks(fake_server):
    cases = {
        "json": json.dumps({"message": "Hello, World!", "items": list(range(10))}),
        "io": json.dumps({"ms": 10, "slept_ms": 10.08}),
        "io-async": json.dumps({"ms": 10, "slept_ms": 10.2}),
        "mixed": json.dumps({**app_workloads.fibonacci_digest(10), "slept_ms": 1.0}),
    }
    params = {"json": {}, "io": {"ms": 10}, "io-async": {"ms": 10}, "mixed": {"n": 10, "ms": 1}}
    for name, body in cases.items():
        fake_server.canned = answer(body=body)
        assert verify(url_of(fake_server), WORKLOADS[name], params[name])["status"] == 200


def test_closed_port_is_no_answer():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there any more
    with pytest.raises(VerificationError) as info:
        verify(f"http://127.0.0.1:{port}", WORKLOADS["cpu"], {"n": 10}, timeout=2)
    assert "/cpu?n=10: no answer" in str(info.value)
    assert "refused" in str(info.value).lower()


def test_silent_server_is_no_answer():
    with socket.socket() as listener:  # accepts connections (the kernel does) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        started = time.monotonic()
        with pytest.raises(VerificationError) as info:
            verify(f"http://127.0.0.1:{listener.getsockname()[1]}", WORKLOADS["hello"], {}, timeout=0.5)
        assert time.monotonic() - started < 5
    assert "no answer" in str(info.value) and "timed out" in str(info.value)
