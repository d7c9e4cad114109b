"""The lab's terms, defined once: load modes, worker models, bottleneck classes, cell
statuses, units, HDR histogram settings and the workloads with their bounds.

The Flask app (:mod:`labapp`), the locustfile and serverlab itself all import this
module, so a name, a bound or a setting is written here and nowhere else. It uses the
standard library only and imports nothing from serverlab, so that the app and the
locustfile can import it cheaply (the image ships it under ``/srv/serverlab``).

Every enum is a :class:`~enum.StrEnum`: a member equals its string value
(``Mode.CLOSED == "closed"``), so results files, experiment files and JSON keep the
plain strings they always had.

Adding a workload: add one :class:`WorkloadSpec` to :data:`WORKLOADS` and its Flask
route in ``app/labapp/__init__.py``. The locustfile generates its user class and Locust
options from the spec, the experiment validator accepts its name and parameters, the
verifier checks its status and headers, and the report shows its rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Mapping
from urllib.parse import urlencode

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
        """What one load level counts, for messages: ``users``, ``RPS`` or ``requests``."""
        return _LEVEL_UNITS[self]

    @property
    def level_range(self) -> tuple[int, int]:
        """The inclusive range an experiment's load levels must lie in for this mode."""
        return _LEVEL_RANGES[self]


_LEVEL_KEYS = {Mode.CLOSED: "users", Mode.OPEN: "rates", Mode.REQUESTS: "requests"}
_LEVEL_UNITS = {Mode.CLOSED: "users", Mode.OPEN: THROUGHPUT_UNIT, Mode.REQUESTS: "requests"}
_LEVEL_RANGES = {Mode.CLOSED: (1, 1000), Mode.OPEN: (1, 100_000), Mode.REQUESTS: (1, 1_000_000)}
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


class Bottleneck(StrEnum):
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


class Character(StrEnum):
    """What bounds a workload's cost per request, so reports can explain it by kind.

    ``overhead``: almost no work, the server's per-request overhead dominates; ``cpu``:
    CPU work that holds the GIL; ``io``: waiting that releases the GIL; ``mixed``: both.
    """

    OVERHEAD = "overhead"
    CPU = "cpu"
    IO = "io"
    MIXED = "mixed"


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
#: Environment variable: requests in flight at most per open-model Locust user.
OPEN_MAX_IN_FLIGHT_ENV = "SERVERLAB_OPEN_MAX_IN_FLIGHT"
#: Its default when unset.
DEFAULT_OPEN_MAX_IN_FLIGHT = 100
#: An open-model send this much later than scheduled counts as late (seconds).
LATE_SEND_S = 0.005
#: The locustfile's own options (besides one per workload parameter).
WARMUP_OPTION = "--warmup-seconds"
MAX_REQUESTS_OPTION = "--max-requests"
OPEN_RATE_OPTION = "--open-rate"


# ---------------------------------------------------------------------------------------
# Workloads


class WorkloadParameterError(ValueError):
    """A workload parameter is unknown, or not an integer within its bound.

    The message names the workload, the parameter, the value and the allowed range.
    """


@dataclass(frozen=True)
class Bound:
    """An inclusive integer range for one request parameter.

    :param name: the query/JSON parameter name, e.g. ``"n"``.
    :param default: the value used when the parameter is absent.
    :param low: the smallest allowed value.
    :param high: the largest allowed value.
    :param unit: what the number counts, shown in error messages.
    """

    name: str
    default: int
    low: int
    high: int
    unit: str

    def describe(self) -> str:
        """Return ``"<low>..<high> <unit>"`` for error messages."""
        return f"{self.low}..{self.high} {self.unit}"

    def allows(self, value: Any) -> bool:
        """Return whether ``value`` is an ``int`` (not a ``bool``) within ``low..high``."""
        return isinstance(value, int) and not isinstance(value, bool) and self.low <= value <= self.high


_IDENTIFIER = re.compile(r"[a-z][a-z0-9]*")
#: A workload name: lower-case words of letters and digits, joined by single hyphens (``io-async``).
_WORKLOAD_NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z][a-z0-9]*)*")


@dataclass(frozen=True)
class WorkloadSpec:
    """A named request the lab can load a server with: everything the app, the
    locustfile, the experiment validator, the verifier and the report need to know.

    The Locust user class (``<Name>User``) and one Locust option per parameter
    (``--<workload>-<param>``) are derived from the names, so they cannot drift.

    :param name: the name experiments use, lower-case letters and digits, words joined by
        single hyphens (``"cpu"``, ``"io-async"``).
    :param path: the request path without query string (``"/cpu"``).
    :param parameters: the query parameters it takes, each with its bound and default.
    :param content_type: the ``Content-Type`` a correct answer has.
    :param summary: one line for ``--list`` and reports.
    :param character: what bounds its cost per request.
    :raises ValueError: if the name or a parameter name is not a lower-case identifier,
        the path does not start with ``/``, or a default lies outside its bound.
    """

    name: str
    path: str
    parameters: tuple[Bound, ...] = ()
    content_type: str = "application/json"
    summary: str = ""
    character: Character = Character.OVERHEAD
    _bounds: Mapping[str, Bound] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _WORKLOAD_NAME.fullmatch(self.name):
            raise ValueError(f"workload name {self.name!r} must be lower-case letters and digits "
                             f"(words joined by single hyphens, e.g. 'io-async')")
        if not self.path.startswith("/"):
            raise ValueError(f"workload {self.name!r}: path {self.path!r} must start with '/'")
        for bound in self.parameters:
            if not _IDENTIFIER.fullmatch(bound.name):
                raise ValueError(f"workload {self.name!r}: parameter name {bound.name!r} must be lower-case letters and digits")
            if not bound.allows(bound.default):
                raise ValueError(f"workload {self.name!r}: default {bound.default} of {bound.name!r} is outside {bound.describe()}")
        object.__setattr__(self, "_bounds", MappingProxyType({bound.name: bound for bound in self.parameters}))

    @property
    def bounds(self) -> Mapping[str, Bound]:
        """The parameters by name (read-only)."""
        return self._bounds

    @property
    def user_class(self) -> str:
        """The name of its Locust user class, e.g. ``"CpuUser"``, ``"IoAsyncUser"`` (generated by the locustfile)."""
        return "".join(word.capitalize() for word in self.name.split("-")) + "User"

    @property
    def locust_options(self) -> dict[str, str]:
        """Parameter name -> the Locust option carrying it, e.g. ``{"n": "--cpu-n"}``."""
        return {name: f"--{self.name}-{name}" for name in self.bounds}

    @staticmethod
    def option_dest(option: str) -> str:
        """The attribute a Locust option lands on in ``parsed_options``: ``"--cpu-n" -> "cpu_n"``,
        ``"--io-async-ms" -> "io_async_ms"``."""
        return option.lstrip("-").replace("-", "_")

    def option_values(self, options: Any) -> dict[str, int]:
        """Read this workload's parameters from parsed Locust options (``options.cpu_n`` ...).

        :param options: Locust's ``environment.parsed_options`` (any object with the attributes).
        :return: parameter name -> value, e.g. ``{"n": 1000}``.
        :raises AttributeError: if an option was not added to Locust's parser.
        """
        return {name: getattr(options, self.option_dest(option)) for name, option in self.locust_options.items()}

    def default_params(self) -> dict[str, int]:
        """Return every parameter at its default, e.g. ``{"n": 1000}``."""
        return {name: bound.default for name, bound in self.bounds.items()}

    def params(self, overrides: Mapping[str, Any] | None = None) -> dict[str, int]:
        """Return the full parameter set: the defaults updated with ``overrides``.

        :raises WorkloadParameterError: naming the parameter and its allowed range if a
            key is unknown or a value is not an integer within its bound.
        """
        params = self.default_params()
        for key, value in (overrides or {}).items():
            if key not in self.bounds:
                valid = ", ".join(self.bounds) or "none"
                raise WorkloadParameterError(f"workload {self.name!r} has no parameter {key!r} (valid: {valid})")
            bound = self.bounds[key]
            if not bound.allows(value):
                raise WorkloadParameterError(
                    f"workload {self.name!r} parameter {key!r} = {value!r}; allowed: integer {bound.describe()}")
            params[key] = value
        return params

    def url_path(self, params: Mapping[str, int]) -> str:
        """Return the path with its query string, e.g. ``/cpu?n=1000``."""
        return f"{self.path}?{urlencode(dict(params))}" if params else self.path

    def locust_args(self, params: Mapping[str, int]) -> list[str]:
        """Return the Locust options that carry ``params`` plus the user class name,
        e.g. ``["--cpu-n", "1000", "CpuUser"]``."""
        options = self.locust_options
        args: list[str] = []
        for key, value in params.items():
            args += [options[key], str(value)]
        return [*args, self.user_class]


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
