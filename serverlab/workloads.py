"""The workloads an experiment can name, and how to check a server answers them correctly.

Each workload is declared once, as a :class:`serverlab.workloadspec.WorkloadSpec`: its request
path, Locust user class and parameter bounds, which the app enforces too, so that an
experiment file is validated against the same ranges the server enforces.
"""

from __future__ import annotations

import http.client
import json
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import urlsplit

from labapp import workloads as app_workloads
from serverlab import LabError
from serverlab.requestmix import RequestSpec, RequestVerificationError, RequestWorkload, calibration_request, verify_requests
from serverlab.terms import WORKLOADS
from serverlab.workloadspec import WorkloadSpec


class VerificationError(LabError):
    """A server answered a workload request wrongly (status, headers or body)."""



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
        raise VerificationError(f"did not sleep {params['ms']} ms: {data!r:.120}")


def _expect_mixed(body: bytes, params: Mapping[str, int]) -> None:
    data = json.loads(body)
    expected = app_workloads.fibonacci_digest(params["n"])
    if data.get("sha256") != expected["sha256"] or data.get("slept_ms", -1) < params["ms"] * 0.9:
        raise VerificationError(f"unexpected /mixed answer {data!r:.160}")


#: Body checks by workload name; a workload without one gets the status and header checks.
_CHECKS: dict[str, Callable[[bytes, Mapping[str, int]], None]] = {
    "hello": _expect_hello,
    "json": _expect_json_doc,
    "cpu": _expect_cpu,
    "io": _expect_io,
    "io-async": _expect_io,
    "mixed": _expect_mixed,
}


def verify(base_url: str, workload: WorkloadSpec, params: Mapping[str, int], timeout: float = 10.0) -> dict[str, Any]:
    """Check a server answers ``workload`` correctly before it is loaded.

    Checks status 200, ``Content-Type``, that ``Content-Length`` equals the body
    length, and, for the workloads this module has a body check for, the body itself
    (for ``cpu``, the digest is recomputed here). Any other workload gets the status and
    header checks.

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
    check = _CHECKS.get(workload.name)  # a workload without a body check gets the checks above only
    try:
        if check is not None:
            check(body, params)
    except VerificationError as err:
        raise VerificationError(f"{where}: {err}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise VerificationError(f"{where}: malformed body ({err!r})") from None
    return {"status": status, "content_type": content_type, "content_length": len(body), "keep_alive_header": not will_close}


def verify_workload(base_url: str, workload: WorkloadSpec | RequestWorkload, params: Mapping[str, int],
                    timeout: float = 10.0) -> dict[str, Any]:
    """:func:`verify` a demo workload, or send each declared request of a
    :class:`~serverlab.requestmix.RequestWorkload` once for its expected status
    (:func:`~serverlab.requestmix.verify_requests`).

    :return: what was observed (see those functions).
    :raises VerificationError: describing the first wrong answer (for a declared request:
        its status, the expected one and an excerpt of the body).
    """
    if isinstance(workload, RequestWorkload):
        try:
            return verify_requests(base_url, workload, timeout)
        except RequestVerificationError as err:
            raise VerificationError(str(err)) from None
    return verify(base_url, workload, params, timeout)


def calibration_target(requests: Sequence[RequestSpec]) -> tuple[WorkloadSpec | RequestWorkload, str, list[str]] | None:
    """What wrk and Locust calibrate on: ``hello`` (``/``) for the demo's workloads, else the
    first GET request of ``requests`` alone.

    :return: ``(workload, path, wrk header arguments)``, e.g. ``(index, "/", ["-H", "Accept: text/html"])``,
        or ``None`` when the declared requests have no GET (wrk sends GETs only).
    """
    if not requests:
        return WORKLOADS["hello"], "/", []
    first = calibration_request(requests)
    if first is None:
        return None
    headers = [item for name, value in first.headers for item in ("-H", f"{name}: {value}")]
    return RequestWorkload(first.name, (first,)), first.path, headers
