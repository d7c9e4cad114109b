"""Locust users for serverlab: one FastHttpUser class per workload.

Web UI (``docker compose up``, http://localhost:8089): pick the workload in the
user-class picker and the target in the **Server** dropdown (leave *Host* empty);
a URL typed into *Host* wins over the dropdown.

Headless (``serverlab report`` does this): ``--host http://gunicorn-sync:8000 HelloUser``.

Every response time is also recorded, in microseconds, into an HDR histogram per
Locust process; when ``SERVERLAB_HDR_DIR`` is set each process writes
``hdr-<host>-<pid>.json`` there at test stop, for exact merging across processes.

All users are closed-model with no think time: each waits for its response and
sends the next request at once, so throughput = users / latency.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

from hdrh.histogram import HdrHistogram
from locust import FastHttpUser, constant, events, task

sys.path.insert(0, os.environ.get("SERVERLAB_APP_DIR", str(Path(__file__).resolve().parents[1] / "app")))
from labapp.variants import load_variants  # noqa: E402

#: How a server name becomes a URL; compose services answer on port 8000 by name.
TARGET_URL_TEMPLATE = os.environ.get("SERVERLAB_TARGET_URL_TEMPLATE", "http://{name}:8000")
#: HDR histogram range: 1 µs to 120 s, 3 significant digits (0.1% resolution).
HDR_LOWEST_US, HDR_HIGHEST_US, HDR_DIGITS = 1, 120_000_000, 3
VARIANT_NAMES = list(load_variants())


@events.init_command_line_parser.add_listener
def _add_arguments(parser) -> None:
    default = "gunicorn-sync" if "gunicorn-sync" in VARIANT_NAMES else VARIANT_NAMES[0]
    parser.add_argument("--server", choices=VARIANT_NAMES, default=default, env_var="SERVERLAB_SERVER_CHOICE",
                        help="server variant to load when Host is empty")
    parser.add_argument("--cpu-n", type=int, default=1000, env_var="SERVERLAB_CPU_N",
                        help="Fibonacci numbers per /cpu request (1..20000)")
    parser.add_argument("--io-ms", type=int, default=50, env_var="SERVERLAB_IO_MS",
                        help="milliseconds each /io request sleeps (0..10000)")


class Recorder:
    """Per-process HDR histogram of response times (µs) plus request/failure counts."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything recorded (called at each test start)."""
        self.histogram = HdrHistogram(HDR_LOWEST_US, HDR_HIGHEST_US, HDR_DIGITS)
        self.requests = 0
        self.failures = 0
        self.first = None
        self.last = None

    def record(self, response_time_ms: float, failed: bool) -> None:
        """Record one response time given in milliseconds (Locust's unit)."""
        now = time.time()
        self.first = self.first or now
        self.last = now
        self.requests += 1
        if failed:
            self.failures += 1
        us = min(max(int(round(response_time_ms * 1000.0)), HDR_LOWEST_US), HDR_HIGHEST_US)
        self.histogram.record_value(us)

    def dump(self, directory: str) -> Path:
        """Write ``hdr-<host>-<pid>.json`` with the encoded histogram; return its path."""
        path = Path(directory) / f"hdr-{socket.gethostname()}-{os.getpid()}.json"
        data = {
            "requests": self.requests,
            "failures": self.failures,
            "first_request_at": self.first,
            "last_request_at": self.last,
            "histogram": self.histogram.encode().decode("ascii"),
            "unit": "microseconds",
        }
        path.write_text(json.dumps(data, sort_keys=True))
        return path


RECORDER = Recorder()


@events.test_start.add_listener
def _on_test_start(environment, **_kwargs) -> None:
    RECORDER.reset()


@events.request.add_listener
def _on_request(response_time, exception, **_kwargs) -> None:
    RECORDER.record(response_time, exception is not None)


@events.test_stop.add_listener
def _on_test_stop(environment, **_kwargs) -> None:
    directory = os.environ.get("SERVERLAB_HDR_DIR")
    if directory and RECORDER.requests:
        RECORDER.dump(directory)


class LabUser(FastHttpUser):
    """Base user: targets ``--host`` if given, else the ``--server`` dropdown's variant."""

    abstract = True
    wait_time = constant(0)
    host = None

    def __init__(self, environment) -> None:
        options = environment.parsed_options
        server = getattr(options, "server", None) or VARIANT_NAMES[0]
        self.host = environment.host or TARGET_URL_TEMPLATE.format(name=server)
        super().__init__(environment)

    def get(self, path: str, name: str | None = None) -> None:
        """GET ``path``, failing the request on any non-200 status."""
        with self.client.get(path, name=name or path.split("?")[0], catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")


class HelloUser(LabUser):
    """``GET /``: "Hello, World!" — measures the server's per-request overhead."""

    @task
    def hello(self) -> None:
        self.get("/")


class JsonUser(LabUser):
    """``GET /json``: a small JSON document."""

    @task
    def json_doc(self) -> None:
        self.get("/json")


class CpuUser(LabUser):
    """``GET /cpu?n=``: CPU-bound Fibonacci work that holds the GIL."""

    @task
    def cpu(self) -> None:
        self.get(f"/cpu?n={self.environment.parsed_options.cpu_n}")


class IoUser(LabUser):
    """``GET /io?ms=``: I/O-bound waiting that releases the GIL."""

    @task
    def io(self) -> None:
        self.get(f"/io?ms={self.environment.parsed_options.io_ms}")


class MixedUser(LabUser):
    """``GET /mixed``: some CPU plus some waiting."""

    @task
    def mixed(self) -> None:
        self.get("/mixed")
