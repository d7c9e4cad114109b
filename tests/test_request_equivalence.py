"""Locust sends what wrk sends: the raw requests of both generators, captured by a tiny server.

A socket server on 127.0.0.1 records the bytes of every request head it receives and answers
each with a fixed keep-alive ``Hello, World!``. The lab's locustfile (``HelloUser``, as
``serverlab run`` starts it) and wrk (with :func:`serverlab.loadgen.wrk_args`, as the calibration
starts it) each load it for a second; their request lines, headers and connection reuse must agree.

Found (Locust 2.47 FastHttpUser on geventhttpclient 2.6, wrk 4.1): left alone, Locust sends
``User-Agent: python/gevent-http-client-2.6.1`` (geventhttpclient's default) and
``Accept-Encoding: gzip, deflate, br`` (FastHttpSession adds it when a request names none),
while wrk sends ``Host`` only. Both send ``GET / HTTP/1.1`` with no ``Connection`` header and
reuse each connection (HTTP/1.1 keep-alive). The lab now gives both
:data:`serverlab.terms.REQUEST_HEADERS`, so the two send the same request.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from serverlab.load import Load
from serverlab.loadgen import LoadPlan, wrk_args
from serverlab.terms import REQUEST_HEADERS, WORKLOADS

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = REPO_ROOT / "locustfiles" / "locustfile.py"
VENV_BIN = Path(sys.executable).parent
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 13\r\n\r\n"
            b"Hello, World!")
#: Request heads kept per connection (the rest are counted).
KEEP = 20


class CaptureServer:
    """Accepts connections on 127.0.0.1, records each request head's raw bytes, answers ``Hello, World!``."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.heads: list[tuple[int, bytes]] = []  # (connection number, raw head)
        self.per_connection: Counter[int] = Counter()
        self.lock = threading.Lock()
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        number = 0
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            number += 1
            threading.Thread(target=self._serve, args=(conn, number), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        buffer = b""
        with conn:
            while not self.stopped:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buffer += data
                while b"\r\n\r\n" in buffer:
                    head, buffer = buffer.split(b"\r\n\r\n", 1)
                    with self.lock:
                        self.per_connection[number] += 1
                        if self.per_connection[number] <= KEEP:
                            self.heads.append((number, head))
                    try:
                        conn.sendall(RESPONSE)
                    except OSError:
                        return

    def close(self) -> None:
        self.stopped = True
        self.sock.close()

    def summary(self) -> dict[str, object]:
        """The request lines and header sets seen (Host's value included), and requests per connection."""
        lines, headers = set(), set()
        for _, head in self.heads:
            first, *fields = head.decode("latin-1").split("\r\n")
            lines.add(first)
            headers.add(tuple(sorted((name.strip().lower(), value.strip()) for name, value in
                                     (f.split(":", 1) for f in fields))))
        return {"request_lines": lines, "header_sets": headers, "connections": len(self.per_connection),
                "requests": sum(self.per_connection.values())}


def capture(run) -> dict[str, object]:
    server = CaptureServer()
    try:
        run(f"http://127.0.0.1:{server.port}")
    finally:
        server.close()
    return server.summary()


def run_locust(url: str, out: Path) -> None:
    plan = LoadPlan(WORKLOADS["hello"], {}, Load.of("closed", 2), 1, 0)
    args = plan.locust_args(str(LOCUSTFILE), url, str(out))
    args[0] = str(VENV_BIN / "locust")
    result = subprocess.run(args, cwd=out, env={**os.environ, **plan.environment(str(out))}, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode in (0, 1), (result.stdout + result.stderr)[-2000:]


def run_wrk(url: str) -> None:
    result = subprocess.run(wrk_args(url + WORKLOADS["hello"].path, 2, 1), capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and "Requests/sec" in result.stdout, result.stdout + result.stderr


@pytest.fixture(scope="module")
def locust_requests(tmp_path_factory):
    return capture(lambda url: run_locust(url, tmp_path_factory.mktemp("locust")))


@pytest.mark.slow
def test_locust_sends_one_get_with_the_lab_headers_over_kept_alive_connections(locust_requests):
    seen = locust_requests
    assert seen["request_lines"] == {"GET / HTTP/1.1"}
    assert len(seen["header_sets"]) == 1, seen["header_sets"]
    (headers,) = seen["header_sets"]
    names = [name for name, _ in headers]
    assert len(names) == len(set(names)), headers  # no header twice
    assert {name: value for name, value in headers if name != "host"} == {k.lower(): v for k, v in REQUEST_HEADERS.items()}
    assert dict(headers)["host"].startswith("127.0.0.1:")
    # two users, two connections, each reused for many requests (keep-alive; no "Connection" header)
    assert seen["connections"] <= 2 + 1 and seen["requests"] > 10 * seen["connections"], seen


@pytest.mark.slow
def test_wrk_sends_exactly_what_locust_sends(locust_requests):
    if not shutil.which("wrk"):
        pytest.skip("wrk is not installed on this machine (apt-get install wrk); the image has it")
    wrk = capture(run_wrk)
    assert wrk["request_lines"] == locust_requests["request_lines"]
    strip_port = lambda sets: {tuple((n, v.rsplit(":", 1)[0] if n == "host" else v) for n, v in s) for s in sets}  # noqa: E731
    assert strip_port(wrk["header_sets"]) == strip_port(locust_requests["header_sets"])
    assert wrk["requests"] > 10 * wrk["connections"]  # wrk keeps its connections alive too


def test_wrk_args_carry_the_lab_headers():
    args = wrk_args("http://h:1/", 32, 5)
    pairs = [args[i + 1] for i, a in enumerate(args) if a == "-H"]
    assert pairs == [f"{name}: {value}" for name, value in REQUEST_HEADERS.items()]
    assert args[-1] == "http://h:1/"
