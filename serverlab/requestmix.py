"""An app's own endpoints as the workload: the ``[[requests]]`` of an experiment.

Each request has a name, a method, a path, optional headers and body, a weight and the
status a correct answer has::

    [[requests]]
    name = "index"           # lower-case letters, digits and '-'
    method = "GET"           # default GET
    path = "/"
    weight = 3               # its share of the mix (default 1)
    status = 200             # expected status (default 200)

    [[requests]]
    name = "create"
    method = "POST"
    path = "/api/posts"
    headers = { Content-Type = "application/json" }
    body = '{"title": "hello", "body": "from the lab"}'   # a string, or a table (sent as JSON)
    status = 201

Such an experiment needs no ``workloads``: its workloads are the weighted mix of every
request (:data:`serverlab.terms.MIX_WORKLOAD`, when there are two or more) and each
request on its own, so the report has a section per request and one for the mix. Before
every cell each request of the cell's workload is sent once and must answer its status
(:func:`verify_requests`); wrk calibrates on the first GET request (:func:`calibration_request`).
"""

from __future__ import annotations

import http.client
import json
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence
from urllib.parse import urlsplit

from serverlab import LabError
from serverlab.terms import MIX_WORKLOAD, REQUESTS_ENV, REQUESTS_USER_CLASS

#: Methods a request may use.
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
#: At most this many requests per experiment; each is one more cell per variant and level.
MAX_REQUESTS = 20
#: The largest body a request may send (bytes), as the demo app's own limit.
MAX_BODY_BYTES = 1 << 20
#: Characters of a wrong answer's body shown in the unverified cell's error.
BODY_EXCERPT_CHARS = 160
#: The path the lab answers itself in front of a user's app (see :mod:`labapp.appshim`).
RESERVED_PATHS = ("/healthz",)
_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
_HEADER = re.compile(r"[A-Za-z0-9-]{1,64}")
_KEYS = {"name", "method", "path", "headers", "body", "weight", "status"}


class RequestError(LabError):
    """A ``[[requests]]`` entry is malformed; the message names the file, the entry and the key."""


class RequestVerificationError(LabError):
    """A declared request answered another status than expected, or no answer at all."""


@dataclass(frozen=True)
class RequestSpec:
    """One declared request of the app.

    :param name: its name in reports (``[a-z0-9-]``, at most 40 characters).
    :param method: one of :data:`METHODS`.
    :param path: the path with any query string, starting with ``/``.
    :param headers: ``(name, value)`` pairs sent with it.
    :param body: the body sent (UTF-8 text) or ``None``.
    :param weight: its share of the mix, 1..1000.
    :param status: the status a correct answer has, 100..599.
    """

    name: str
    path: str
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: str | None = None
    weight: int = 1
    status: int = 200

    def to_json(self) -> dict[str, Any]:
        """The request as the locustfile reads it from :data:`serverlab.terms.REQUESTS_ENV`."""
        return {"name": self.name, "method": self.method, "path": self.path, "headers": dict(self.headers),
                "body": self.body, "weight": self.weight, "status": self.status}

    def describe(self) -> str:
        """One line: ``GET / → 200 (weight 3)``."""
        return f"{self.method} {self.path} → {self.status} (weight {self.weight})"


@dataclass(frozen=True)
class RequestWorkload:
    """A workload made of declared requests: the mix of all of them, or one alone.

    Duck-typed like :class:`serverlab.workloadspec.WorkloadSpec` where the load plan needs it
    (:meth:`locust_args`, :meth:`url_path`, :attr:`user_class`).

    :param name: :data:`serverlab.terms.MIX_WORKLOAD` or the request's name.
    :param requests: the requests it sends, chosen by weight.
    """

    name: str
    requests: tuple[RequestSpec, ...]

    @property
    def path(self) -> str:
        """The first request's path (for messages)."""
        return self.requests[0].path

    @property
    def user_class(self) -> str:
        """The Locust user class that sends declared requests."""
        return REQUESTS_USER_CLASS

    @property
    def summary(self) -> str:
        """One line for listings and reports."""
        return "; ".join(f"{r.name}: {r.describe()}" for r in self.requests)

    def url_path(self, params: Mapping[str, int] | None = None) -> str:
        """The first request's path (declared requests take no workload parameters)."""
        return self.path

    def locust_args(self, params: Mapping[str, int] | None = None) -> list[str]:
        """Locust's trailing arguments: the user class (the requests travel in :meth:`environment`)."""
        return [REQUESTS_USER_CLASS]

    def environment(self) -> dict[str, str]:
        """``{REQUESTS_ENV: <JSON list of this workload's requests>}`` for the Locust processes."""
        return {REQUESTS_ENV: json.dumps([r.to_json() for r in self.requests], sort_keys=True)}


def request_workloads(requests: Sequence[RequestSpec]) -> dict[str, RequestWorkload]:
    """The workloads of declared requests: the mix (two or more requests) first, then each alone.

    :return: workload name -> workload, in report order.
    """
    workloads: dict[str, RequestWorkload] = {}
    if len(requests) > 1:
        workloads[MIX_WORKLOAD] = RequestWorkload(MIX_WORKLOAD, tuple(requests))
    for request in requests:
        workloads[request.name] = RequestWorkload(request.name, (request,))
    return workloads


def _fail(where: str, key: str, value: Any, expected: str) -> RequestError:
    return RequestError(f"{where}: key {key!r} = {value!r} is invalid; expected {expected}")


def _one_request(where: str, entry: Any) -> RequestSpec:
    if not isinstance(entry, dict):
        raise RequestError(f"{where}: must be a table ([[requests]] with name, method, path ...), got {entry!r}")
    for key in entry:
        if key not in _KEYS:
            raise RequestError(f"{where}: unknown key {key!r}; valid: {', '.join(sorted(_KEYS))}")
    name = entry.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name == MIX_WORKLOAD:
        raise _fail(where, "name", name, f"lower-case letters, digits and '-', at most 40, not {MIX_WORKLOAD!r}")
    method = entry.get("method", "GET")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise _fail(where, "method", method, f"one of {', '.join(METHODS)}")
    path = entry.get("path")
    if not isinstance(path, str) or not path.startswith("/") or any(c in path for c in " \r\n\t") or len(path) > 2000:
        raise _fail(where, "path", path, "a path starting with '/', without spaces, at most 2000 characters")
    if urlsplit(path).path in RESERVED_PATHS:
        raise _fail(where, "path", path, f"another path: the lab answers {urlsplit(path).path} itself (its health check)")
    headers = entry.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(k, str) and _HEADER.fullmatch(k) and isinstance(v, str)
                                                and "\n" not in v and "\r" not in v for k, v in headers.items()):
        raise _fail(where, "headers", headers, "a table of header names to string values")
    body = entry.get("body")
    if isinstance(body, dict):
        body = json.dumps(body)
        if not any(k.lower() == "content-type" for k in headers):
            headers = {**headers, "Content-Type": "application/json"}
    if body is not None and (not isinstance(body, str) or len(body.encode()) > MAX_BODY_BYTES):
        raise _fail(where, "body", body if not isinstance(body, str) else body[:40],
                    f"a string (or a table, sent as JSON) of at most {MAX_BODY_BYTES} bytes")
    weight = entry.get("weight", 1)
    if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= 1000:
        raise _fail(where, "weight", weight, "an integer in 1..1000")
    status = entry.get("status", 200)
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise _fail(where, "status", status, "an HTTP status in 100..599")
    return RequestSpec(name=name, method=method.upper(), path=path, headers=tuple(sorted(headers.items())),
                       body=body, weight=weight, status=status)


def load_requests(source: str, value: Any) -> tuple[RequestSpec, ...]:
    """Validate an experiment's ``[[requests]]`` array.

    :param source: the experiment file, named in errors.
    :param value: the parsed TOML value of ``requests``.
    :return: the requests, in the file's order.
    :raises RequestError: naming the file, the entry, the key, the value and what is valid.
    """
    if not isinstance(value, list) or not value or len(value) > MAX_REQUESTS:
        raise RequestError(f"{source}: key 'requests' must be 1..{MAX_REQUESTS} [[requests]] tables, got {value!r:.80}")
    requests = tuple(_one_request(f"{source}: [[requests]] #{i + 1}", entry) for i, entry in enumerate(value))
    names = [r.name for r in requests]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise RequestError(f"{source}: [[requests]] names must be distinct; repeated: {', '.join(repeated)}")
    return requests


#: The request an app without ``[[requests]]`` is loaded with.
DEFAULT_REQUEST = RequestSpec(name="index", path="/")


def calibration_request(requests: Sequence[RequestSpec]) -> RequestSpec | None:
    """The first GET request (wrk calibrates on it), or ``None`` when there is none."""
    return next((r for r in requests if r.method == "GET"), None)


def _excerpt(body: bytes) -> str:
    text = " ".join(body.decode("utf-8", errors="replace").split())
    return text[:BODY_EXCERPT_CHARS] + ("…" if len(text) > BODY_EXCERPT_CHARS else "")


def verify_requests(base_url: str, workload: RequestWorkload, timeout: float = 10.0) -> dict[str, Any]:
    """Send each of ``workload``'s requests once; each must answer its expected status.

    :param base_url: e.g. ``"http://127.0.0.1:18001"``.
    :return: ``{"status": {name: status}, "content_length": {name: bytes}}`` as observed.
    :raises RequestVerificationError: for the first request that answered another status
        (the status, the expected one and an excerpt of the body) or did not answer.
    """
    parts = urlsplit(base_url)
    seen: dict[str, Any] = {"status": {}, "content_length": {}}
    for request in workload.requests:
        where = f"{request.name} ({request.method} {request.path})"
        conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
        try:
            body = request.body.encode() if request.body is not None else None
            conn.request(request.method, request.path, body=body, headers=dict(request.headers))
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as err:
            raise RequestVerificationError(f"{where}: no valid answer ({err!r})") from None
        finally:
            conn.close()
        if response.status != request.status:
            raise RequestVerificationError(f"{where}: status {response.status}, expected {request.status}; "
                                           f"body: {_excerpt(data)!r}")
        seen["status"][request.name] = response.status
        seen["content_length"][request.name] = len(data)
    return seen
