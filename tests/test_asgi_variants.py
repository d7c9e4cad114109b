"""The asyncio row (issue 20): Flask under ASGI servers through asgiref's WsgiToAsgi, and
Flask's async views (the ``io-async`` workload).

Fast tests: the two ASGI declarations (workers, the adapter's one thread, keep-alive and
limits explicit and recorded); what the installed asgiref's WsgiToAsgi does with threads and
what Flask does with an async view under threads, both observed in-process; the request-body
bound in front of the adapter; the async route's 400s, the same as the sync route's.
Real servers: tests/test_deployed_variants.py starts each ASGI variant (local processes and
the lab image), verifies every workload, checks keep-alive on a real connection and that no
process runs as root; tests/test_known_answers.py checks Little's law on io and io-async.
A slow test here shows what Flask's async views do under gunicorn's gevent worker.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from typing import Any

import pytest
from asgiref.wsgi import WsgiToAsgi
from flask import Flask

import labapp
from labapp import asgi
from labapp.variants import VariantError, get_variant
from serverlab.terms import WORKLOADS, WorkerModel
from serverlab.workloads import verify

ASGI_VARIANTS = ["uvicorn-wsgi", "granian-asgi"]


def option_value(argv: list[str], option: str) -> str:
    """The argument following ``option`` in ``argv``."""
    assert option in argv, f"{option} missing from {argv}"
    return argv[argv.index(option) + 1]


def http_scope(path: str, method: str = "GET", headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    """An ASGI HTTP scope for ``path`` (``?`` splits off the query string)."""
    route, _, query = path.partition("?")
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
            "path": route, "raw_path": route.encode(), "query_string": query.encode(), "root_path": "",
            "headers": [(b"host", b"lab"), *(headers or [])], "client": ("127.0.0.1", 5000),
            "server": ("127.0.0.1", 8000)}


async def call(app: Any, scope: dict[str, Any], body: list[bytes] | None = None) -> tuple[int, dict[str, str], bytes, int]:
    """Serve one request through an ASGI app: ``(status, lower-cased headers, body, receive calls)``.

    :param body: the request body's pieces (each one ``http.request`` message); none by default.
    """
    pieces = list(body or [b""])
    calls = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if pieces:
            piece = pieces.pop(0)
            return {"type": "http.request", "body": piece, "more_body": bool(pieces)}
        await asyncio.sleep(3600)  # the client waits for its answer; never a disconnect here
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"), calls


# --- the declarations -------------------------------------------------------------------


@pytest.mark.parametrize("name", ASGI_VARIANTS)
def test_asgi_variants_run_the_adapter_with_its_one_thread(name):
    variant = get_variant(name)
    assert variant.model == WorkerModel.ASGI and variant.keep_alive
    assert variant.threads == asgi.ADAPTER_THREADS == 1  # asgiref's single-thread executor
    assert variant.slots == variant.workers == 1
    assert dict(variant.settings)["asgi_app"] == "labapp.asgi:app" and "labapp.asgi:app" in variant.argv()
    assert option_value(variant.argv(), "--loop") == "asyncio"  # stated: no "auto" that picks uvloop when present
    # the adapter's pool is fixed: an override would be recorded but never take effect, so it is refused
    with pytest.raises(VariantError, match=r"threads is fixed at 1 \(its command has no \{threads\} placeholder\)"):
        variant.with_counts(threads=8)
    more = variant.with_counts(workers=3)
    assert option_value(more.argv(), "--workers") == "3" and more.slots == 3
    record = json.loads(json.dumps(variant.record()))
    assert record["threads"] == 1 and record["slots"] == 1 and record["settings"] == dict(variant.settings)


def test_uvicorn_limits_and_keep_alive_are_explicit():
    variant = get_variant("uvicorn-wsgi")
    argv = variant.argv(port=9)
    settings = dict(variant.settings)
    assert argv[1] == "labapp.asgi:app" and option_value(argv, "--port") == "9"
    assert option_value(argv, "--interface") == "asgi3" and option_value(argv, "--http") == "h11"
    assert option_value(argv, "--timeout-keep-alive") == str(settings["keep_alive_s"]) == "5"
    assert option_value(argv, "--limit-concurrency") == str(settings["limit_concurrency"]) == "1000"
    assert option_value(argv, "--backlog") == str(settings["backlog"]) == "100"
    assert option_value(argv, "--lifespan") == "on" and option_value(argv, "--ws") == "none"
    assert settings["limit_concurrency"] > 128  # the asyncio experiment's highest level gets no 503


def test_granian_asgi_interface_and_backpressure():
    variant = get_variant("granian-asgi")
    argv = variant.argv(port=9)
    assert option_value(argv, "--interface") == "asgi" and argv[-1] == "labapp.asgi:app"
    assert option_value(argv, "--blocking-threads") == "1"  # Granian allows only 1 outside WSGI: the loop's thread
    assert option_value(argv, "--backpressure") == str(dict(variant.settings)["backpressure"]) == "128"
    assert "--http1-keep-alive" in argv and "--no-ws" in argv


# --- what the adapter and Flask do with threads (in-process, the installed versions) -----


def test_wsgi_to_asgi_runs_every_request_on_one_thread():
    """Eight concurrent requests through asgiref's WsgiToAsgi: one thread ran them all, one at a time."""
    lock = threading.Lock()
    seen: set[int] = set()
    active = peak = 0

    def wsgi(environ, start_response):
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
            seen.add(threading.get_ident())
        threading.Event().wait(0.02)
        with lock:
            active -= 1
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    async def main() -> list[int]:
        answers = await asyncio.gather(*(call(WsgiToAsgi(wsgi), http_scope("/")) for _ in range(8)))
        return [status for status, *_ in answers]

    assert asyncio.run(main()) == [200] * 8
    assert len(seen) == asgi.ADAPTER_THREADS and peak == 1
    assert threading.get_ident() not in seen  # not the event loop's thread


def _async_app() -> tuple[Flask, dict[str, int]]:
    """A Flask app with one async view that counts how many of its requests overlap."""
    app = Flask(__name__)
    counts = {"active": 0, "peak": 0}

    @app.get("/wait")
    async def wait():
        counts["active"] += 1
        counts["peak"] = max(counts["peak"], counts["active"])
        await asyncio.sleep(0.2)
        counts["active"] -= 1
        return "done"

    return app, counts


def test_an_async_view_holds_its_thread_under_wsgi_and_the_adapter_thread_under_asgi():
    """Flask's docs: an async view runs in an event loop inside the worker thread that took it.
    Four WSGI threads: four overlap (one loop each). Through WsgiToAsgi: one at a time."""
    app, counts = _async_app()
    answers: list[int] = []
    threads = [threading.Thread(target=lambda: answers.append(app.test_client().get("/wait").status_code))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert answers == [200] * 4 and counts["peak"] == 4

    app, counts = _async_app()

    async def main() -> list[int]:
        return [status for status, *_ in await asyncio.gather(*(call(WsgiToAsgi(app), http_scope("/wait")) for _ in range(4)))]

    assert asyncio.run(main()) == [200] * 4 and counts["peak"] == 1


def test_the_lab_app_serves_io_async_through_the_adapter():
    status, headers, body, _ = asyncio.run(call(asgi.app, http_scope("/io-async?ms=5")))
    assert status == 200 and headers["content-type"] == "application/json"
    data = json.loads(body)
    assert data["ms"] == 5 and data["slept_ms"] >= 4.5
    assert int(headers["content-length"]) == len(body)


# --- bad input on the async route: the same 400s as the sync route ----------------------


@pytest.mark.parametrize("value", ["-1", "10001", "abc", "1" * 40, "5.5", ""])
def test_async_route_refuses_bad_input_like_the_sync_route(client, value):
    sync = client.get(f"/io?ms={value}")
    awaited = client.get(f"/io-async?ms={value}")
    assert awaited.status_code == sync.status_code == 400
    assert awaited.get_json() == sync.get_json()
    assert awaited.get_json()["parameter"] == "ms"
    assert awaited.get_json()["allowed"] == {"min": 0, "max": 10000, "unit": "milliseconds"}
    # and through the ASGI adapter, as the ASGI variants serve it
    status, _, body, _ = asyncio.run(call(asgi.app, http_scope(f"/io-async?ms={value}")))
    assert status == 400 and json.loads(body) == sync.get_json()


def test_io_async_has_the_bounds_of_io():
    assert WORKLOADS["io-async"].parameters == WORKLOADS["io"].parameters
    assert WORKLOADS["io-async"].character == WORKLOADS["io"].character
    assert WORKLOADS["io-async"].user_class == "IoAsyncUser"
    assert WORKLOADS["io-async"].locust_options == {"ms": "--io-async-ms"}


# --- the request-body bound in front of WsgiToAsgi ---------------------------------------


def test_a_declared_body_over_the_limit_gets_the_apps_413_unread():
    length = str(200 * 1024 * 1024).encode()
    scope = http_scope("/background", "POST", [(b"content-type", b"application/json"), (b"content-length", length)])
    status, headers, body, calls = asyncio.run(call(asgi.app, scope, [b"{" * 1024]))
    assert status == 413 and calls == 0  # not a byte of the body was read
    assert json.loads(body)["limit_bytes"] == labapp.MAX_BODY_BYTES
    assert headers["connection"] == "close"  # the rest of the body is never read: the connection cannot be reused


def test_a_chunked_body_over_the_limit_is_cut_off_after_the_limit():
    piece = b" " * (256 * 1024)
    scope = http_scope("/background", "POST", [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")])
    status, headers, body, calls = asyncio.run(call(asgi.app, scope, [piece] * 800))  # 200 MiB offered
    assert status == 413 and json.loads(body)["limit_bytes"] == labapp.MAX_BODY_BYTES
    assert calls == labapp.MAX_BODY_BYTES // len(piece) + 1  # one piece past the limit, then no more
    assert headers["connection"] == "close"


def test_a_chunked_body_within_the_limit_reaches_the_app():
    """WsgiToAsgi sets no wsgi.input_terminated: without a Content-Length Werkzeug would read a
    chunked body as empty (and /background would sleep its default 1000 ms, not 0)."""
    scope = http_scope("/background", "POST", [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")])
    status, headers, body, _ = asyncio.run(call(asgi.app, scope, [b'{"ms"', b": 0}"]))
    assert status == 202 and json.loads(body)["ms"] == 0
    assert "connection" not in headers


def test_nested_json_through_the_adapter_gets_400():
    nested = b"[" * 100_000
    scope = http_scope("/background", "POST", [(b"content-type", b"application/json"),
                                                (b"content-length", str(len(nested)).encode())])
    status, _, body, _ = asyncio.run(call(asgi.app, scope, [nested]))
    assert status == 400 and "nested too deeply" in json.loads(body)["error"]


def test_lifespan_is_acknowledged_and_a_body_cut_short_gets_a_json_400():
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(asgi.app({"type": "lifespan"}, receive, send))
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]

    gone = [{"type": "http.request", "body": b"{", "more_body": True}, {"type": "http.disconnect"}]
    sent.clear()

    async def receive_then_disconnect() -> dict[str, Any]:
        return gone.pop(0)

    asyncio.run(asgi.app(http_scope("/background", "POST"), receive_then_disconnect, send))
    # Granian reports broken chunked framing as a disconnect; a client really gone never reads this
    assert sent[0]["status"] == 400 and json.loads(sent[1]["body"])["status"] == 400
    assert "the connection ended before the body did" in json.loads(sent[1]["body"])["error"]

    async def gone(message: dict[str, Any]) -> None:
        raise OSError("connection closed")  # a send after the client left may raise: ignored

    gone_messages = [{"type": "http.disconnect"}]

    async def receive_disconnect() -> dict[str, Any]:
        return gone_messages.pop(0)

    asyncio.run(asgi.app(http_scope("/background", "POST"), receive_disconnect, gone))


def test_the_bound_refuses_a_negative_limit():
    with pytest.raises(ValueError, match="limit must be >= 0 bytes, got -1"):
        asgi.BoundedBody(asgi.app, -1)


def test_a_body_the_server_cannot_deframe_gets_a_json_400():
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        raise RuntimeError("invalid chunk size")  # what a server's receive may raise on broken framing

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = http_scope("/background", "POST", [(b"transfer-encoding", b"chunked")])
    asyncio.run(asgi.app(scope, receive, send))
    assert sent[0]["status"] == 400 and (b"connection", b"close") in sent[0]["headers"]
    error = json.loads(sent[1]["body"])
    assert error["status"] == 400 and "badly chunked (RuntimeError)" in error["error"]


# --- Flask's async views under gevent (a real server, slow) ------------------------------


def _overlapping(url: str, path: str, count: int) -> list[int]:
    """Send ``count`` GETs of ``path`` at once (a barrier releases them together); their statuses."""
    barrier = threading.Barrier(count)
    statuses: list[int] = []

    def get() -> None:
        barrier.wait()
        try:
            with urllib.request.urlopen(url + path, timeout=30) as response:
                statuses.append(response.status)
        except urllib.error.HTTPError as err:
            statuses.append(err.code)

    threads = [threading.Thread(target=get) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return sorted(statuses)


@pytest.mark.slow
def test_async_views_under_gevent_fail_when_they_overlap(start_local_server):
    """Seen with Flask 3.1.3, asgiref 3.13.0, gevent 26.9.0 under gunicorn's gevent worker: one async
    view at a time answers (so the verifier passes), but overlapping ones answer 500. asyncio keeps
    its running loop per OS thread, every greenlet shares the worker's one thread, and asgiref's
    AsyncToSync refuses to start a view's loop where another's already runs ("You cannot use
    AsyncToSync in the same thread as an async event loop"). The sync view under the same overlap
    answers every request."""
    url = start_local_server("gunicorn-gevent")
    assert verify(url, WORKLOADS["io-async"], {"ms": 5})["status"] == 200
    statuses = _overlapping(url, "/io-async?ms=300", 8)
    assert len(statuses) == 8 and 200 in statuses and 500 in statuses, statuses
    assert _overlapping(url, "/io?ms=300", 8) == [200] * 8


def _keep_alive_statuses(port: int, path: str, users: int = 24, seconds: float = 4.0) -> dict[int, int]:
    """``users`` clients, each on one kept-alive connection, GET ``path`` in a loop: statuses counted."""
    import http.client
    import time

    counts: dict[int, int] = {}
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def user() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            while time.monotonic() < stop:
                connection.request("GET", path)
                response = connection.getresponse()
                response.read()
                with lock:
                    counts[response.status] = counts.get(response.status, 0) + 1
        finally:
            connection.close()

    threads = [threading.Thread(target=user) for _ in range(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return counts


@pytest.mark.slow
def test_uvicorn_with_the_bare_adapter_fails_kept_alive_requests_and_the_lab_app_does_not(tmp_path):
    """Seen with uvicorn 0.54.0 and asgiref 3.13.0: bare WsgiToAsgi answers some requests of kept-alive
    connections with 500 (CurrentThreadExecutor already quit or is broken); labapp.asgi:app, which runs
    each request in a fresh context, answers every one. Both are the uvicorn-wsgi command otherwise
    (bare with --lifespan off: WsgiToAsgi refuses a lifespan scope)."""
    import socket
    import subprocess

    from hostile import healthy

    variant = get_variant("uvicorn-wsgi")
    results = {}
    for target in ("labapp.asgi:bare", "labapp.asgi:app"):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        argv = [part.replace("labapp.asgi:app", target) for part in variant.argv(port=port)]
        argv[argv.index("--host") + 1] = "127.0.0.1"
        if target == "labapp.asgi:bare":
            argv[argv.index("--lifespan") + 1] = "off"  # bare WsgiToAsgi refuses the lifespan scope
        log = tmp_path / f"{target}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            assert healthy(f"http://127.0.0.1:{port}"), log.read_text()[-2000:]
            results[target] = _keep_alive_statuses(port, "/io?ms=20")
        finally:
            proc.terminate()
            proc.wait(30)
        if target == "labapp.asgi:bare":
            assert "CurrentThreadExecutor already quit or is broken" in log.read_text() or not results[target].get(500)
    assert results["labapp.asgi:bare"].get(500, 0) > 0, results
    assert set(results["labapp.asgi:app"]) == {200}, results


def test_a_head_over_the_limit_gets_414_or_431_as_uvicorn_declares():
    """uvicorn's h11 bounds only an incomplete head; labapp.asgi refuses a whole one over 8 KiB."""
    limit = get_variant("uvicorn-wsgi").headers
    assert limit.max_bytes == asgi.MAX_HEAD_BYTES and (limit.over, limit.line_over) == (431, 414)
    status, headers, body, calls = asyncio.run(call(asgi.app, http_scope("/?pad=" + "a" * 9000)))
    assert status == 414 and calls == 0 and headers["connection"] == "close"
    assert json.loads(body) == {"error": "the request line (URL) is larger than the limit of 8192 bytes", "status": 414}
    big = [(b"x-pad", b"a" * 9000)]
    status, _, body, _ = asyncio.run(call(asgi.app, http_scope("/", headers=big)))
    assert status == 431 and json.loads(body)["status"] == 431
    within = [(b"x-pad", b"a" * 6000)]
    assert asyncio.run(call(asgi.app, http_scope("/?pad=" + "a" * 1000, headers=within)))[0] == 200
