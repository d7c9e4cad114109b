"""The lab's additions to Locust's web UI, built on Locust's own extension points.

Locust's web UI is a React bundle rendered from ``template_args``; its Flask app is
``environment.web_ui.app``. This module adds, without forking the front end:

* **sensible defaults** — a small script (``/serverlab/ui.js``, added to Locust's
  index page by an ``after_request`` hook) ticks only ``HelloUser`` in the class
  picker the first time the start form is shown, and shows the target **Server**
  in the header's stat area; the "no host attribute" warning is switched off
  (the Server dropdown supplies the host);
* a **Compare** tab (``template_args["extended_tabs"]``) that runs the same load
  against several servers in turn — order shuffled, warm-up discarded — and fills
  a live table and bar chart: RPS, p50/p99/p99.9 in µs from the lab's HDR
  histograms merged across every Locust process (workers send theirs to the
  master on request), failures; downloadable as ``results.jsonl``/``summary.md``
  rendered by :mod:`serverlab.results` and :mod:`serverlab.report`;
* a **Reports** tab listing the runs under ``reports/`` (read-only), serving each
  run's files and comparing two runs with :func:`serverlab.report.compare`.

Server CPU per request and the bottleneck class need the server's cgroup, which
the UI cannot read: the table says "unknown (make report measures it)".

Units: latency in microseconds (µs), durations in seconds, rates in RPS.
"""

from __future__ import annotations

import html
import json
import os
import random
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import gevent
from flask import Blueprint, Response, abort, jsonify, request, send_from_directory
from locust.runners import STATE_RUNNING, STATE_SPAWNING, STATE_STOPPED, STATE_STOPPING, MasterRunner, WorkerRunner

from serverlab.terms import DEFAULT_WORKLOAD, WORKLOADS

HERE = Path(__file__).resolve().parent
STATIC = HERE / "ui"
#: Where ``docker compose`` mounts the repository's ``reports/`` (read-only).
REPORTS_DIR = Path(os.environ.get("SERVERLAB_REPORTS_DIR", str(HERE.parent / "reports")))
#: Bounds of a comparison's parameters (the UI is reachable from the host only, but still).
MAX_USERS, MAX_SECONDS, MAX_WARMUP_S = 1000, 300, 60
#: How long the master waits for every worker's histogram (seconds).
COLLECT_TIMEOUT_S = 10.0
UNKNOWN_IN_UI = "unknown (make report measures it)"


class CompareError(ValueError):
    """A comparison was asked with bad parameters, or while another test runs."""


@dataclass
class CompareRow:
    """One server's figures in a comparison (µs, seconds, RPS)."""

    server: str
    position: int
    status: str = "waiting"
    requests: int = 0
    failures: int = 0
    duration_s: float = 0.0
    rps: float = 0.0
    latency_us: dict[str, float] = field(default_factory=dict)
    hdr: str | None = None
    started_at: float | None = None
    processes: int = 0
    generator_share: float | None = None
    error: str | None = None

    def bottleneck(self) -> str:
        """What the UI can tell: ``generator-bound`` when a Locust process used ≥ 90% of a core, else unknown.

        Whether the server was at its CPU limit needs its cgroup, which only ``make report`` reads.
        """
        from serverlab.bottleneck import GENERATOR_BOUND_UTILIZATION

        if self.generator_share is None:
            return UNKNOWN_IN_UI
        if self.generator_share >= GENERATOR_BOUND_UTILIZATION:
            return f"generator-bound (Locust at {self.generator_share:.0%} of a core): the RPS is a floor"
        return f"unknown: Locust at {self.generator_share:.0%} of a core, server CPU not visible here"

    def public(self) -> dict[str, Any]:
        """The row as the Compare tab shows it (no histogram)."""
        return {
            "server": self.server, "position": self.position, "status": self.status,
            "requests": self.requests, "failures": self.failures, "duration_s": round(self.duration_s, 3),
            "rps": round(self.rps, 1), "p50_us": self.latency_us.get("p50"), "p99_us": self.latency_us.get("p99"),
            "p99.9_us": self.latency_us.get("p99.9"), "processes": self.processes, "error": self.error,
            "cpu_ms_per_request": UNKNOWN_IN_UI, "bottleneck": self.bottleneck(),
            "generator_share": None if self.generator_share is None else round(self.generator_share, 3),
        }


@dataclass
class Comparison:
    """A comparison's parameters and its rows, in the (shuffled) order they run."""

    compare_id: str
    workload: str
    users: int
    seconds: float
    warmup_s: float
    seed: int
    started_at: float
    rows: list[CompareRow]
    state: str = "running"
    current: str | None = None
    message: str = ""
    finished_at: float | None = None


class LabUI:
    """Everything the lab adds to one Locust process (master, worker or local).

    :param environment: Locust's environment.
    :param workload_classes: workload name (``hello``, ``cpu``, ...) -> its User class.
    :param recorder: the process's HDR recorder (``locustfile.Recorder``).
    :param variants: server variant name -> its ``labapp.variants.Variant`` (read from servers/).
    :param target_url: server name -> URL (e.g. ``http://gunicorn-sync:8000``).
    """

    def __init__(self, environment: Any, workload_classes: dict[str, type], recorder: Any,
                 variants: dict[str, Any], target_url: Callable[[str], str]) -> None:
        self.environment = environment
        self.workload_classes = workload_classes
        self.recorder = recorder
        self.variants = variants
        self.target_url = target_url
        self.comparison: Comparison | None = None
        self._greenlet: gevent.Greenlet | None = None
        self._replies: dict[str, dict[str, dict[str, Any]]] = {}

    # ------------------------------------------------------------------ wiring

    def install(self) -> None:
        """Register message handlers (master/worker) and the web UI additions (master/local)."""
        runner = self.environment.runner
        if isinstance(runner, WorkerRunner):
            runner.register_message("serverlab_reset", lambda msg, **_kw: self.recorder.reset())
            runner.register_message("serverlab_collect", self._on_collect)
        elif isinstance(runner, MasterRunner):
            runner.register_message("serverlab_hdr", self._on_hdr)
        if self.environment.web_ui is not None:
            self._install_web_ui(self.environment.web_ui)

    def _install_web_ui(self, web_ui: Any) -> None:
        web_ui.template_args["extended_tabs"] = [
            {"title": "Compare servers", "key": "lab-compare"},
            {"title": "Reports", "key": "lab-reports"},
        ]
        original = web_ui.update_template_args

        def update_template_args() -> None:
            original()
            # the Server dropdown (or a Compare) supplies the host: Locust's warning would mislead
            web_ui.template_args["missing_host_warning"] = False

        web_ui.update_template_args = update_template_args
        app = web_ui.app
        blueprint = Blueprint("serverlab", __name__, url_prefix="/serverlab")
        self._routes(blueprint)
        app.register_blueprint(blueprint)

        @app.after_request
        def add_script(response: Response) -> Response:
            # Locust's index page is a React shell; our script adds the defaults and the server badge
            if request.path in ("/", "") and response.mimetype == "text/html" and not response.direct_passthrough:
                body = response.get_data(as_text=True)
                tag = (f'<script src="./serverlab/ui.js" defer '
                       f'data-default-class="{html.escape(WORKLOADS[DEFAULT_WORKLOAD].user_class)}"></script>')
                if "</body>" in body and tag not in body:
                    response.set_data(body.replace("</body>", tag + "\n</body>", 1))
            return response

    # ------------------------------------------------------------------ workers

    def _on_collect(self, msg: Any, **_kw: Any) -> None:
        """Worker: send this process's histogram and counts to the master."""
        self.environment.runner.send_message("serverlab_hdr", {"token": msg.data["token"], **self.snapshot()})

    def _on_hdr(self, msg: Any, **_kw: Any) -> None:
        """Master: keep a worker's reply to a collect request."""
        data = msg.data or {}
        token = data.get("token")
        if token in self._replies:
            self._replies[token][str(getattr(msg, "node_id", "") or data.get("process"))] = data

    def snapshot(self) -> dict[str, Any]:
        """This process's recorder: encoded histogram (µs), counts and measured window (Unix seconds)."""
        rec = self.recorder
        return {
            "process": f"{socket.gethostname()}-{os.getpid()}",
            "requests": rec.requests,
            "failures": rec.failures,
            "window_start_at": rec.window_start,
            "window_end_at": time.time(),
            "cpu_seconds": time.process_time() - rec.cpu_start,
            "histogram": rec.histogram.encode().decode("ascii") if rec.requests else None,
        }

    # ------------------------------------------------------------------ comparison

    def start_comparison(self, servers: list[str], workload: str, users: int, seconds: float,
                         warmup_s: float, seed: int | None = None) -> Comparison:
        """Start a comparison in the background; return it (its rows fill in as servers finish).

        :param servers: variant names (default in the UI: all of servers/).
        :param workload: a key of ``workload_classes``.
        :param users: concurrent users (closed model), 1..:data:`MAX_USERS`.
        :param seconds: measured seconds per server, 1..:data:`MAX_SECONDS`.
        :param warmup_s: discarded seconds before each measurement, 0..:data:`MAX_WARMUP_S`.
        :param seed: shuffles the server order (random when ``None``; recorded).
        :raises CompareError: on bad parameters or when a test or comparison is running.
        """
        unknown = [s for s in servers if s not in self.variants]
        if not servers or unknown:
            raise CompareError(f"servers must be some of {sorted(self.variants)}; got {unknown or 'none'}")
        if workload not in self.workload_classes:
            raise CompareError(f"workload must be one of {sorted(self.workload_classes)}; got {workload!r}")
        if not (1 <= users <= MAX_USERS):
            raise CompareError(f"users must be 1..{MAX_USERS}; got {users}")
        if not (1 <= seconds <= MAX_SECONDS):
            raise CompareError(f"seconds must be 1..{MAX_SECONDS}; got {seconds}")
        if not (0 <= warmup_s <= MAX_WARMUP_S):
            raise CompareError(f"warm-up must be 0..{MAX_WARMUP_S} s; got {warmup_s}")
        if self.comparison is not None and self.comparison.state == "running":
            raise CompareError("a comparison is already running")
        runner = self.environment.runner
        if runner.state in (STATE_RUNNING, STATE_SPAWNING, STATE_STOPPING):
            raise CompareError("a load test is running: stop it first")
        if isinstance(runner, MasterRunner) and runner.worker_count < 1:
            raise CompareError("no Locust worker is connected yet")
        seed = random.SystemRandom().randrange(1, 2**31) if seed is None else seed
        order = list(dict.fromkeys(servers))
        random.Random(seed).shuffle(order)
        comparison = Comparison(
            compare_id=time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-ui-compare",
            workload=workload, users=users, seconds=float(seconds), warmup_s=float(warmup_s), seed=seed,
            started_at=time.time(), rows=[CompareRow(s, i) for i, s in enumerate(order)],
        )
        self.comparison = comparison
        self._greenlet = gevent.spawn(self._run, comparison)
        return comparison

    def stop_comparison(self) -> None:
        """Stop a running comparison (the rows measured so far are kept)."""
        if self._greenlet is not None:
            self._greenlet.kill(block=True)
            self._greenlet = None
        if self.comparison is not None and self.comparison.state == "running":
            self.comparison.state = "stopped"
            self.comparison.message = "stopped by the user"
        self._stop_runner()

    def _stop_runner(self, timeout_s: float = 15.0) -> None:
        runner = self.environment.runner
        if runner.state not in (STATE_STOPPED, "ready"):
            runner.stop()
        deadline = time.time() + timeout_s
        while runner.state not in (STATE_STOPPED, "ready") and time.time() < deadline:
            gevent.sleep(0.2)

    def _run(self, comparison: Comparison) -> None:
        env = self.environment
        options = env.parsed_options
        saved = (env.host, getattr(options, "server", None), list(env.user_classes))
        try:
            env.user_classes = [self.workload_classes[comparison.workload]]
            env.host = ""  # the server option chooses the target, as in the UI's dropdown
            for row in comparison.rows:
                comparison.current = row.server
                row.status = "running"
                try:
                    self._measure(comparison, row)
                    row.status = "ok" if row.requests else "failed"
                    if not row.requests:
                        row.error = "no responses in the measured period"
                except Exception as err:  # one server failing must not end the comparison
                    row.status, row.error = "failed", f"{type(err).__name__}: {err}"
                self._stop_runner()
            comparison.state = "done"
            comparison.message = f"{len(comparison.rows)} servers measured"
        finally:
            comparison.current = None
            comparison.finished_at = time.time()
            env.host, env.user_classes = saved[0], saved[2]
            if options is not None and saved[1] is not None:
                options.server = saved[1]
            if comparison.state == "running":
                comparison.state = "stopped"

    def _measure(self, comparison: Comparison, row: CompareRow) -> None:
        from serverlab.histograms import latency_summary, merge_histograms

        env, runner = self.environment, self.environment.runner
        env.parsed_options.server = row.server
        runner.start(comparison.users, spawn_rate=max(comparison.users, 1))
        gevent.sleep(comparison.warmup_s)
        # warm-up over: every process forgets what it recorded, and Locust's own stats too
        if isinstance(runner, MasterRunner):
            runner.send_message("serverlab_reset")
        self.recorder.reset()
        runner.stats.reset_all()
        row.started_at = time.time()
        gevent.sleep(comparison.seconds)
        parts = self._collect()
        merged = merge_histograms(p.get("histogram") for p in parts)
        row.requests = sum(int(p.get("requests", 0)) for p in parts)
        row.failures = sum(int(p.get("failures", 0)) for p in parts)
        row.processes = len(parts)
        shares = [float(p["cpu_seconds"]) / max(float(p["window_end_at"]) - float(p["window_start_at"]), 1e-9)
                  for p in parts if p.get("cpu_seconds") is not None]
        row.generator_share = max(shares) if shares else None
        starts = [p["window_start_at"] for p in parts if p.get("requests")]
        ends = [p["window_end_at"] for p in parts if p.get("requests")]
        row.duration_s = (max(ends) - min(starts)) if starts else comparison.seconds
        row.rps = row.requests / row.duration_s if row.duration_s > 0 else 0.0
        row.latency_us = latency_summary(merged)
        row.hdr = merged.encode().decode("ascii") if merged.get_total_count() else None

    def _collect(self) -> list[dict[str, Any]]:
        runner = self.environment.runner
        if not isinstance(runner, MasterRunner):
            return [self.snapshot()]
        token = uuid.uuid4().hex
        self._replies[token] = {}
        expected = runner.worker_count
        runner.send_message("serverlab_collect", {"token": token})
        deadline = time.time() + COLLECT_TIMEOUT_S
        while len(self._replies[token]) < expected and time.time() < deadline:
            gevent.sleep(0.1)
        return list(self._replies.pop(token).values())

    # ------------------------------------------------------------------ results files

    def results_files(self) -> tuple[str, str]:
        """The comparison as ``results.jsonl`` and ``summary.md`` text, as ``make report`` writes them.

        :raises CompareError: when no comparison has measured anything.
        """
        from serverlab.uicompare import UICompareError, comparison_results

        c = self.comparison
        if c is None:
            raise CompareError("no comparison has run yet")
        options = self.environment.parsed_options
        spec = WORKLOADS.get(c.workload)
        params = spec.option_values(options) if spec is not None else {}
        configs = {name: variant.record() for name, variant in self.variants.items()}
        try:
            return comparison_results(
                c.compare_id, c.workload, params, c.users, c.seconds, c.warmup_s, c.seed, c.started_at,
                [vars(row) for row in c.rows], configs)
        except UICompareError as err:
            raise CompareError(str(err)) from None

    # ------------------------------------------------------------------ routes

    def state(self) -> dict[str, Any]:
        """What the header badge shows: the runner's state and the server it loads (or will load)."""
        env = self.environment
        server = getattr(env.parsed_options, "server", None)
        url = env.host or (self.target_url(server) if server else "")
        if env.host:
            server = next((name for name in self.variants if self.target_url(name) == env.host), env.host)
        return {
            "state": env.runner.state, "server": server, "url": url,
            "user_classes": sorted(c.__name__ for c in env.user_classes),
            "workers": env.runner.worker_count if isinstance(env.runner, MasterRunner) else 0,
            "comparing": bool(self.comparison and self.comparison.state == "running"),
        }

    def comparison_status(self) -> dict[str, Any]:
        """The Compare tab's live data: parameters, state and one row per server."""
        c = self.comparison
        base = {"servers": sorted(self.variants), "workloads": sorted(self.workload_classes),
                "default_workload": DEFAULT_WORKLOAD, "unknown_note": UNKNOWN_IN_UI}
        if c is None:
            return {**base, "state": "idle", "rows": []}
        return {**base, "state": c.state, "message": c.message, "current": c.current, "compare_id": c.compare_id,
                "workload": c.workload, "users": c.users, "seconds": c.seconds, "warmup_s": c.warmup_s,
                "seed": c.seed, "rows": [r.public() for r in c.rows]}

    def _routes(self, bp: Blueprint) -> None:
        @bp.route("/ui.js")
        def ui_js() -> Response:
            return send_from_directory(STATIC, "ui.js", mimetype="application/javascript", max_age=0)

        @bp.route("/state")
        def state() -> Response:
            return jsonify(self.state())

        @bp.route("/compare")
        def compare_page() -> Response:
            return send_from_directory(STATIC, "compare.html", max_age=0)

        @bp.route("/compare/status")
        def compare_status() -> Response:
            return jsonify(self.comparison_status())

        @bp.route("/compare/start", methods=["POST"])
        def compare_start() -> Response:
            data = request.get_json(silent=True) or request.form
            try:
                servers = data.getlist("servers") if hasattr(data, "getlist") else list(data.get("servers") or [])
                self.start_comparison(
                    servers=servers or sorted(self.variants), workload=str(data.get("workload", DEFAULT_WORKLOAD)),
                    users=int(data.get("users", 8)), seconds=float(data.get("seconds", 5)),
                    warmup_s=float(data.get("warmup_s", 2)),
                    seed=int(data["seed"]) if data.get("seed") not in (None, "") else None)
            except (CompareError, ValueError, TypeError) as err:
                return jsonify({"success": False, "message": str(err)}), 400
            return jsonify({"success": True, **self.comparison_status()})

        @bp.route("/compare/stop", methods=["POST"])
        def compare_stop() -> Response:
            self.stop_comparison()
            return jsonify({"success": True, **self.comparison_status()})

        @bp.route("/compare/<any('results.jsonl', 'summary.md'):name>")
        def compare_download(name: str) -> Response:
            try:
                jsonl, markdown = self.results_files()
            except CompareError as err:
                return Response(str(err) + "\n", status=404, mimetype="text/plain")
            text, mimetype = (jsonl, "application/x-ndjson") if name == "results.jsonl" else (markdown, "text/markdown")
            response = Response(text, mimetype=mimetype)
            response.headers["Content-Disposition"] = f"attachment; filename={self.comparison.compare_id}-{name}"
            return response

        @bp.route("/reports/")
        def reports_page() -> Response:
            return Response(_reports_index(REPORTS_DIR), mimetype="text/html")

        @bp.route("/reports/compare")
        def reports_compare() -> Response:
            from serverlab import LabError
            from serverlab.report import compare

            a, b = _run_dir(request.args.get("a", "")), _run_dir(request.args.get("b", ""))
            try:
                text = compare(a / "results.jsonl", b / "results.jsonl")
            except LabError as err:
                text = f"error: {err}"
            return Response(_page(f"compare {a.name} → {b.name}",
                                  f'<p><a href="./">← all reports</a></p><pre>{html.escape(text)}</pre>'),
                            mimetype="text/html")

        @bp.route("/reports/<path:subpath>")
        def reports_file(subpath: str) -> Response:
            return send_from_directory(REPORTS_DIR, subpath, max_age=0)  # safe_join refuses ../


def _run_dir(name: str) -> Path:
    """A run folder directly under :data:`REPORTS_DIR` (404 for anything else)."""
    if not name or "/" in name or name.startswith("."):
        abort(404)
    path = REPORTS_DIR / name
    if not (path / "results.jsonl").is_file():
        abort(404)
    return path


def _page(title: str, body: str) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<style>{_CSS}</style></head><body>'
            f'<h1>{html.escape(title)} <a href="/" target="_top" class="muted back" '
            f'style="font-size:13px;font-weight:normal">← Locust</a></h1>{body}</body></html>')


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:16px;color:#1c2733;background:#fff}
h1{font-size:20px;margin:0 0 12px}
table{border-collapse:collapse;margin:8px 0}
th,td{border-bottom:1px solid #dde3ea;padding:4px 10px;text-align:left;white-space:nowrap}
th{background:#f3f6f9}
td.num{text-align:right;font-variant-numeric:tabular-nums}
a{color:#0b62c4}
pre{white-space:pre-wrap;background:#f6f8fa;padding:10px;border-radius:4px}
.muted{color:#5c6b7a}
button{font:inherit;padding:4px 12px}
"""


def _reports_index(directory: Path) -> str:
    from serverlab.uicompare import list_runs

    runs = list_runs(directory)
    if not runs:
        body = (f'<p class="muted">No runs under <code>{html.escape(str(directory))}</code> yet. '
                f"<code>make report</code> writes them into the repository's <code>reports/</code>, "
                f"which <code>docker compose</code> mounts here read-only.</p>")
        return _page("Reports", body)
    options = "".join(f'<option value="{html.escape(r["name"])}">{html.escape(r["name"])}</option>' for r in runs)
    lines = []
    for r in runs:
        name = html.escape(r["name"])
        link = f'<a class="report-link" href="./{name}/index.html" target="_blank">{name}</a>' if r["has_html"] else name
        lines.append(f'<tr><td>{link}</td><td>{html.escape(r["experiment"])}</td><td class="num">{r["cells"]}</td>'
                     f'<td>{time.strftime("%Y-%m-%d %H:%M", time.gmtime(r["mtime"]))} UTC</td>'
                     f'<td><a href="./{name}/summary.md" target="_blank">summary.md</a> · '
                     f'<a href="./{name}/results.jsonl">results.jsonl</a></td></tr>')
    body = (f'<p class="muted">Runs under <code>reports/</code>, newest first ({len(runs)}). '
            f"A report opens in a new browser tab.</p>"
            f'<table id="runs"><thead><tr><th>run</th><th>experiment</th><th>cells</th><th>written</th><th>files</th>'
            f'</tr></thead><tbody>{"".join(lines)}</tbody></table>'
            f'<h2 style="font-size:16px">Compare two runs</h2>'
            f'<form action="./compare" method="get">old <select name="a">{options}</select> '
            f'new <select name="b">{options}</select> <button type="submit">compare</button></form>'
            f'<p class="muted">Per-cell change, as <code>serverlab compare OLD NEW</code> prints it.</p>')
    return _page("Reports", body)
