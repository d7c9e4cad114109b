"""The workloads an experiment can name, and how to check a server answers them correctly.

Each workload maps to one request path of the app, one Locust user class and
the app's own parameter bounds (:mod:`labapp.workloads`), so that an experiment
file is validated against the same ranges the server enforces.
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any, Callable, Mapping
from urllib.parse import urlencode, urlsplit

from labapp import workloads as app_workloads
from labapp.workloads import Bound
from serverlab import LabError


class VerificationError(LabError):
    """A server answered a workload request wrongly (status, headers or body)."""


@dataclass(frozen=True)
class Workload:
    """A named request the lab can load a server with.

    :param name: the name experiments use (``hello``, ``json``, ``cpu``, ``io``, ``mixed``).
    :param path: the request path without query string.
    :param user_class: the Locust user class in ``locustfiles/locustfile.py``.
    :param bounds: the query parameters it takes, by name, with the app's bounds.
    :param locust_options: parameter name -> Locust command-line option carrying it.
    :param content_type: the ``Content-Type`` a correct answer has.
    :param summary: one line for ``--list`` and reports.
    """

    name: str
    path: str
    user_class: str
    bounds: Mapping[str, Bound]
    locust_options: Mapping[str, str]
    content_type: str
    summary: str

    def params(self, overrides: Mapping[str, Any] | None = None) -> dict[str, int]:
        """Return the full parameter set: defaults updated with ``overrides``.

        :raises LabError: naming the parameter and its allowed range if a value is unknown or out of range.
        """
        params = {name: bound.default for name, bound in self.bounds.items()}
        for key, value in (overrides or {}).items():
            if key not in self.bounds:
                valid = ", ".join(self.bounds) or "none"
                raise LabError(f"workload {self.name!r} has no parameter {key!r} (valid: {valid})")
            bound = self.bounds[key]
            if isinstance(value, bool) or not isinstance(value, int) or not bound.low <= value <= bound.high:
                raise LabError(f"workload {self.name!r} parameter {key!r} = {value!r}; allowed: integer {bound.describe()}")
            params[key] = value
        return params

    def url_path(self, params: Mapping[str, int]) -> str:
        """Return the path with its query string, e.g. ``/cpu?n=1000``."""
        return f"{self.path}?{urlencode(dict(params))}" if params else self.path

    def locust_args(self, params: Mapping[str, int]) -> list[str]:
        """Return the Locust options that carry ``params`` plus the user class name."""
        args: list[str] = []
        for key, value in params.items():
            args += [self.locust_options[key], str(value)]
        return [*args, self.user_class]


def _expect_hello(body: bytes, params: Mapping[str, int]) -> None:
    if body != b"Hello, World!":
        raise VerificationError(f"expected body 'Hello, World!', got {body[:80]!r}")


def _expect_json_doc(body: bytes, params: Mapping[str, int]) -> None:
    data = json.loads(body)
    if data.get("message") != "Hello, World!" or data.get("items") != list(range(10)):
        raise VerificationError(f"unexpected /json document {data!r:.120}")


def _expect_cpu(body: bytes, params: Mapping[str, int]) -> None:
    expected = app_workloads.fibonacci_digest(params["n"])
    data = json.loads(body)
    if data != expected:
        raise VerificationError(f"wrong Fibonacci digest for n={params['n']}: {data!r:.160}")


def _expect_io(body: bytes, params: Mapping[str, int]) -> None:
    data = json.loads(body)
    if data.get("ms") != params["ms"] or data.get("slept_ms", -1) < params["ms"] * 0.9:
        raise VerificationError(f"/io did not sleep {params['ms']} ms: {data!r:.120}")


def _expect_mixed(body: bytes, params: Mapping[str, int]) -> None:
    data = json.loads(body)
    expected = app_workloads.fibonacci_digest(params["n"])
    if data.get("sha256") != expected["sha256"] or data.get("slept_ms", -1) < params["ms"] * 0.9:
        raise VerificationError(f"unexpected /mixed answer {data!r:.160}")


_CHECKS: dict[str, Callable[[bytes, Mapping[str, int]], None]] = {
    "hello": _expect_hello,
    "json": _expect_json_doc,
    "cpu": _expect_cpu,
    "io": _expect_io,
    "mixed": _expect_mixed,
}

#: Every workload, by name.
WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("hello", "/", "HelloUser", {}, {}, "text/html; charset=utf-8",
                 'GET / "Hello, World!": the server\'s own per-request overhead'),
        Workload("json", "/json", "JsonUser", {}, {}, "application/json", "GET /json: a small JSON document"),
        Workload("cpu", "/cpu", "CpuUser", {"n": app_workloads.CPU_N}, {"n": "--cpu-n"}, "application/json",
                 "GET /cpu?n=: the first n Fibonacci numbers, CPU-bound (holds the GIL)"),
        Workload("io", "/io", "IoUser", {"ms": app_workloads.IO_MS}, {"ms": "--io-ms"}, "application/json",
                 "GET /io?ms=: sleeps ms milliseconds, I/O-bound (releases the GIL)"),
        Workload("mixed", "/mixed", "MixedUser", {"n": app_workloads.MIXED_N, "ms": app_workloads.MIXED_MS},
                 {"n": "--mixed-n", "ms": "--mixed-ms"}, "application/json", "GET /mixed: some CPU, then some waiting"),
    )
}


def verify(base_url: str, workload: Workload, params: Mapping[str, int], timeout: float = 10.0) -> dict[str, Any]:
    """Check a server answers ``workload`` correctly before it is loaded.

    Checks status 200, ``Content-Type``, that ``Content-Length`` equals the body
    length, and the body itself (for ``cpu``, the digest is recomputed here).

    :param base_url: e.g. ``"http://127.0.0.1:18001"``.
    :return: ``{"status", "content_type", "content_length", "keep_alive_header"}`` as observed
        (``keep_alive_header``: the response did not announce ``Connection: close``).
    :raises VerificationError: describing the first wrong thing seen.
    """
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    try:
        conn.request("GET", workload.url_path(params))
        response = conn.getresponse()
        body = response.read()
        status = response.status
        content_type = response.getheader("Content-Type") or ""
        length = response.getheader("Content-Length")
        will_close = response.will_close
    except OSError as err:
        raise VerificationError(f"GET {workload.url_path(params)}: no answer ({err})") from None
    except http.client.IncompleteRead as err:
        raise VerificationError(f"GET {workload.url_path(params)}: body shorter than its Content-Length ({err!r})") from None
    except http.client.HTTPException as err:
        raise VerificationError(f"GET {workload.url_path(params)}: no valid HTTP answer ({err!r})") from None
    finally:
        conn.close()
    where = f"GET {workload.url_path(params)}"
    if status != 200:
        raise VerificationError(f"{where}: status {status}, expected 200: {body[:120]!r}")
    if content_type.split(";")[0].strip() != workload.content_type.split(";")[0]:
        raise VerificationError(f"{where}: Content-Type {content_type!r}, expected {workload.content_type!r}")
    if length is None or not length.strip().isdigit() or int(length) != len(body):
        raise VerificationError(f"{where}: Content-Length {length!r} but the body has {len(body)} bytes")
    try:
        _CHECKS[workload.name](body, params)
    except VerificationError as err:
        raise VerificationError(f"{where}: {err}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise VerificationError(f"{where}: malformed body ({err!r})") from None
    return {"status": status, "content_type": content_type, "content_length": len(body), "keep_alive_header": not will_close}
