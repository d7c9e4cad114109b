"""labapp: the one Flask application every server variant of serverlab serves.

Use :func:`create_app` (the Flask factory pattern); ``labapp.wsgi:app`` is the
WSGI entry point the servers load, ``labapp.asgi:app`` the same app behind asgiref's
``WsgiToAsgi`` for the ASGI servers.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
import threading
import uuid
from collections import OrderedDict
from importlib import metadata
from typing import Any, Mapping

from flask import Flask, current_app, jsonify, request
from werkzeug.exceptions import BadRequest, ClientDisconnected, HTTPException, LengthRequired, RequestEntityTooLarge

from serverlab.terms import WORKLOADS
from serverlab.workloadspec import Bound, WorkloadSpec

from . import selfreport, workloads
from .body import REFUSAL_KEY, ChunkedBodies

#: Environment variables the launcher (:mod:`labapp.serve`) sets so that
#: ``/lab/info`` can say which variant and worker model served a request.
INFO_ENV = {
    "variant": "SERVERLAB_VARIANT",
    "server": "SERVERLAB_SERVER",
    "worker_model": "SERVERLAB_MODEL",
    "workers": "SERVERLAB_WORKERS",
    "threads": "SERVERLAB_THREADS",
    "keep_alive": "SERVERLAB_KEEP_ALIVE",
}
#: Packages whose versions ``/lab/info`` reports.
REPORTED_PACKAGES = ("flask", "werkzeug", "gunicorn", "pyuwsgi", "gevent", "waitress", "granian", "uvicorn", "asgiref",
                     "locust", "hdrhistogram")
#: At most this many background jobs are remembered; older finished ones are dropped.
MAX_BACKGROUND_JOBS = 1000
#: At most this many background jobs may run at once (a 429 beyond that).
MAX_RUNNING_BACKGROUND_JOBS = 32
#: The largest request body any endpoint reads, in bytes (1 MiB; the largest body the lab
#: needs is a few bytes of JSON). Larger bodies get 413 before a byte of them is read.
MAX_BODY_BYTES = 1 << 20
#: An integer parameter: optional sign, 1-12 ASCII digits (checked before ``int()``).
_INTEGER = re.compile(r"[+-]?[0-9]{1,12}")


class BodyError(BadRequest):
    """A request body that cannot be used: undecodable, malformed or too deeply nested
    JSON, a JSON value that is not an object, or a broken chunked transfer encoding.

    Rendered as HTTP 400 with ``{"error", "status"}``.
    """


def json_object_body() -> dict[str, Any] | None:
    """Read the request's JSON body as an object, within :data:`MAX_BODY_BYTES`.

    :return: the decoded object, or ``None`` when the request does not declare a JSON
        body (no ``application/json`` content type): such a body is never read.
    :raises RequestEntityTooLarge: (413) if the body is longer than the app's
        ``MAX_CONTENT_LENGTH`` (declared; a chunked body over it is refused before the
        view runs, by :class:`labapp.body.ChunkedBodies`).
    :raises BodyError: (400) if the body is cut short, its chunked encoding is broken,
        or it is not one JSON object (bad bytes, bad syntax, nesting beyond Python's
        recursion limit).
    """
    if not request.is_json:
        return None
    try:
        raw = request.get_data(cache=True)
    except ClientDisconnected:  # Werkzeug's input stream: cut short, or a broken chunk it reported
        raise BodyError("the request body could not be read: cut short or badly chunked") from None
    except HTTPException:  # 413 over the limit
        raise
    except Exception as err:
        # What the server's input stream raises for a broken body differs per server:
        # Werkzeug's dev server an OSError ("Invalid chunk header"), Gunicorn its
        # ParseException subclasses (InvalidChunkSize, ChunkMissingTerminator) or
        # NoMoreData. All of them are the client's fault: 400, never 500.
        raise BodyError(f"the request body could not be read ({type(err).__name__}: {str(err)[:80]})") from None
    try:
        body = json.loads(raw)
    except RecursionError:
        raise BodyError("the JSON body is nested too deeply") from None
    except ValueError as err:  # includes UnicodeDecodeError and JSONDecodeError
        raise BodyError(f"the body is not valid JSON: {str(err)[:100]}") from None
    if not isinstance(body, dict):
        raise BodyError(f"the JSON body must be an object, got {type(body).__name__}")
    return body


class ParameterError(ValueError):
    """A request parameter is missing its form or out of its allowed range.

    Rendered as HTTP 400 with ``{"error", "parameter", "allowed", "value"}``.
    """

    def __init__(self, bound: Bound, value: str) -> None:
        super().__init__(f"parameter {bound.name!r} must be an integer in {bound.describe()}, got {value!r}")
        self.bound = bound
        self.value = value


def int_param(bound: Bound, source: Mapping[str, Any] | None = None) -> int:
    """Read one bounded integer parameter from the query string (or ``source``).

    :param bound: the parameter's name, default and inclusive range.
    :param source: a mapping to read from; the request's query args by default.
    :return: the value, within ``bound``.
    :raises ParameterError: if the value is not a decimal integer or out of range.
    """
    args = request.args if source is None else source
    raw = args.get(bound.name)
    if raw is None:
        return bound.default
    text = str(raw).strip()
    # ASCII digits only, and bounded before int(): a 100 000-digit string must not cost CPU.
    if not _INTEGER.fullmatch(text):
        raise ParameterError(bound, str(raw)[:40])
    value = int(text)
    if not bound.low <= value <= bound.high:
        raise ParameterError(bound, text)
    return value


def workload_params(spec: WorkloadSpec) -> dict[str, int]:
    """Read every parameter of a workload from the query string, in the spec's order.

    :param spec: the workload, from :data:`serverlab.terms.WORKLOADS`.
    :return: parameter name -> value (its default when absent), e.g. ``{"n": 1000}``.
    :raises ParameterError: for the first value that is not a decimal integer within its bound.
    """
    return {name: int_param(bound) for name, bound in spec.bounds.items()}


def package_versions() -> dict[str, str | None]:
    """Return the installed version of each of :data:`REPORTED_PACKAGES` (``None`` if absent).

    Used by ``/lab/info``, by run headers, and (inside the image) by the Docker backend.
    """
    versions: dict[str, str | None] = {}
    for name in REPORTED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


class BackgroundJobs:
    """Jobs started by ``POST /background``, run on threads inside an app context.

    Thread-safe; keeps at most :data:`MAX_BACKGROUND_JOBS` records (per worker
    process: each process of a multi-process server has its own jobs).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def running(self) -> int:
        """Return how many jobs are queued or running now."""
        with self._lock:
            return self._running_locked()

    def _running_locked(self) -> int:
        return sum(1 for job in self._jobs.values() if job["state"] in ("queued", "running"))

    def start(self, app: Flask, ms: int, max_running: int | None = None) -> dict[str, Any] | None:
        """Start a job that sleeps ``ms`` milliseconds on a new thread.

        The cap check and the admission happen under one lock, so no flood of
        concurrent requests can start more than ``max_running`` jobs.

        :param max_running: refuse when this many jobs are already queued or running
            (``None``: no cap).
        :return: a copy of the job record (``id``, ``state``, ``ms``, ``pid``), or
            ``None`` when refused by the cap.
        """
        job_id = uuid.uuid4().hex
        job = {"id": job_id, "state": "queued", "ms": ms, "pid": os.getpid(), "result": None}
        with self._lock:
            if max_running is not None and self._running_locked() >= max_running:
                return None
            self._jobs[job_id] = job
            while len(self._jobs) > MAX_BACKGROUND_JOBS:
                oldest = next(iter(self._jobs))
                if self._jobs[oldest]["state"] in ("queued", "running"):
                    break
                self._jobs.popitem(last=False)
        thread = threading.Thread(target=self._run, args=(app, job_id, ms), daemon=True)
        thread.start()
        return dict(job)

    def _run(self, app: Flask, job_id: str, ms: int) -> None:
        with app.app_context():
            self._set(job_id, state="running")
            slept = workloads.sleep_ms(ms)
            self._set(job_id, state="done", result={"slept_ms": round(slept, 3), "app": current_app.name})

    def _set(self, job_id: str, **fields: Any) -> None:
        with self._lock:
            if job_id in self._jobs:
                self._jobs[job_id].update(fields)

    def get(self, job_id: str) -> dict[str, Any] | None:
        """Return a copy of one job's record, or ``None`` if unknown."""
        with self._lock:
            job = self._jobs.get(job_id)
            return dict(job) if job else None


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Create the lab's Flask application.

    :param test_config: config values that override the defaults and the
        ``LABAPP_``-prefixed environment variables.
    :return: the application; the debugger is never enabled.
    """
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.config.from_prefixed_env("LABAPP")
    if test_config:
        app.config.update(test_config)
    app.config["DEBUG"] = False  # the Werkzeug debugger is remote code execution
    app.json.sort_keys = True
    # Chunked bodies are read (within the limit) before Flask sees the request: see labapp.body.
    app.wsgi_app = ChunkedBodies(app.wsgi_app, lambda: app.config["MAX_CONTENT_LENGTH"])  # type: ignore[method-assign]
    jobs = BackgroundJobs()
    app.extensions["labapp.jobs"] = jobs
    versions = package_versions()

    @app.errorhandler(ParameterError)
    def _bad_parameter(err: ParameterError):
        body = {
            "error": str(err),
            "parameter": err.bound.name,
            "allowed": {"min": err.bound.low, "max": err.bound.high, "unit": err.bound.unit},
            "value": err.value,
        }
        return jsonify(body), 400

    @app.before_request
    def _refuse_large_bodies():
        # Every route, before any body is read: a declared length over the limit is 413
        # even where the view would ignore the body; so is a chunked body found over it
        # by labapp.body.ChunkedBodies, which also reports broken chunking (400).
        refusal = request.environ.get(REFUSAL_KEY)
        if refusal:
            status, message = refusal
            if status == 413:
                raise RequestEntityTooLarge()
            if status == 411:
                raise LengthRequired(message)
            raise BodyError(message)
        limit = request.max_content_length
        if limit is not None and (request.content_length or 0) > limit:
            raise RequestEntityTooLarge()

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(err):
        limit = request.max_content_length
        body = {"error": f"the request body is larger than the limit of {limit} bytes", "limit_bytes": limit,
                "status": 413}
        return jsonify(body), 413

    @app.errorhandler(BadRequest)
    @app.errorhandler(LengthRequired)
    @app.errorhandler(404)
    @app.errorhandler(405)
    def _http_error(err: HTTPException):
        return jsonify({"error": err.description, "status": err.code}), err.code

    # The measured workloads: paths and parameter bounds from serverlab.terms.WORKLOADS.
    @app.get(WORKLOADS["hello"].path)
    def hello():
        return "Hello, World!"

    @app.get(WORKLOADS["json"].path)
    def json_doc():
        return jsonify(message="Hello, World!", items=list(range(10)))

    @app.get(WORKLOADS["cpu"].path)
    def cpu():
        params = workload_params(WORKLOADS["cpu"])
        return jsonify(workloads.fibonacci_digest(params["n"]))

    @app.get(WORKLOADS["io"].path)
    def io():
        params = workload_params(WORKLOADS["io"])
        return jsonify(ms=params["ms"], slept_ms=round(workloads.sleep_ms(params["ms"]), 3))

    @app.get(WORKLOADS["io-async"].path)
    async def io_async():
        # Flask's async view (flask[async]): the same bounds and 400s as io; the wait is awaited.
        params = workload_params(WORKLOADS["io-async"])
        return jsonify(ms=params["ms"], slept_ms=round(await workloads.sleep_ms_async(params["ms"]), 3))

    @app.get(WORKLOADS["mixed"].path)
    def mixed():
        params = workload_params(WORKLOADS["mixed"])
        result = workloads.fibonacci_digest(params["n"])
        result["slept_ms"] = round(workloads.sleep_ms(params["ms"]), 3)
        return jsonify(result)

    @app.post("/background")
    def background_start():
        params = {**request.args.to_dict(), **(json_object_body() or {})}
        ms = int_param(workloads.BACKGROUND_MS, params)
        job = jobs.start(current_app._get_current_object(), ms, MAX_RUNNING_BACKGROUND_JOBS)  # type: ignore[attr-defined]
        if job is None:
            return jsonify(error=f"at most {MAX_RUNNING_BACKGROUND_JOBS} background jobs may run at once"), 429
        return jsonify(job), 202, {"Location": f"/background/{job['id']}"}

    @app.get("/background/<job_id>")
    def background_state(job_id: str):
        job = jobs.get(job_id)
        if job is None:
            return jsonify(error=f"no background job {job_id!r} in process {os.getpid()}"), 404
        return jsonify(job)

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    @app.get("/lab/info")
    def lab_info():
        info: dict[str, Any] = {key: os.environ.get(var) for key, var in INFO_ENV.items()}
        info.update(
            pid=os.getpid(),
            thread_id=threading.get_ident(),
            python=platform.python_version(),
            implementation=sys.implementation.name,
            packages=versions,
            server_software=request.environ.get("SERVER_SOFTWARE"),
            wsgi_multithread=request.environ.get("wsgi.multithread"),
            wsgi_multiprocess=request.environ.get("wsgi.multiprocess"),
        )
        return jsonify(info)

    @app.get("/lab/cpu")
    def lab_cpu():
        # the server's own cgroup CPU and the per-CPU counters, for the web UI's meter (no parameters)
        return jsonify(selfreport.cpu_report())

    return app
