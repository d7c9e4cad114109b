"""The Flask app: every endpoint, every refusal, background jobs, and the debugger staying off."""

from __future__ import annotations

import os
import socket
import sys
import threading
import time

import pytest
from werkzeug.serving import WSGIRequestHandler, make_server

import labapp
from labapp import devserver, healthcheck, workloads
from labapp.workloads import BACKGROUND_MS, CPU_N, IO_MS, MIXED_MS, MIXED_N, Bound

#: How long any polling loop in this file may wait before failing.
POLL_TIMEOUT_S = 10.0


def wait_for_job(client, location: str, timeout: float = POLL_TIMEOUT_S) -> dict:
    """Poll ``GET location`` until the job is ``done``; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(location)
        assert response.status_code == 200, response.get_json()
        job = response.get_json()
        assert job["state"] in ("queued", "running", "done")
        if job["state"] == "done":
            return job
        assert time.monotonic() < deadline, f"job still {job['state']} after {timeout} s: {job}"
        time.sleep(0.01)


# --- the endpoints, answering well-formed requests -------------------------------------


def test_hello(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.get_data(as_text=True) == "Hello, World!"
    assert response.mimetype == "text/html"


def test_json(client):
    response = client.get("/json")
    assert response.status_code == 200
    assert response.is_json
    assert response.get_json() == {"message": "Hello, World!", "items": list(range(10))}


def test_cpu_default_n(client):
    response = client.get("/cpu")
    assert response.status_code == 200
    body = response.get_json()
    assert body["n"] == CPU_N.default == 1000
    assert body == workloads.fibonacci_digest(1000)


@pytest.mark.parametrize("n", [1, 2, 37, CPU_N.high])
def test_cpu_explicit_n(client, n):
    body = client.get(f"/cpu?n={n}").get_json()
    assert body == workloads.fibonacci_digest(n)
    assert body["n"] == n


def test_cpu_different_n_give_different_digests(client):
    assert client.get("/cpu?n=10").get_json()["sha256"] != client.get("/cpu?n=11").get_json()["sha256"]


def test_io_zero_ms(client):
    body = client.get("/io?ms=0").get_json()
    assert body["ms"] == 0
    assert 0 <= body["slept_ms"] < 1000


def test_io_sleeps_at_least_ms(client):
    started = time.perf_counter()
    body = client.get("/io?ms=30").get_json()
    elapsed_ms = (time.perf_counter() - started) * 1000
    assert body["ms"] == 30
    # time.sleep never returns early; allow 1 ms for rounding and clock granularity.
    assert body["slept_ms"] >= 29
    assert elapsed_ms >= body["slept_ms"] - 1


def test_io_default_ms(client):
    body = client.get("/io").get_json()
    assert body["ms"] == IO_MS.default == 50
    assert body["slept_ms"] >= 49


def test_mixed_defaults(client):
    body = client.get("/mixed").get_json()
    expected = workloads.fibonacci_digest(MIXED_N.default)
    assert {key: body[key] for key in expected} == expected
    assert body["slept_ms"] >= MIXED_MS.default - 1
    assert set(body) == {*expected, "slept_ms"}


def test_mixed_explicit(client):
    body = client.get("/mixed?n=7&ms=0").get_json()
    assert body["n"] == 7
    assert body["sha256"] == workloads.fibonacci_digest(7)["sha256"]
    assert body["last_bits"] == (8).bit_length()  # F(6) = 8
    assert 0 <= body["slept_ms"] < 1000


def test_background_job_runs_to_done(client, app):
    response = client.post("/background?ms=30")
    assert response.status_code == 202
    job = response.get_json()
    assert job["ms"] == 30
    assert job["state"] in ("queued", "running")
    assert job["result"] is None
    assert job["pid"] == os.getpid()
    assert len(job["id"]) == 32
    assert response.headers["Location"] == f"/background/{job['id']}"

    done = wait_for_job(client, response.headers["Location"])
    assert done["id"] == job["id"]
    assert done["ms"] == 30
    assert done["result"]["slept_ms"] >= 29
    # The job ran inside an app context of this very app.
    assert done["result"]["app"] == app.name == "labapp"


def test_background_ms_from_json_body(client):
    response = client.post("/background", json={"ms": 5})
    assert response.status_code == 202
    assert response.get_json()["ms"] == 5
    done = wait_for_job(client, response.headers["Location"])
    assert done["result"]["slept_ms"] >= 4


def test_background_json_body_with_string_number(client):
    response = client.post("/background", json={"ms": "0"})
    assert response.status_code == 202
    assert response.get_json()["ms"] == 0
    wait_for_job(client, response.headers["Location"])


def test_background_jobs_are_independent(client):
    locations = [client.post(f"/background?ms={ms}").headers["Location"] for ms in (0, 10, 20)]
    assert len(set(locations)) == 3
    assert [wait_for_job(client, location)["ms"] for location in locations] == [0, 10, 20]


def test_unknown_background_job_is_json_404(client):
    response = client.get("/background/does-not-exist")
    assert response.status_code == 404
    assert response.is_json
    assert "does-not-exist" in response.get_json()["error"]


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_lab_info_keys(client, monkeypatch):
    for var in labapp.INFO_ENV.values():
        monkeypatch.delenv(var, raising=False)
    info = client.get("/lab/info").get_json()
    expected_keys = {"variant", "worker_model", "workers", "threads", "pid", "thread_id", "python", "packages"}
    assert expected_keys <= set(info)
    # Outside a launched server nothing says which variant this is.
    assert info["variant"] is None and info["worker_model"] is None
    assert info["pid"] == os.getpid()
    assert isinstance(info["thread_id"], int)
    assert info["python"].count(".") == 2
    assert set(info["packages"]) == set(labapp.REPORTED_PACKAGES)
    # The test environment has the app's own dependencies installed.
    assert info["packages"]["flask"] == "3.1.3"
    assert info["packages"]["werkzeug"] == "3.1.9"


def test_lab_info_reports_serverlab_env(client, monkeypatch):
    values = {
        "SERVERLAB_VARIANT": "gunicorn-gthread",
        "SERVERLAB_SERVER": "gunicorn",
        "SERVERLAB_MODEL": "threaded",
        "SERVERLAB_WORKERS": "2",
        "SERVERLAB_THREADS": "8",
        "SERVERLAB_KEEP_ALIVE": "1",
    }
    for var, value in values.items():
        monkeypatch.setenv(var, value)
    info = client.get("/lab/info").get_json()
    assert info["variant"] == "gunicorn-gthread"
    assert info["server"] == "gunicorn"
    assert info["worker_model"] == "threaded"
    assert info["workers"] == "2"
    assert info["threads"] == "8"
    assert info["keep_alive"] == "1"


# --- refusals: 400 JSON naming the parameter and its range, never a 500 ----------------

#: (id, method, path, bound, how the value is sent, extra query args)
PARAMETERS = [
    ("cpu-n", "GET", "/cpu", CPU_N, "query", {}),
    ("io-ms", "GET", "/io", IO_MS, "query", {}),
    ("mixed-n", "GET", "/mixed", MIXED_N, "query", {"ms": "0"}),
    ("mixed-ms", "GET", "/mixed", MIXED_MS, "query", {"n": "1"}),
    ("background-ms-query", "POST", "/background", BACKGROUND_MS, "query", {}),
    ("background-ms-json", "POST", "/background", BACKGROUND_MS, "json", {}),
]


def bad_values(bound: Bound) -> list[str]:
    """Values every bounded parameter must refuse."""
    return [
        "abc",  # non-numeric
        "",  # empty
        "   ",  # blank
        str(bound.low - 1),  # below the minimum (negative for ms, 0 for n)
        "-1",  # negative
        "1.5",  # float
        "1e3",  # float in exponent form
        "0x10",  # hex
        "1_000",  # Python's digit separator
        str(bound.high + 1),  # just above the maximum
        "9" * 13,  # too many digits
    ]


def send(client, method: str, path: str, bound: Bound, how: str, extra: dict, value):
    """Send ``value`` as ``bound.name`` the way the endpoint reads it."""
    if how == "json":
        return client.open(path, method=method, query_string=extra, json={bound.name: value, **extra})
    return client.open(path, method=method, query_string={**extra, bound.name: value})


def assert_refused(response, bound: Bound) -> dict:
    """Assert a 400 JSON refusal that names ``bound`` and its allowed range."""
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.is_json
    body = response.get_json()
    assert body["parameter"] == bound.name
    assert body["allowed"] == {"min": bound.low, "max": bound.high, "unit": bound.unit}
    assert repr(bound.name) in body["error"]
    assert bound.describe() in body["error"]
    return body


@pytest.mark.parametrize(("method", "path", "bound", "how", "extra"), [p[1:] for p in PARAMETERS], ids=[p[0] for p in PARAMETERS])
def test_bad_values_are_refused(client, method, path, bound, how, extra):
    for value in bad_values(bound):
        body = assert_refused(send(client, method, path, bound, how, extra, value), bound)
        assert body["value"] == value.strip() or body["value"] == value, value


@pytest.mark.parametrize(("method", "path", "bound", "how", "extra"), [p[1:] for p in PARAMETERS], ids=[p[0] for p in PARAMETERS])
def test_huge_digit_string_is_refused_quickly_and_truncated(client, method, path, bound, how, extra):
    value = "9" * 100_000
    started = time.perf_counter()
    response = send(client, method, path, bound, how, extra, value)
    elapsed = time.perf_counter() - started
    body = assert_refused(response, bound)
    assert len(body["value"]) <= 40
    assert value.startswith(body["value"])
    assert len(body["error"]) < 300
    assert elapsed < 1.0, f"refusing a 100 000-digit value took {elapsed:.3f} s"


@pytest.mark.parametrize(("method", "path", "bound", "how", "extra"), [p[1:] for p in PARAMETERS], ids=[p[0] for p in PARAMETERS])
def test_range_edges_are_accepted(client, method, path, bound, how, extra):
    # The low edge is accepted everywhere; the high edge only where it is cheap (n).
    edges = [bound.low] + ([bound.high] if bound.unit != "milliseconds" else [])
    for value in edges:
        response = send(client, method, path, bound, how, extra, str(value))
        assert response.status_code in (200, 202), response.get_json()
        body = response.get_json()
        if bound is MIXED_MS:  # /mixed echoes n, and reports the wait as slept_ms
            assert body["slept_ms"] >= value - 1
        else:
            assert body[bound.name] == value


@pytest.mark.parametrize(
    "value",
    [True, 1.5, 2.0, [1], {"ms": 1}],
    ids=["bool", "float", "integral-float", "list", "object"],
)
def test_background_json_non_integer_types_are_refused(client, value):
    assert_refused(client.post("/background", json={"ms": value}), BACKGROUND_MS)


@pytest.mark.parametrize("value", ["+-5", "--5", "-+5"])
def test_repeated_signs_are_refused(client, value):
    assert_refused(client.get("/cpu", query_string={"n": value}), CPU_N)


@pytest.mark.parametrize("value", ["²", "1²", "①"])
def test_non_decimal_digit_characters_are_refused(client, value):
    assert_refused(client.get("/cpu", query_string={"n": value}), CPU_N)


def test_not_found_is_json(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert response.is_json
    body = response.get_json()
    assert body["status"] == 404
    assert body["error"]


@pytest.mark.parametrize(("method", "path"), [("POST", "/"), ("GET", "/background"), ("DELETE", "/cpu"), ("POST", "/healthz")])
def test_method_not_allowed_is_json(client, method, path):
    response = client.open(path, method=method)
    assert response.status_code == 405
    assert response.is_json
    assert response.get_json()["status"] == 405


# --- background jobs: the running cap and the memory cap -------------------------------


def test_background_jobs_cap_gives_429(client, monkeypatch):
    monkeypatch.setattr(labapp, "MAX_RUNNING_BACKGROUND_JOBS", 2)
    # Jobs run on daemon threads, so even a failure here cannot block interpreter exit;
    # they are short enough to be waited for below.
    first = client.post("/background?ms=800")
    second = client.post("/background?ms=800")
    assert first.status_code == second.status_code == 202
    refused = client.post("/background?ms=0")
    assert refused.status_code == 429
    assert refused.is_json
    assert "2" in refused.get_json()["error"]
    assert "Location" not in refused.headers
    # Once the running jobs finish, new jobs are accepted again.
    for response in (first, second):
        wait_for_job(client, response.headers["Location"])
    accepted = client.post("/background?ms=0")
    assert accepted.status_code == 202
    wait_for_job(client, accepted.headers["Location"])


def test_background_job_records_are_bounded(app, monkeypatch):
    monkeypatch.setattr(labapp, "MAX_BACKGROUND_JOBS", 3)
    jobs = app.extensions["labapp.jobs"]
    ids = []
    for _ in range(5):
        ids.append(jobs.start(app, 0)["id"])
        deadline = time.monotonic() + POLL_TIMEOUT_S
        while jobs.get(ids[-1])["state"] != "done":
            assert time.monotonic() < deadline
            time.sleep(0.005)
    # The two oldest finished records were dropped; the three newest are kept.
    assert [jobs.get(job_id) is not None for job_id in ids] == [False, False, True, True, True]
    assert jobs.running() == 0


def test_background_get_returns_a_copy(app):
    jobs = app.extensions["labapp.jobs"]
    job = jobs.start(app, 0)
    job["state"] = "tampered"
    record = jobs.get(job["id"])
    record["state"] = "tampered"
    assert jobs.get(job["id"])["state"] in ("queued", "running", "done")


def test_each_app_has_its_own_jobs(client):
    other = labapp.create_app({"TESTING": True}).test_client()
    location = client.post("/background?ms=0").headers["Location"]
    assert other.get(location).status_code == 404
    wait_for_job(client, location)


# --- the debugger is never on ----------------------------------------------------------


def test_debug_config_is_ignored():
    app = labapp.create_app({"DEBUG": True})
    assert app.debug is False
    assert app.config["DEBUG"] is False


def test_debug_env_is_ignored(monkeypatch):
    monkeypatch.setenv("FLASK_DEBUG", "1")
    monkeypatch.setenv("LABAPP_DEBUG", "true")
    app = labapp.create_app()
    assert app.debug is False


def test_prefixed_env_configures_the_app(monkeypatch):
    monkeypatch.setenv("LABAPP_SOME_SETTING", "42")
    assert labapp.create_app().config["SOME_SETTING"] == 42


def test_wsgi_entry_point_is_the_app_without_debugger():
    from labapp import wsgi

    assert wsgi.app.name == "labapp"
    assert wsgi.app.debug is False
    assert wsgi.app.test_client().get("/").get_data(as_text=True) == "Hello, World!"


@pytest.fixture
def run_simple_calls(monkeypatch):
    """Replace the dev server's ``run_simple`` with a recorder (no socket is opened)."""
    calls = []
    monkeypatch.setattr(devserver, "run_simple", lambda *args, **kwargs: calls.append((args, kwargs)))
    return calls


def test_devserver_never_enables_debugger_or_reloader(run_simple_calls):
    devserver.main(["--port", "0"])
    [(args, kwargs)] = run_simple_calls
    assert args[:2] == ("0.0.0.0", 0)
    assert args[2].name == "labapp"
    assert args[2].debug is False
    assert kwargs["use_debugger"] is False
    assert kwargs["use_reloader"] is False
    assert kwargs["threaded"] is False
    assert kwargs["processes"] == 1
    assert kwargs["request_handler"] is devserver.QuietRequestHandler


def test_devserver_threaded(run_simple_calls):
    devserver.main(["--port", "8123", "--threaded", "--host", "127.0.0.1"])
    [(args, kwargs)] = run_simple_calls
    assert args[:2] == ("127.0.0.1", 8123)
    assert kwargs["threaded"] is True
    assert kwargs["use_debugger"] is False
    assert kwargs["use_reloader"] is False


def test_quiet_request_handler_does_not_log(caplog, capsys):
    assert issubclass(devserver.QuietRequestHandler, WSGIRequestHandler)
    assert devserver.QuietRequestHandler.log_request is not WSGIRequestHandler.log_request
    handler = object.__new__(devserver.QuietRequestHandler)  # no socket needed: it must not touch any
    with caplog.at_level("DEBUG"):
        assert handler.log_request(200, 13) is None
    assert caplog.records == []
    assert capsys.readouterr() == ("", "")


# --- the container healthcheck, against a real local server ---------------------------


@pytest.fixture
def live_server(app):
    """Serve ``app`` on 127.0.0.1 on a free port in a background thread."""
    server = make_server("127.0.0.1", 0, app, request_handler=devserver.QuietRequestHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_healthcheck_healthy(live_server):
    assert healthcheck.main([str(live_server)]) == 0


def test_healthcheck_uses_serverlab_port(live_server, monkeypatch):
    monkeypatch.setenv("SERVERLAB_PORT", str(live_server))
    assert healthcheck.main([]) == 0


def test_healthcheck_unhealthy_on_an_error_answer(capsys):
    """The shell check reads the status line: a 503 from /healthz is unhealthy, and it says what came back."""
    import http.server

    class Failing(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the stdlib's name)
            self.send_response(503)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Failing)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        assert healthcheck.main([str(server.server_port)]) == 1
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert "answered HTTP/1.0 503" in capsys.readouterr().err


def test_healthcheck_unhealthy_without_server(capsys):
    with socket.socket() as sock:  # a port that was free a moment ago, with no listener
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert healthcheck.main([str(port)]) == 1
    assert "unhealthy" in capsys.readouterr().err


# --- hostile bodies: size limit, undecodable / malformed / too-deep JSON (issue 8) -------


def assert_json_error(response, status: int, *words: str) -> dict:
    """The response is ``status`` with a JSON ``{"error", "status"}`` naming each of ``words``."""
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    assert response.is_json
    body = response.get_json()
    assert body["status"] == status
    for word in words:
        assert word in body["error"], body
    return body


def test_body_limit_is_one_mebibyte():
    assert labapp.MAX_BODY_BYTES == 1 << 20
    assert labapp.create_app().config["MAX_CONTENT_LENGTH"] == labapp.MAX_BODY_BYTES


@pytest.mark.parametrize("path", ["/background", "/"])
def test_body_over_the_limit_is_413_naming_the_limit(client, path):
    body = b"{" + b" " * labapp.MAX_BODY_BYTES + b"}"
    response = client.post(path, data=body, content_type="application/json")
    error = assert_json_error(response, 413, str(labapp.MAX_BODY_BYTES), "bytes")
    assert error["limit_bytes"] == labapp.MAX_BODY_BYTES
    assert client.get("/healthz").status_code == 200


def test_body_at_the_limit_is_read(client):
    body = b'{"ms": 0' + b" " * (labapp.MAX_BODY_BYTES - 9) + b"}"
    assert len(body) == labapp.MAX_BODY_BYTES
    response = client.post("/background", data=body, content_type="application/json")
    assert response.status_code == 202
    wait_for_job(client, response.headers["Location"])


def chunked_post(client, path: str, body: bytes, **environ):
    """POST ``body`` as a server hands the app a chunked upload: ``Transfer-Encoding:
    chunked``, no ``Content-Length``, the de-chunked bytes in ``wsgi.input`` (``environ``
    adds or overrides keys: ``wsgi.input_terminated`` for a server that de-chunks)."""
    import io

    builder_environ = {"wsgi.input": io.BytesIO(body), "HTTP_TRANSFER_ENCODING": "chunked", **environ}
    return client.post(path, content_type="application/json", environ_overrides=builder_environ)


@pytest.mark.parametrize("path", ["/background", "/"])
@pytest.mark.parametrize("extra", [1, labapp.MAX_BODY_BYTES // 2], ids=["one-byte-over", "half-a-limit-over"])
def test_chunked_body_over_the_limit_is_413(client, path, extra):
    """Issue 22: a de-chunked body one byte over the limit was cut at the limit by Werkzeug
    and answered 400 "not valid JSON: Unterminated string"; now 413 on every route."""
    body = b'{"ms": 0, "p": "' + b"a" * (labapp.MAX_BODY_BYTES + extra) + b'"}'
    response = chunked_post(client, path, body, **{"wsgi.input_terminated": True})
    error = assert_json_error(response, 413, str(labapp.MAX_BODY_BYTES), "bytes")
    assert error["limit_bytes"] == labapp.MAX_BODY_BYTES
    assert client.get("/healthz").status_code == 200


def test_chunked_body_at_the_limit_is_read(client):
    body = b'{"ms": 0' + b" " * (labapp.MAX_BODY_BYTES - 9) + b"}"
    assert len(body) == labapp.MAX_BODY_BYTES
    response = chunked_post(client, "/background", body, **{"wsgi.input_terminated": True})
    assert response.status_code == 202, response.get_data(as_text=True)[:300]
    wait_for_job(client, response.headers["Location"])


class FakeUwsgi:
    """``import uwsgi`` inside a uWSGI worker: ``chunked_read()`` returns one chunk per call, b"" at the end."""

    def __init__(self, chunks):
        self.chunks = list(chunks)
        self.calls = 0

    def chunked_read(self, timeout: int = 0) -> bytes:
        self.calls += 1
        if not self.chunks:
            return b""
        chunk = self.chunks.pop(0)
        if isinstance(chunk, Exception):
            raise chunk
        return chunk


def test_uwsgi_chunked_bodies_are_read_with_its_chunked_api(client, monkeypatch):
    """uWSGI's --http-socket hands the app no chunked body (wsgi.input is empty): the app
    reads it with uwsgi.chunked_read(), so the same request is 202 as on Gunicorn."""
    fake = FakeUwsgi([b'{"ms"', b": 5}"])
    monkeypatch.setitem(sys.modules, "uwsgi", fake)
    response = chunked_post(client, "/background", b"", **{"uwsgi.version": b"2.0.30"})
    assert response.status_code == 202, response.get_data(as_text=True)
    assert response.get_json()["ms"] == 5
    wait_for_job(client, response.headers["Location"])


def test_uwsgi_chunked_body_over_the_limit_is_413_and_not_read_further(client, monkeypatch):
    chunks = [b'{"p": "'] + [b"a" * 65536] * 17 + [b'"}'] + [b"never read"] * 5
    fake = FakeUwsgi(chunks)
    monkeypatch.setitem(sys.modules, "uwsgi", fake)
    response = chunked_post(client, "/", b"", **{"uwsgi.version": b"2.0.30"})
    assert_json_error(response, 413, str(labapp.MAX_BODY_BYTES))
    assert fake.calls == 17  # stopped at the first chunk that went over 1 MiB
    assert fake.chunks[-5:] == [b"never read"] * 5


def test_uwsgi_chunk_read_error_is_400_naming_it(client, monkeypatch):
    monkeypatch.setitem(sys.modules, "uwsgi", FakeUwsgi([b'{"ms"', OSError("unable to receive chunked part")]))
    response = chunked_post(client, "/background", b"", **{"uwsgi.version": b"2.0.30"})
    assert_json_error(response, 400, "chunked request body could not be read", "unable to receive chunked part")


def test_a_server_that_hands_no_chunked_body_gets_411(client):
    response = chunked_post(client, "/background", b'{"ms": 5}', SERVER_SOFTWARE="someserver/1")
    assert_json_error(response, 411, "someserver/1", "Content-Length")


def test_a_length_beside_chunked_is_read_by_its_length(client):
    """nginx's uwsgi_pass de-chunks and passes CONTENT_LENGTH with the client's Transfer-Encoding."""
    body = b'{"ms": 0}'
    response = chunked_post(client, "/background", body, CONTENT_LENGTH=str(len(body)))
    assert response.status_code == 202, response.get_data(as_text=True)
    wait_for_job(client, response.headers["Location"])


def test_deeply_nested_json_is_400(client):
    response = client.post("/background", data="[" * 100_000, content_type="application/json")
    assert_json_error(response, 400, "nested too deeply")
    response = client.post("/background", data='{"a":' * 50_000 + "0" + "}" * 50_000, content_type="application/json")
    assert_json_error(response, 400, "nested too deeply")


@pytest.mark.parametrize(("body", "words"), [
    (b"\xff\xfe\x00{", ("not valid JSON",)),
    (b'{"ms"', ("not valid JSON",)),
    (b'{"ms": 5,}', ("not valid JSON",)),
    (b"", ("not valid JSON",)),
    (b"[1, 2]", ("must be an object", "list")),
    (b'"5"', ("must be an object", "str")),
], ids=["undecodable", "truncated", "trailing-comma", "empty", "array", "string"])
def test_unusable_json_bodies_are_400(client, body, words):
    assert_json_error(client.post("/background", data=body, content_type="application/json"), 400, *words)
    assert client.get("/background/none").status_code == 404  # and nothing was started


def test_bodies_without_json_content_type_are_not_read(client):
    response = client.post("/background?ms=0", data=b"[" * 1000, content_type="text/plain")
    assert response.status_code == 202
    wait_for_job(client, response.headers["Location"])


def test_an_unreadable_body_is_400_not_500(client):
    """What a server's input stream raises on a broken chunked body (each server its own
    exception type) is the client's fault: 400."""

    import io

    class BrokenChunks(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, _buffer) -> int:
            raise OSError("Invalid chunk header")

    response = client.post("/background", content_type="application/json",
                           environ_overrides={"wsgi.input": BrokenChunks(), "wsgi.input_terminated": True})
    assert_json_error(response, 400, "could not be read")
    response = chunked_post(client, "/background", b"", **{"wsgi.input": BrokenChunks(), "wsgi.input_terminated": True})
    assert_json_error(response, 400, "could not be read", "Invalid chunk header")


def test_background_cap_is_exact_under_a_flood(app, monkeypatch):
    """64 requests at once (a barrier releases them together) against a cap of 32: exactly
    32 start. Counting the running jobs is made slow (as on a busy, preempted server) to
    widen any gap between the cap check and the admission."""
    jobs = app.extensions["labapp.jobs"]
    original = type(jobs).running

    def slow_running(self):
        count = original(self)
        time.sleep(0.02)
        return count

    monkeypatch.setattr(type(jobs), "running", slow_running)
    flood = 2 * labapp.MAX_RUNNING_BACKGROUND_JOBS
    barrier = threading.Barrier(flood)
    statuses: list[int] = []

    def post() -> None:
        client = app.test_client()
        barrier.wait()
        statuses.append(client.post("/background?ms=3000").status_code)

    threads = [threading.Thread(target=post) for _ in range(flood)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(POLL_TIMEOUT_S)
    assert len(statuses) == flood
    assert statuses.count(202) == labapp.MAX_RUNNING_BACKGROUND_JOBS, sorted(statuses)
    assert statuses.count(429) == flood - labapp.MAX_RUNNING_BACKGROUND_JOBS
    assert original(jobs) == labapp.MAX_RUNNING_BACKGROUND_JOBS


def test_background_jobs_start_refuses_at_the_cap(app):
    jobs = app.extensions["labapp.jobs"]
    assert jobs.start(app, 2000, max_running=1) is not None
    assert jobs.start(app, 0, max_running=1) is None
    assert jobs.running() == 1


# --- the dev server's bounds: connection threads and silent connections (issue 8) --------


def test_devserver_refuses_bad_bounds(run_simple_calls, capsys):
    for argv in (["--max-connections", "4"], ["--threaded", "--max-connections", "-1"],
                 ["--read-timeout", "0"], ["--read-timeout", "99999"]):
        with pytest.raises(SystemExit):
            devserver.main(argv)
    assert run_simple_calls == []
    assert "--read-timeout" in capsys.readouterr().err


def test_devserver_read_timeout_reaches_the_handler(run_simple_calls):
    devserver.main(["--port", "0", "--read-timeout", "5"])
    [(_args, kwargs)] = run_simple_calls
    assert issubclass(kwargs["request_handler"], devserver.QuietRequestHandler)
    assert kwargs["request_handler"].timeout == 5
    assert devserver.QuietRequestHandler.timeout == devserver.READ_TIMEOUT_S == 10


def connection_threads() -> int:
    """Threads the threading mix-in started for connections, in this process."""
    return sum(1 for thread in threading.enumerate() if "process_request_thread" in thread.name)


def test_bounded_threaded_server_caps_connection_threads(app):
    """12 idle connections to a server bounded at 3: 3 connection threads, the others wait
    in the backlog; once the idle ones close, requests are answered again."""
    server = devserver.BoundedThreadedWSGIServer("127.0.0.1", 0, app, devserver.QuietRequestHandler, max_connections=3)
    loop = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    loop.start()
    before = connection_threads()
    idle = [socket.create_connection(("127.0.0.1", server.server_port), timeout=5) for _ in range(12)]
    try:
        deadline = time.monotonic() + POLL_TIMEOUT_S
        while connection_threads() - before < 3:
            assert time.monotonic() < deadline, "the server did not take the first connections"
            time.sleep(0.01)
        time.sleep(0.2)  # room for any over-admission to show
        assert connection_threads() - before == 3
    finally:
        for sock in idle:
            sock.close()
    try:
        assert healthcheck.main([str(server.server_port)]) == 0
    finally:
        server.shutdown()
        server.server_close()
        loop.join(timeout=5)
    with pytest.raises(ValueError):
        devserver.BoundedThreadedWSGIServer("127.0.0.1", 0, app, max_connections=0)


def test_silent_connection_is_closed_by_the_server(app):
    """A client that connects and sends nothing is dropped after the read timeout, so
    it cannot hold the single-threaded server forever."""
    handler = type("Handler", (devserver.QuietRequestHandler,), {"timeout": 0.5})
    server = make_server("127.0.0.1", 0, app, request_handler=handler)
    loop = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    loop.start()
    try:
        with socket.create_connection(("127.0.0.1", server.server_port), timeout=POLL_TIMEOUT_S) as silent:
            assert silent.recv(1) == b""  # closed by the server, not by our own timeout
        assert healthcheck.main([str(server.server_port)]) == 0
    finally:
        server.shutdown()
        server.server_close()
        loop.join(timeout=5)
