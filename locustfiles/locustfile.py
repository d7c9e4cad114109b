"""Locust users for serverlab: one FastHttpUser class per workload, generated from
:data:`serverlab.terms.WORKLOADS` (``HelloUser``, ``JsonUser``, ``CpuUser``, ``IoUser``,
``MixedUser``; each parameter is a Locust option, e.g. ``--cpu-n``).

Web UI (``docker compose up``, http://localhost:8089): the **Host** field is the server
to load (a server's name or URL, ``--server``'s at start; other hosts only when named with
``--allow-host`` / ``SERVERLAB_ALLOW_HOSTS``), and the workload is the ``--workload``
custom parameter (``hello`` by default): one workload per test. The header shows the
server. The **Compare servers** and **Reports** tabs, the bounds on ``/swarm`` and the
cross-origin refusal come from :mod:`serverlab.ui`.

Headless (``serverlab run`` does this): ``--host http://gunicorn-sync:8000 HelloUser``.

An app's own declared requests (an experiment's ``[[requests]]``): with
``SERVERLAB_REQUESTS`` set to their JSON list, ``RequestsUser`` sends them, each chosen
by its weight, and counts an answer with another status than the declared one as a
failure (redirects are not followed: a 302 is what a declared 302 expects). Against a
server that closes every connection (``SERVERLAB_SERVER_CLOSES=1``) they say
``Connection: close`` and the user drops its connection after each answer: uWSGI's
``--http-socket`` closes without announcing it, so the client would send the next request
on a closed connection, and a POST there cannot be retried (an idempotent GET is, silently).

Load models:

* **closed** (default): each user waits for its response, then sends the next
  request at once (no think time), so throughput = users / latency.
* **requests** (``--max-requests N``): closed, but the run ends after N responses;
  the total time for N requests is recorded (the Flask-threading-article measure).
* **open** (``--open-rate R``): requests are issued on a fixed schedule, R per
  second across all users, whether or not earlier ones have returned. Each latency
  is measured from the request's *intended* send time, so a stalled server shows
  in the tail (coordinated omission corrected, as in wrk2/HdrHistogram practice).
  Sends that left later than scheduled are counted: the generator fell behind.

The lab's own recorder keeps every response time, in microseconds, in an HDR
histogram per Locust process. ``--warmup-seconds W`` discards (and resets Locust's
stats for) the first W seconds. When ``SERVERLAB_HDR_DIR`` is set each process
writes ``hdr-<host>-<pid>.json`` there at test stop (histogram, counts, measured
window, the process's CPU seconds, requests still unanswered when the test
stopped), for exact merging across processes.

The server's host name is resolved once per process (as wrk does), so a DNS lookup
is not part of every request to the servers that close each connection.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import gevent
from hdrh.histogram import HdrHistogram
from locust import FastHttpUser, constant, events, task
from locust.exception import StopUser

# After Locust (which monkey-patches with gevent). labapp and serverlab are installed packages
# (the venv; PYTHONPATH=/srv/app:/srv in the image).
from labapp.variants import load_variants  # noqa: E402
from serverlab.hdrdump import ProcessDump, ProcessTimeline  # noqa: E402
from serverlab.load import LOAD_ENV, Load  # noqa: E402
from serverlab.terms import (APP_PORT, DEFAULT_WORKLOAD, HDR, HDR_DIR_ENV,  # noqa: E402
                             LATE_SEND_S, LATENCY_UNIT, MAX_REQUESTS_OPTION, Mode,
                             OPEN_RATE_OPTION, REQUEST_HEADERS, REQUESTS_ENV, REQUESTS_USER_CLASS, SERVER_CLOSES_ENV,
                             US_PER_S, WARMUP_OPTION, WORKLOADS, WorkloadSpec)
from serverlab.ui import LabUI  # noqa: E402  (web UI: Host = server, bounds, Compare and Reports tabs)
from serverlab.workerhosts import lab_version  # noqa: E402  (workers of another lab version are refused)

#: How a server name becomes a URL; compose services answer on port 8000 by name. A worker on
#: another host (docker-compose.loadgen.yml) reaches them on the lab machine's published ports:
#: ``http://<lab host>:{port}``, ``{port}`` being the variant's ``host_port``.
TARGET_URL_TEMPLATE = os.environ.get("SERVERLAB_TARGET_URL_TEMPLATE", f"http://{{name}}:{APP_PORT}")
VARIANTS = load_variants()
VARIANT_NAMES = list(VARIANTS)


def target_url(name: str) -> str:
    """The URL of the server variant ``name`` as this process reaches it (:data:`TARGET_URL_TEMPLATE`)."""
    return TARGET_URL_TEMPLATE.format(name=name, port=VARIANTS[name].host_port)


@events.init_command_line_parser.add_listener
def _add_arguments(parser) -> None:
    default = "gunicorn-sync" if "gunicorn-sync" in VARIANT_NAMES else VARIANT_NAMES[0]
    parser.add_argument("--workload", choices=list(WORKLOADS), default=DEFAULT_WORKLOAD,
                        help="web UI: what every user requests (its parameters below)")
    parser.add_argument("--server", choices=VARIANT_NAMES, default=default, env_var="SERVERLAB_SERVER_CHOICE",
                        include_in_web_ui=False, help="server variant to load when --host is empty (the web UI's Host)")
    parser.add_argument("--allow-host", default="", env_var="SERVERLAB_ALLOW_HOSTS", include_in_web_ui=False,
                        help="comma-separated URLs the web UI's Host may name besides the lab's servers")
    for spec in WORKLOADS.values():  # one option per workload parameter, e.g. --cpu-n
        for name, option in spec.locust_options.items():
            bound = spec.bounds[name]
            parser.add_argument(option, type=int, default=bound.default,
                                help=f"{spec.path}?{name}=: {bound.unit} per request ({bound.low}..{bound.high})")
    parser.add_argument(WARMUP_OPTION, type=float, default=0.0, include_in_web_ui=False,
                        help="discard the figures of the first N seconds")
    parser.add_argument(MAX_REQUESTS_OPTION, type=int, default=0, include_in_web_ui=False,
                        help="requests mode: stop after this many responses (per process)")
    parser.add_argument(OPEN_RATE_OPTION, type=float, default=0.0, include_in_web_ui=False,
                        help="open model: target requests per second across all users (0: closed model)")


def process_load(open_rate: float) -> Load:
    """The :class:`~serverlab.load.Load` this process runs: the runner's (:data:`~serverlab.load.LOAD_ENV`),
    or without it (``locust`` run by hand) the open model at ``open_rate`` RPS with its default users.

    :raises ValueError: when :data:`~serverlab.load.LOAD_ENV` holds no load.
    """
    text = os.environ.get(LOAD_ENV)
    return Load.from_json(text) if text else Load.of(Mode.OPEN, max(1, int(open_rate)))


_RESOLVED: dict[str, str] = {}


def resolve_once(url: str) -> str:
    """Return ``url`` with its host name replaced by its IPv4 address, looked up once per process.

    A new connection per request (servers without keep-alive) would otherwise pay a
    DNS lookup per request — Docker's embedded DNS measured ~40% of throughput here —
    which penalizes exactly those servers. wrk resolves once too.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        ipaddress.ip_address(host)
        return url
    except ValueError:
        pass
    if host not in _RESOLVED:
        try:
            _RESOLVED[host] = socket.gethostbyname(host)
        except OSError:
            return url  # let the request fail and be counted, with Locust's own error
    netloc = _RESOLVED[host] + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


#: Per-second latency histograms (the over-time p99) need less precision: 2 significant digits (1%).
TIMELINE_DIGITS = 2
#: Longest timeline kept (seconds from the start of the test, warm-up included).
TIMELINE_MAX_S = 3600


class Recorder:
    """Per-process HDR histogram of response times (µs), counts and the measured window.

    Besides the measured window (reset when the warm-up ends) it keeps a **timeline**
    from the start of the test, warm-up included: responses per second and one small
    HDR histogram per second (encoded, for the p99 over time merged across processes).
    """

    def __init__(self) -> None:
        #: Requests sent and not yet answered (never reset: a request sent in the warm-up
        #: and answered in the measured period settles here too).
        self.in_flight = 0
        self.start_timeline()
        self.reset()

    def start_timeline(self) -> None:
        """Start a new timeline now (a test starts); the warm-up end is not known yet."""
        self.timeline_start = time.time()
        self.warmup_end = None
        self.timeline_counts: list[int] = []
        self.timeline_hdrs: list[str | None] = []
        self._second = 0
        self._second_hist = HdrHistogram(HDR.lowest_us, HDR.highest_us, TIMELINE_DIGITS)

    def _flush_second(self) -> None:
        hist = self._second_hist
        self.timeline_hdrs.append(hist.encode().decode("ascii") if hist.get_total_count() else None)
        hist.reset()

    def _timeline_record(self, us: int, end: float) -> None:
        second = int(end - self.timeline_start)
        if second >= TIMELINE_MAX_S or second < 0:
            return
        while self._second < second:  # a new second began: close the finished ones
            self._flush_second()
            self._second += 1
        if len(self.timeline_counts) <= self._second:
            self.timeline_counts.extend([0] * (self._second + 1 - len(self.timeline_counts)))
        self.timeline_counts[self._second] += 1  # a late response counts in the current second
        self._second_hist.record_value(us)

    def timeline(self) -> ProcessTimeline:
        """The timeline so far, one entry per second (:class:`serverlab.hdrdump.ProcessTimeline`)."""
        hdrs = list(self.timeline_hdrs)
        if self._second_hist.get_total_count():
            hdrs.append(self._second_hist.encode().decode("ascii"))
        return ProcessTimeline(self.timeline_start, self.warmup_end, tuple(self.timeline_counts), tuple(hdrs))

    def reset(self) -> None:
        """Forget everything recorded; the measured window starts now."""
        self.histogram = HdrHistogram(HDR.lowest_us, HDR.highest_us, HDR.significant_digits)
        self.requests = 0
        self.failures = 0
        self.sent = 0
        self.late_sends = 0
        self.max_lag_s = 0.0
        self.first_send = None
        self.last_response = None
        self.per_second: list[int] = []
        self.window_start = time.time()
        self.cpu_start = time.process_time()

    def record(self, latency_s: float, end: float, failed: bool) -> None:
        """Record one response: its latency in seconds and its wall-clock end time."""
        self.requests += 1
        self.in_flight = max(0, self.in_flight - 1)
        self.last_response = end
        second = int(end - self.window_start)
        if 0 <= second < 3600:
            if second >= len(self.per_second):
                self.per_second.extend([0] * (second + 1 - len(self.per_second)))
            self.per_second[second] += 1
        if failed:
            self.failures += 1
        us = HDR.clamp(int(round(latency_s * US_PER_S)))
        self.histogram.record_value(us)
        self._timeline_record(us, end)

    def note_send(self, lag_s: float = 0.0) -> None:
        """Count one request about to be sent, ``lag_s`` seconds after its scheduled time."""
        self.sent += 1
        self.in_flight += 1
        self.first_send = self.first_send or time.time()
        if lag_s > LATE_SEND_S:
            self.late_sends += 1
        self.max_lag_s = max(self.max_lag_s, lag_s)

    def snapshot(self) -> ProcessDump:
        """Everything recorded so far, as ``hdr-*.json`` holds it (:class:`serverlab.hdrdump.ProcessDump`:
        seconds, µs in the histograms); its ``process`` names this process (``<host>-<pid>``)."""
        return ProcessDump(
            process=f"{socket.gethostname()}-{os.getpid()}", requests=self.requests, failures=self.failures,
            sent=self.sent, unanswered=self.in_flight, late_sends=self.late_sends, max_lag_ms=self.max_lag_s * 1000.0,
            first_send_at=self.first_send, last_response_at=self.last_response, window_start_at=self.window_start,
            window_end_at=time.time(), cpu_seconds=time.process_time() - self.cpu_start,
            responses_per_second=tuple(self.per_second), histogram=self.histogram.encode().decode("ascii"),
            timeline=self.timeline(), unit=LATENCY_UNIT)

    def dump(self, directory: str) -> Path:
        """Write :meth:`snapshot` as ``hdr-<host>-<pid>.json`` into ``directory``; return its path."""
        return self.snapshot().write(directory)


RECORDER = Recorder()
_ENV = {}


@events.init.add_listener
def _on_init(environment, **_kwargs) -> None:
    _ENV["environment"] = environment
    allow = getattr(environment.parsed_options, "allow_host", "") or ""
    LabUI(environment, dict(USER_CLASSES), RECORDER, VARIANTS, target_url, allow_hosts=allow.split(","),
          lab_version=lab_version(Path(__file__))).install()
    # The event loop's clock was last read when gevent started, before imports and set-up
    # that can take seconds on a busy machine; Locust's --run-time timer is set right after
    # this event, relative to that clock, and would fire that much early (a 3 s run measured
    # 0.4 s here). Refresh it so timers count from now.
    gevent.get_hub().loop.update_now()


def _end_warmup(environment) -> None:
    RECORDER.reset()
    RECORDER.warmup_end = time.time()
    if environment.runner is not None:
        environment.runner.stats.reset_all()


@events.test_start.add_listener
def _on_test_start(environment, **_kwargs) -> None:
    RECORDER.start_timeline()
    RECORDER.reset()
    warmup = getattr(environment.parsed_options, "warmup_seconds", 0.0) if environment.parsed_options else 0.0
    if warmup > 0:
        gevent.get_hub().loop.update_now()  # the warm-up counts from now, not from the loop's last wake-up
        gevent.spawn_later(warmup, _end_warmup, environment)


@events.request.add_listener
def _on_request(response_time, exception, start_time=None, context=None, **_kwargs) -> None:
    end = time.time() if start_time is None else start_time + response_time / 1000.0
    intended = (context or {}).get("intended_send_at")
    latency = end - intended if intended is not None else response_time / 1000.0
    RECORDER.record(latency, end, exception is not None)
    environment = _ENV.get("environment")
    limit = getattr(environment.parsed_options, "max_requests", 0) if environment and environment.parsed_options else 0
    if limit and RECORDER.requests == limit and environment.runner is not None:
        gevent.spawn(environment.runner.quit)


@events.test_stop.add_listener
def _on_test_stop(environment, **_kwargs) -> None:
    directory = os.environ.get(HDR_DIR_ENV)
    if directory and (RECORDER.requests or RECORDER.sent or RECORDER.in_flight):
        RECORDER.dump(directory)


class LabUser(FastHttpUser):
    """Base user: targets ``--host`` (the web UI's Host field: a URL or a server's name) if given,
    else ``--server``'s variant.

    Subclasses set :attr:`spec` (:func:`user_class`); the task sends its request path in
    the closed, requests or open model according to the options (see the module docstring).
    """

    abstract = True
    wait_time = constant(0)
    host = None
    #: The workload this class loads (set by :func:`user_class`).
    spec: WorkloadSpec

    def __init__(self, environment) -> None:
        options = environment.parsed_options
        # --host (the web UI's Host) is a URL or a server's name; empty: --server's
        host = environment.host or getattr(options, "server", None) or VARIANT_NAMES[0]
        self.host = resolve_once(target_url(host) if host in VARIANTS else host)
        # The options are fixed for the run: the path is built once per user, not per request.
        self.request_path = self.spec.url_path(self.spec.option_values(options))
        self.open_rate = getattr(options, "open_rate", 0.0) or 0.0
        if self.open_rate > 0:
            # Each open-model user (one per process) keeps up to this many requests in flight:
            # the runner's Load (SERVERLAB_LOAD), or the default Load of this rate on one process.
            self.concurrency = process_load(self.open_rate).max_in_flight_per_process
        super().__init__(environment)

    def send(self, context: dict | None = None) -> None:
        """GET :attr:`request_path` with the lab's :data:`~serverlab.terms.REQUEST_HEADERS` (wrk sends the same);
        an error or a status >= 400 counts as a failure (no redirects here)."""
        self.client.get(self.request_path, name=self.spec.path, headers=REQUEST_HEADERS, context=context or {})

    @task
    def load(self) -> None:
        """One closed-model request, or (open model) the whole arrival schedule."""
        if self.open_rate > 0:
            self._open_loop()
            return
        limit = self.environment.parsed_options.max_requests
        if limit and RECORDER.sent >= limit:
            raise StopUser()
        RECORDER.note_send()
        self.send()

    def _open_loop(self) -> None:
        users = max(1, self.environment.runner.target_user_count if self.environment.runner else 1)
        interval = users / self.open_rate  # this user's share of the schedule, seconds per request
        pool = gevent.pool.Pool(self.concurrency)
        start_perf, start_wall = time.perf_counter(), time.time()
        sent = 0
        while True:
            due = start_perf + sent * interval
            now = time.perf_counter()
            if due > now:
                gevent.sleep(due - now)
            pool.wait_available()  # in-flight cap reached: the send is late, and counted so
            lag = max(0.0, time.perf_counter() - due)
            RECORDER.note_send(lag)
            pool.spawn(self.send, {"intended_send_at": start_wall + sent * interval})
            sent += 1


import gevent.pool  # noqa: E402  (after gevent's monkey-patching by Locust)


def user_class(spec: WorkloadSpec) -> type[LabUser]:
    """Return the Locust user class of one workload: ``GET spec.path`` with its parameters
    taken from the workload's Locust options (``--cpu-n`` ...), named ``spec.user_class``.

    :param spec: the workload, from :data:`serverlab.terms.WORKLOADS`.
    :return: a concrete :class:`LabUser` subclass (Locust runs it when named on the command line).
    """
    doc = f"``GET {spec.path}``: {spec.summary or spec.name}"
    return type(spec.user_class, (LabUser,), {"__doc__": doc, "__module__": __name__, "spec": spec})


#: One user class per workload, by workload name, e.g. ``"hello" -> HelloUser`` (the web UI
#: runs the one its ``--workload`` names, ``HelloUser`` by default). Locust finds them as this module's globals.
USER_CLASSES: dict[str, type[LabUser]] = {name: user_class(spec) for name, spec in WORKLOADS.items()}
globals().update({cls.__name__: cls for cls in USER_CLASSES.values()})


class RequestsUser(LabUser):
    """Sends the declared requests of :data:`serverlab.terms.REQUESTS_ENV`, each chosen by weight.

    An answer whose status is not the request's declared ``status`` is a failure.
    """

    abstract = True  # made concrete below only when requests are declared
    spec = WORKLOADS["hello"]  # unused: the requests come from the environment

    def __init__(self, environment) -> None:
        super().__init__(environment)
        self.requests = json.loads(os.environ.get(REQUESTS_ENV) or "[]")
        self.server_closes = os.environ.get(SERVER_CLOSES_ENV) == "1"
        closing = {"Connection": "close"} if self.server_closes else {}
        for request in self.requests:  # the lab's headers (wrk sends them too), then the request's own
            request["headers"] = {**REQUEST_HEADERS, **(request.get("headers") or {}), **closing}
        self.weights = [int(r.get("weight", 1)) for r in self.requests]
        self.choose = random.Random().choices

    def send(self, context: dict | None = None) -> None:
        """One declared request, picked by weight; its declared status is success, anything else a failure."""
        request = self.choose(self.requests, weights=self.weights)[0]
        body = request.get("body")
        with self.client.request(request["method"], request["path"], name=request["name"],
                                 headers=request.get("headers") or None, data=body.encode() if body is not None else None,
                                 catch_response=True, allow_redirects=False, context=context or {}) as response:
            if response.status_code != request["status"]:
                error = getattr(response, "error", None)
                response.failure(f"status {response.status_code}, expected {request['status']}"
                                 + (f" ({type(error).__name__}: {error})" if error else ""))
            else:
                response.success()
        if self.server_closes:  # the server closed it: never send the next request on that connection
            self.client.client.clientpool.close()


if os.environ.get(REQUESTS_ENV):
    RequestsUser = type(REQUESTS_USER_CLASS, (RequestsUser,), {"abstract": False, "__module__": __name__,  # noqa: F811
                                                               "__doc__": RequestsUser.__doc__})
