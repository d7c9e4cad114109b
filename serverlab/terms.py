"""The lab's terms, defined once: load modes and their level names, worker models,
bottleneck classes, cell statuses, units, HDR histogram settings and the workloads
(:data:`WORKLOADS`; what a workload is, :class:`~serverlab.workloadspec.WorkloadSpec`, is
in :mod:`serverlab.workloadspec`).

The Flask app (:mod:`labapp`), the locustfile and serverlab itself all import this
module, so a name, a bound or a setting is written here and nowhere else. It uses the
standard library only and imports nothing from serverlab but the as light
:mod:`serverlab.workloadspec`, so that the app and the locustfile can import it cheaply (the image ships it under ``/srv/serverlab``).

Every enum is a :class:`~enum.StrEnum`: a member equals its string value
(``Mode.CLOSED == "closed"``), so results files, experiment files and JSON keep the
plain strings they always had.

Adding a workload: add one :class:`~serverlab.workloadspec.WorkloadSpec` to :data:`WORKLOADS` and its Flask
route in ``app/labapp/__init__.py``. The locustfile generates its user class and Locust
options from the spec, the experiment validator accepts its name and parameters, the
verifier checks its status and headers, and the report shows its rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Mapping

from serverlab.workloadspec import Bound, Character, WorkloadSpec

# ---------------------------------------------------------------------------------------
# Units


#: Microseconds per millisecond and per second (latencies are recorded in µs).
US_PER_MS = 1_000
US_PER_S = 1_000_000
#: Milliseconds per second.
MS_PER_S = 1_000
#: The unit of every latency histogram and of ``*_us`` figures.
LATENCY_UNIT = "microseconds"
#: The unit of throughput: requests per second.
THROUGHPUT_UNIT = "RPS"


# ---------------------------------------------------------------------------------------
# Load modes, worker models, bottleneck classes, cell statuses, workload characters


class Mode(StrEnum):
    """How the load generator offers load (the field's closed and open models).

    * ``closed``: each Locust user waits for its response, then sends the next request;
      load levels are user counts.
    * ``open``: requests arrive on a fixed schedule whether or not earlier ones returned;
      load levels are target rates (RPS).
    * ``requests``: closed, but the run ends after a fixed number of responses; load
      levels are request counts.
    """

    CLOSED = "closed"
    OPEN = "open"
    REQUESTS = "requests"

    @property
    def level_key(self) -> str:
        """The experiment-file key that lists this mode's load levels (``users``, ``rates``, ``requests``)."""
        return _LEVEL_KEYS[self]

    @property
    def level_unit(self) -> str:
        """What one load level counts, after a number: ``users``, ``target RPS`` or ``requests``
        (:data:`LEVEL_NAMES`)."""
        return LEVEL_NAMES[self].unit

    @property
    def level_range(self) -> tuple[int, int]:
        """The inclusive range an experiment's load levels must lie in for this mode."""
        return _LEVEL_RANGES[self]


_LEVEL_KEYS = {Mode.CLOSED: "users", Mode.OPEN: "rates", Mode.REQUESTS: "requests"}
_LEVEL_RANGES = {Mode.CLOSED: (1, 1000), Mode.OPEN: (1, 100_000), Mode.REQUESTS: (1, 1_000_000)}


@dataclass(frozen=True)
class LevelNames:
    """What one load level of a mode is called: after a number (``unit``: ``"64 users"``), as a
    table column (``column``) and on a chart axis (``axis``)."""

    unit: str
    column: str
    axis: str


#: The load level's names per mode, for every message, table, chart and label (the one table of them).
LEVEL_NAMES = {
    Mode.CLOSED: LevelNames("users", "users", "concurrent users"),
    Mode.OPEN: LevelNames(f"target {THROUGHPUT_UNIT}", f"target {THROUGHPUT_UNIT}", f"target {THROUGHPUT_UNIT}"),
    Mode.REQUESTS: LevelNames("requests", "requests (users)", "requests"),
}
#: Every mode's value, in the order reports list them: ``("closed", "open", "requests")``.
MODES = tuple(mode.value for mode in Mode)
#: The workload wrk calibrates and the concurrency (wrk connections, Locust users) it does so at:
#: wrk's ceiling is evidence only for this workload (:mod:`serverlab.calibration`, :mod:`serverlab.report.ranking`).
CALIBRATION_WORKLOAD = "hello"


def calibrated_workload(calibration: Mapping[str, Any] | None) -> str:
    """The workload a calibration (a report row's ``calibration`` figures) ran wrk on: the one it
    recorded (an app's first GET request), else :data:`CALIBRATION_WORKLOAD`."""
    return (calibration or {}).get("workload") or CALIBRATION_WORKLOAD
CALIBRATION_CONNECTIONS = 32
#: The headers every request of the lab's generators carries besides ``Host``, so that Locust and
#: wrk send the same request (tests/test_request_equivalence.py captures both). Left alone, Locust's
#: FastHttpUser sends ``User-Agent: python/gevent-http-client-<version>`` and ``Accept-Encoding:
#: gzip, deflate, br``, wrk only ``Host``. No server here compresses, so ``identity`` says what is sent.
REQUEST_HEADERS = {"User-Agent": "serverlab", "Accept-Encoding": "identity"}


class WorkerModel(StrEnum):
    """A server variant's concurrency model, in the field's terms.

    ``single``: one process, one request at a time; ``threaded``: one process, a thread
    per request; ``multi-process``: pre-forked single-threaded workers; ``process-thread``:
    workers with thread pools; ``gevent``: workers with greenlets (cooperative I/O);
    ``asgi``: an ASGI server's event loop per worker, handing the WSGI app to an adapter's
    thread pool (asgiref's ``WsgiToAsgi``: the threads are the adapter's, not the server's).
    """

    SINGLE = "single"
    THREADED = "threaded"
    MULTI_PROCESS = "multi-process"
    PROCESS_THREAD = "process-thread"
    GEVENT = "gevent"
    ASGI = "asgi"


class BottleneckClass(StrEnum):
    """What limited a measured cell (see :mod:`serverlab.bottleneck` for the rules).

    ``server-bound``: the server used (nearly) all its CPU budget; ``generator-bound``:
    a load-generator process was saturated, so the figure is a floor; ``below-saturation``:
    neither (users waiting on latency); ``interference``: another program used the CPUs.
    """

    SERVER_BOUND = "server-bound"
    GENERATOR_BOUND = "generator-bound"
    BELOW_SATURATION = "below-saturation"
    INTERFERENCE = "interference"


class CellStatus(StrEnum):
    """How a cell ended: ``ok`` (measured), ``failed`` (the server failed or crashed),
    ``unverified`` (the server answered wrongly before any load)."""

    OK = "ok"
    FAILED = "failed"
    UNVERIFIED = "unverified"


# ---------------------------------------------------------------------------------------
# Latency recording


@dataclass(frozen=True)
class HdrSettings:
    """The range and precision of an HDR histogram of latencies.

    Histograms merge exactly only when they share these settings, so every recorder
    (the locustfile) and every reader (:mod:`serverlab.stats`) uses :data:`HDR`.

    :param lowest_us: the smallest value tracked (µs, ``>= 1``).
    :param highest_us: the largest value tracked (µs).
    :param significant_digits: decimal digits of precision (3: 0.1% resolution).
    """

    lowest_us: int
    highest_us: int
    significant_digits: int

    def clamp(self, us: int) -> int:
        """Return ``us`` limited to ``lowest_us..highest_us`` (values outside are recorded at the edge)."""
        return min(max(us, self.lowest_us), self.highest_us)


#: The lab's latency histograms: 1 µs to 120 s, 3 significant digits.
HDR = HdrSettings(lowest_us=1, highest_us=120_000_000, significant_digits=3)
#: Percentiles reported from the HDR histograms (keys from :func:`percentile_key`).
PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)


def percentile_key(p: float) -> str:
    """Return the key a percentile is stored under: ``50.0 -> "p50"``, ``99.9 -> "p99.9"``."""
    return "p" + (f"{p:g}")


# ---------------------------------------------------------------------------------------
# Load generator <-> orchestrator


#: The port every server variant listens on inside its container (compose services answer
#: on ``http://<variant>:8000``).
APP_PORT = 8000
#: Environment variable: the folder where each Locust process writes its ``hdr-*.json``.
HDR_DIR_ENV = "SERVERLAB_HDR_DIR"
#: File-name prefix of those per-process dumps (``hdr-<host>-<pid>.json``).
HDR_FILE_PREFIX = "hdr-"
#: An open-model send this much later than scheduled counts as late (seconds).
LATE_SEND_S = 0.005
#: The locustfile's own options (besides one per workload parameter).
WARMUP_OPTION = "--warmup-seconds"
MAX_REQUESTS_OPTION = "--max-requests"
OPEN_RATE_OPTION = "--open-rate"


# ---------------------------------------------------------------------------------------
# Workloads


#: ``/cpu?n=`` and ``/mixed?n=``: how many Fibonacci numbers to compute. The upper bound
#: (20 000 numbers) takes ~55 ms of one core (measured on the 2-core dev machine).
_FIB_HIGH = 20_000
#: ``/io?ms=`` and ``/mixed?ms=``: the longest sleep, in milliseconds.
_SLEEP_HIGH_MS = 10_000

#: Every workload, by name, in the order reports list them.
WORKLOADS: dict[str, WorkloadSpec] = {
    spec.name: spec
    for spec in (
        WorkloadSpec("hello", "/", content_type="text/html; charset=utf-8",
                     summary='GET / "Hello, World!": the server\'s own per-request overhead',
                     character=Character.OVERHEAD),
        WorkloadSpec("json", "/json", summary="GET /json: a small JSON document", character=Character.OVERHEAD),
        # The default n, 1000, is the workload quoted by Flask threading articles.
        WorkloadSpec("cpu", "/cpu", (Bound("n", 1000, 1, _FIB_HIGH, "Fibonacci numbers"),),
                     summary="GET /cpu?n=: the first n Fibonacci numbers, CPU-bound (holds the GIL)",
                     character=Character.CPU),
        # A stand-in for a database call.
        WorkloadSpec("io", "/io", (Bound("ms", 50, 0, _SLEEP_HIGH_MS, "milliseconds"),),
                     summary="GET /io?ms=: sleeps ms milliseconds, I/O-bound (releases the GIL)",
                     character=Character.IO),
        WorkloadSpec("mixed", "/mixed", (Bound("n", 500, 1, _FIB_HIGH, "Fibonacci numbers"),
                                         Bound("ms", 20, 0, _SLEEP_HIGH_MS, "milliseconds")),
                     summary="GET /mixed: some CPU, then some waiting", character=Character.MIXED),
        # io as Flask's async view (flask[async]): `await asyncio.sleep`, the same bounds as io. Flask
        # runs each such request in an event loop of its own, inside the worker thread that took it.
        WorkloadSpec("io-async", "/io-async", (Bound("ms", 50, 0, _SLEEP_HIGH_MS, "milliseconds"),),
                     summary="GET /io-async?ms=: an async def view awaiting asyncio.sleep(ms), I/O-bound",
                     character=Character.IO),
    )
}
#: The workload the Locust web UI ticks by default and calibration runs.
DEFAULT_WORKLOAD = "hello"


# ---------------------------------------------------------------------------------------
# The user's own app's requests (``[[requests]]`` in an experiment)


#: The workload name of an experiment's weighted mix of all its ``[[requests]]``.
MIX_WORKLOAD = "mix"
#: The Locust user class that sends an experiment's declared requests (the locustfile
#: defines it when :data:`REQUESTS_ENV` is set).
REQUESTS_USER_CLASS = "RequestsUser"
#: Environment variable: the requests of one cell's workload, a JSON list of
#: ``{"name", "method", "path", "headers", "body", "weight", "status"}`` objects.
REQUESTS_ENV = "SERVERLAB_REQUESTS"
#: Environment variable: ``"1"`` when the server closes every connection after its response
#: (a variant declared without keep-alive). The declared requests then say
#: ``Connection: close``, so the client never sends a request (a POST cannot be retried) on a
#: connection the server is closing; the server's own behaviour is the same either way.
SERVER_CLOSES_ENV = "SERVERLAB_SERVER_CLOSES"
